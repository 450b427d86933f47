"""The supervisor page, rendered on the server: the ``status --json`` document (and the ring's
arcs, :mod:`sofsctl.ringarcs`) in, one HTML page out. Pure: no I/O, the time is passed in.

Sections, in order, each a ``<section id=...>``: ``health`` (the verdict, coloured, and its
reasons), ``ring`` (the donut of :mod:`sofsctl.webring` with its legend: disks with state,
size, free and share of the keyspace; on a networked ring the nodes, their reachability and
disks), ``capacity`` (used/free bars), ``chunks`` (protected, degraded, unrecoverable and
the unrecoverable keys), ``rebuild``, ``volumes`` (mount state and metadata checkpoint) and
``exports``. Every text that comes from the archive (names, paths, messages) is escaped.
The page refreshes itself with ``<meta http-equiv=refresh>``: no script at all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from html import escape
from typing import Any

from chunkstore.healing.sweep import HealthReport
from chunkstore.healing.verdict import chunk_line

from .common import human
from .webring import colours, ring_svg

Doc = Mapping[str, Any]
LEVEL_CLASS = {"HEALTH_OK": "ok", "HEALTH_WARN": "warn", "HEALTH_ERR": "err"}
REASON_WORD = {"HEALTH_WARN": "warning", "HEALTH_ERR": "error"}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;
color:#1d1f23;font-size:15px}
header{background:#1d2733;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:21px;font-weight:600}
header p{margin:4px 0 0;color:#c5cdd8;font-size:13px}
main{max-width:1240px;margin:0 auto;padding:18px 28px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);
padding:14px 20px;margin:0 0 16px}
h2{font-size:17px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 9px;border-bottom:1px solid #e6e8eb;vertical-align:top}
th{color:#555;font-weight:600}
.verdict{display:inline-block;font-size:24px;font-weight:700;padding:6px 16px;
border-radius:6px;color:#fff;margin:0 0 8px}
.verdict.ok{background:#2e7d32}.verdict.warn{background:#c77700}.verdict.err{background:#c62828}
.reasons{margin:4px 0 0;padding-left:0;list-style:none}
.reasons li{margin:3px 0}
.tag{display:inline-block;font-size:12px;font-weight:700;border-radius:3px;padding:1px 6px;
color:#fff;margin-right:6px}
.tag.warn{background:#c77700}.tag.err{background:#c62828}.tag.ok{background:#2e7d32}
.bad{color:#c62828;font-weight:600}.good{color:#2e7d32}
.ringbox{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.ringbox table{flex:1;min-width:520px}
.swatch{display:inline-block;width:14px;height:14px;border-radius:3px;vertical-align:-2px;
margin-right:6px}
.faded{opacity:.35}
.bar{background:#e6e8eb;border-radius:4px;height:16px;min-width:220px;overflow:hidden;
display:flex}
.bar span{display:block;height:100%}
.used{background:#4e79a7}.full{background:#c62828}.prot{background:#2e7d32}
.degr{background:#c77700}.lost{background:#c62828}
.note{color:#555;font-size:13px;margin:6px 0 0}
td.n,th.n{white-space:nowrap}
td.path code{word-break:break-all}
code{font-size:13px;background:#f0f1f3;padding:1px 4px;border-radius:3px}
header code{background:#2c3a4a;color:#e8edf3}
header a{color:#9fc3ff}
"""


def render_page(doc: Doc, ring: Doc | None = None, *, now: float, taken_at: float | None = None,
                refresh_s: int | None = None, problem: str | None = None) -> str:
    """The whole page for the ``status --json`` document DOC. RING is the arcs document
    (when None, DOC's own ``ring`` key if it has one); NOW and TAKEN_AT (when the facts were
    gathered) are Unix times; REFRESH_S, when given, makes the page reload itself; PROBLEM
    says why newer facts could not be gathered (DOC is then the last that could)."""
    ring = ring if ring is not None else doc.get("ring")
    parts = [_health(doc), _ring(doc, ring), _capacity(doc), _chunks(doc), _rebuild(doc),
             _volumes(doc, now), _exports(doc)]
    if problem is not None:
        since = f" at {_clock(taken_at)}" if taken_at is not None else ""
        parts.insert(0, f'<section id="problem"><p class="bad">The facts could not be gathered '
                        f"again: {_e(problem)}</p><p class=\"note\">Shown below: the facts "
                        f"gathered{since}.</p></section>")
    kind = "networked ring" if doc.get("networked") else "embedded ring"
    when = ""
    if taken_at is not None:
        when = (f"facts gathered at {_clock(taken_at)} ({max(0.0, now - taken_at):.0f} s ago)"
                " &middot; ")
    head = (f"cluster {_e(doc.get('cluster_id'))} &middot; data directory "
            f"{_e(doc.get('data_dir'))} &middot; {kind}")
    tail = (f"{when}{_refresh_words(refresh_s)}the same facts as "
            '<code>sofsctl status --json</code>: <a href="/status.json">/status.json</a>')
    return _document(doc.get("health", {}).get("status", "sofs"), head, tail,
                     "".join(parts), refresh_s)


def render_error_page(message: str, *, now: float, refresh_s: int | None = None) -> str:
    """The page when the facts could not be gathered (``sofsctl status`` would fail too)."""
    body = (f'<section id="health"><h2>Health</h2><p id="verdict" class="verdict err">'
            f'NO STATUS</p><p class="bad" id="error">{_e(message)}</p>'
            '<p class="note">sofsctl status fails the same way; the page tries again at its '
            "next refresh.</p></section>")
    return _document("sofs: no status", f"at {_clock(now)}", _refresh_words(refresh_s),
                     body, refresh_s)


# --- sections ------------------------------------------------------------------------------

def _health(doc: Doc) -> str:
    h = doc.get("health", {})
    label = str(h.get("status", "?"))
    items = []
    for r in h.get("reasons", []):
        lvl = LEVEL_CLASS.get(r.get("level"), "warn")
        word = REASON_WORD.get(r.get("level"), str(r.get("level")))
        items.append(f'<li><span class="tag {lvl}">{_e(word)}</span>{_e(r.get("text"))}</li>')
    reasons = (f'<ul class="reasons" id="reasons">{"".join(items)}</ul>' if items else
               '<p id="reasons" class="good">Nothing needs attention.</p>')
    return (f'<section id="health"><h2>Health</h2><p id="verdict" class="verdict '
            f'{LEVEL_CLASS.get(label, "err")}">{_e(label)}</p>{reasons}</section>')


def _unwell(doc: Doc) -> set[str]:
    """Disks that are not up, or unavailable to the RING."""
    out = {d["id"] for d in doc.get("disks", []) if d.get("state") != "up"}
    out |= set(doc.get("disks_unavailable", []))
    for n in doc.get("nodes", []):
        out |= {d["id"] for d in n.get("disks", []) if d.get("state") != "up"}
    return out


def _ring(doc: Doc, ring: Doc | None) -> str:
    unwell = _unwell(doc)
    shares = {d["id"]: d for d in (ring or {}).get("disks", [])}
    palette = colours(ring or {})
    picture = ring_svg(ring, unwell) if ring else (
        '<p class="note">The ring\'s layout could not be read (ring.json or '
        "clustermap.json).</p>")
    if doc.get("networked"):
        legend = _nodes_table(doc, shares, palette)
        intro = (f"{len(doc.get('nodes', []))} storage nodes; each disk's arcs of the "
                 "keyspace in its colour.")
    else:
        legend = _disks_table(doc, shares, palette)
        intro = (f"{len(doc.get('disks', []))} disks in this data directory; each disk's arcs "
                 "of the keyspace in its colour (a key's first piece goes to the disk of the "
                 "arc its hash falls on).")
    gone = doc.get("disks_unavailable", [])
    extra = (f'<p class="bad" id="unavailable">Unavailable to the RING now: '
             f'{_e(", ".join(gone))}</p>' if gone else "")
    return (f'<section id="ring"><h2>Ring</h2><p class="note">{intro}</p>{extra}'
            f'<div class="ringbox">{picture}{legend}</div></section>')


def _swatch(disk_id: str, palette: Mapping[str, str], faded: bool) -> str:
    cls = "swatch faded" if faded else "swatch"
    return f'<span class="{cls}" style="background:{palette.get(disk_id, "#999")}"></span>'


def _share(info: Mapping[str, Any] | None) -> tuple[str, str]:
    if info is None:
        return "-", "-"
    return f"{info.get('share', 0) * 100:.1f}%", str(len(info.get("arcs", [])))


def _disks_table(doc: Doc, shares: Mapping[str, Any], palette: Mapping[str, str]) -> str:
    rows = ['<tr><th class="n">Disk</th><th>State</th><th class="n">Size</th><th class="n">'
            'Free</th><th class="n">Share of the ring</th><th class="n">Arcs</th></tr>']
    for d in doc.get("disks", []):
        up = d.get("state") == "up"
        share, arcs = _share(shares.get(d["id"]))
        state = _e(d.get("state")) if up else f'<span class="bad">{_e(d.get("state"))}</span>'
        if d.get("problem"):
            state += f'<br><span class="note">{_e(d["problem"])}</span>'
        rows.append(f'<tr data-disk="{_e(d["id"])}"><td class="n">'
                    f'{_swatch(d["id"], palette, not up)}<b>{_e(d["id"])}</b></td>'
                    f'<td class="state">{state}</td><td class="n">{_bytes(d.get("total_bytes"))}'
                    f'</td><td class="n">{_bytes(d.get("free_bytes"))}</td><td class="n">{share}'
                    f'</td><td class="n">{arcs}</td></tr>')
    return f'<table id="disks">{"".join(rows)}</table>'


def _nodes_table(doc: Doc, shares: Mapping[str, Any], palette: Mapping[str, str]) -> str:
    rows = ["<tr><th>Node</th><th>Address</th><th>Site</th><th>State</th><th>Answers</th>"
            "<th>Disks (state, share of the ring)</th></tr>"]
    for n in doc.get("nodes", []):
        answers = (f'<span class="good">yes</span>, map epoch {_e(n.get("epoch"))}'
                   if n.get("answers") else
                   f'<span class="bad">NO</span>: {_e(n.get("error") or "no answer")}')
        state = _e(n.get("state"))
        if n.get("state") != "up":
            state = f'<span class="bad">{state}</span>'
        disks = []
        for d in n.get("disks", []):
            info = shares.get(d["id"])
            standby = bool(info and info.get("standby"))
            share, _ = _share(info)
            disk_state = _e(d.get("state")) + (", standby" if standby else "")
            disks.append(f'<span data-disk="{_e(d["id"])}">'
                         f'{_swatch(d["id"], palette, standby or d.get("state") != "up")}'
                         f'{_e(d["id"])} ({disk_state}, {share})</span>')
        rows.append(f'<tr data-node="{_e(n.get("id"))}"><td><b>{_e(n.get("id"))}</b></td>'
                    f'<td><code>{_e(n.get("address"))}</code></td><td>{_e(n.get("site"))}</td>'
                    f'<td>{state}</td><td>{answers}</td><td>{"<br>".join(disks) or "-"}</td>'
                    "</tr>")
    return f'<table id="nodes">{"".join(rows)}</table>'


def _capacity(doc: Doc) -> str:
    disks = doc.get("disks", [])
    if doc.get("networked"):
        body = ('<p class="note">The storage nodes do not report their disks\' usage to the '
                "client in this release: see each node's file systems (df).</p>")
    elif not any(d.get("total_bytes") for d in disks):
        body = '<p class="note">No disk could be measured.</p>'
    else:
        rows = ['<tr><th>Disk</th><th>Used</th><th></th><th class="n">Free</th><th class="n">'
                "Size</th><th>Directory</th></tr>"]
        for d in disks:
            where = f'<td class="path"><code>{_e(d.get("path"))}</code></td>'
            if not d.get("total_bytes"):
                rows.append(f'<tr data-disk="{_e(d["id"])}"><td>{_e(d["id"])}</td><td colspan="4"'
                            f' class="bad">{_e(d.get("state"))}: not measured</td>{where}</tr>')
                continue
            total, free = d["total_bytes"], d.get("free_bytes") or 0
            used = max(0.0, (total - free) / total)
            cls = "used full" if used >= 0.9 else "used"
            rows.append(f'<tr data-disk="{_e(d["id"])}"><td>{_e(d["id"])}</td>'
                        f'<td style="width:34%"><div class="bar"><span class="{cls}" '
                        f'style="width:{used * 100:.1f}%"></span></div></td>'
                        f'<td class="n">{used * 100:.0f}% used</td><td class="n">{human(free)}'
                        f'</td><td class="n">{human(total)}</td>{where}</tr>')
        body = (f'<table id="capacity-table">{"".join(rows)}</table><p class="note">Size and '
                "free space are those of the file system that holds each disk directory: disks "
                "that share one show the same figures, which must not be added up.</p>")
    return f'<section id="capacity"><h2>Capacity</h2>{body}</section>'


def _chunks(doc: Doc) -> str:
    c = doc.get("chunks", {})
    total = int(c.get("total") or 0)
    missing = [d["id"] for d in doc.get("disks", []) if d.get("state") != "up"]
    report = HealthReport(chunks=total, protected=int(c.get("protected") or 0),
                          degraded=int(c.get("degraded") or 0),
                          unrecoverable=int(c.get("unrecoverable") or 0),
                          pieces=int(c.get("pieces") or 0), disks_total=len(doc.get("disks", [])),
                          disks_unavailable=tuple(doc.get("disks_unavailable", [])))
    words = chunk_line(report, missing).removeprefix("chunks: ")
    bar = ""
    if total:
        bar = '<div class="bar" style="max-width:640px">' + "".join(
            f'<span class="{cls}" style="width:{n / total * 100:.2f}%" title="{what}"></span>'
            for cls, n, what in (("prot", report.protected, "every piece in place"),
                                 ("degr", report.degraded, "degraded"),
                                 ("lost", report.unrecoverable, "unrecoverable")) if n) + "</div>"
    keys = ""
    if c.get("unrecoverable_keys"):
        more = report.unrecoverable - len(c["unrecoverable_keys"])
        items = "".join(f"<li><code>{_e(k)}</code></li>" for k in c["unrecoverable_keys"])
        first = f" (the first {len(c['unrecoverable_keys'])})" if more > 0 else ""
        keys = (f'<p class="bad">Unrecoverable chunks{first}:</p><ul id="unrecoverable-keys">'
                f'{items}</ul><p class="note">Which files lose data: <code>sofsctl chunk which '
                "KEY...</code></p>")
    advice = ""
    if report.degraded or report.unrecoverable or missing or report.disks_unavailable:
        advice = '<p class="note">To rebuild what is missing: <code>sofsctl repair</code></p>'
    count, _, rest = words.partition(" ")
    return (f'<section id="chunks"><h2>Chunks</h2><p id="chunk-line"><b>{_e(count)}</b> chunks '
            f"{_e(rest)}; {int(c.get('pieces') or 0)} pieces in all</p>{bar}{keys}{advice}"
            "</section>")


def _rebuild(doc: Doc) -> str:
    rb = doc.get("rebuild")
    if not doc.get("networked") and rb is None:
        body = ("No volume is mounted, so no ring host heals this embedded ring now; "
                "<code>sofsctl repair</code> runs a sweep and shows its own progress.")
    elif rb is None:
        body = ("No mount process serves this data directory, so no healer reports a rebuild "
                "(mount a volume to have one).")
    elif rb.get("state") == "rebuilding":
        done, total = int(rb.get("chunks_done") or 0), int(rb.get("chunks_total") or 0)
        pct = done / total * 100 if total else 0.0
        eta = f", about {rb['eta_s']:.0f} s left" if rb.get("eta_s") is not None else ""
        body = (f'<b>Rebuilding</b> for map epoch {_e(rb.get("epoch"))}: {done} of {total} '
                f'chunks checked ({pct:.0f}%), {float(rb.get("rate_chunks_s") or 0):.0f} '
                f'chunks/s{eta}.<div class="bar" style="max-width:640px"><span class="used" '
                f'style="width:{pct:.1f}%"></span></div>')
    elif rb.get("last_report"):
        r = rb["last_report"]
        body = (f"No sweep running. The last one (map epoch {_e(rb.get('epoch'))}) rebuilt "
                f"{_e(r.get('pieces_rebuilt'))} pieces ({human(float(r.get('bytes_rebuilt') or 0))}"
                f"), removed {_e(r.get('pieces_removed'))}, found {_e(r.get('unrecoverable'))} "
                f"unrecoverable, in {float(r.get('seconds') or 0):.1f} s"
                + (f", finished at {_clock(rb['finished'])}." if rb.get("finished") else "."))
    else:
        body = ("No sweep has run since the "
                + ("mount process" if doc.get("networked") else "ring host") + " started.")
    return f'<section id="rebuild"><h2>Rebuild</h2><p>{body}</p></section>'


def _volumes(doc: Doc, now: float) -> str:
    vols = doc.get("volumes", [])
    if not vols:
        return ('<section id="volumes"><h2>Volumes</h2><p>No volumes yet (<code>sofsctl '
                "volume create NAME</code>).</p></section>")
    rows = ["<tr><th>Volume</th><th>Protection (large / small chunks)</th><th>State</th>"
            "<th>Mount point</th><th>Metadata checkpoint</th></tr>"]
    for v in vols:
        state = v.get("state")
        shown = _e(state) if state in ("mounted", "not mounted") else \
            f'<span class="bad">{_e(str(state).upper())}</span>'
        where = "-" if not v.get("mountpoint") else \
            f'<code>{_e(v["mountpoint"])}</code> (pid {_e(v.get("pid"))})'
        if state == "dead":
            where += f'<br><span class="note">run sofsctl umount {_e(v["mountpoint"])}</span>'
        elif state == "detached":
            where += f'<br><span class="note">run sofsctl umount {_e(v.get("name"))}</span>'
        rows.append(f'<tr data-volume="{_e(v.get("name"))}"><td><b>{_e(v.get("name"))}</b>'
                    f'</td><td>{_e(v.get("large_policy"))} / {_e(v.get("small_policy"))}</td>'
                    f"<td>{shown}</td><td>{where}</td><td>{_checkpoint(v, now)}</td></tr>")
    return f'<section id="volumes"><h2>Volumes</h2><table>{"".join(rows)}</table></section>'


def _checkpoint(v: Mapping[str, Any], now: float) -> str:
    cp = v.get("checkpoint")
    if cp is None:
        return "-" if v.get("state") != "mounted" else "the mount process did not answer"
    out = []
    if cp.get("error"):
        out.append(f'<span class="bad">the last one failed: {_e(cp["error"])}</span>')
    if cp.get("at"):
        every = f" (every {cp['interval_s'] / 60:.0f} min)" if cp.get("interval_s") else ""
        out.append(f"number {_e(cp.get('seq'))}, taken {_ago(now - cp['at'])}{every}")
    elif not cp.get("error"):
        out.append("none yet" if cp.get("interval_s") != 0 else "turned off")
    if cp.get("gc_stopped"):
        out.append('<span class="bad">read-only: another host took the volume over; '
                   "unmount it</span>")
    return "<br>".join(out)


def _exports(doc: Doc) -> str:
    exports = doc.get("exports", [])
    if not exports:
        return ('<section id="exports"><h2>Exports</h2><p>No NFS or SMB exports (<code>sofsctl '
                "export nfs|smb VOLUME</code>).</p></section>")
    rows = ["<tr><th>Volume</th><th>Protocol</th><th>State</th><th>Address</th><th>Who may "
            "connect</th><th>Restarts</th><th>Health probe</th></tr>"]
    for x in exports:
        state = _e(x.get("state"))
        if x.get("state") not in ("running", "starting", "stopped"):
            state = f'<span class="bad">{state}</span>'
        if x.get("message"):
            state += f'<br><span class="note">{_e(x["message"])}</span>'
        probe = "-"
        if x.get("state") == "running" and x.get("probe_ok") is not None:
            probe = ('<span class="good">passing</span>' if x["probe_ok"] else
                     '<span class="bad">failing</span>')
        rows.append(f'<tr data-export="{_e(x.get("volume"))}/{_e(x.get("kind"))}"><td>'
                    f'{_e(x.get("volume"))}</td><td>{_e(str(x.get("kind")).upper())}</td>'
                    f'<td>{state}</td><td><code>{_e(x.get("bind"))}:{_e(x.get("port"))}</code>'
                    f'</td><td>{_e(x.get("clients"))}</td><td>{_e(x.get("restarts"))}</td>'
                    f"<td>{probe}</td></tr>")
    return f'<section id="exports"><h2>Exports</h2><table>{"".join(rows)}</table></section>'


# --- helpers -------------------------------------------------------------------------------

def _document(title: str, head: str, tail: str, body: str, refresh_s: int | None) -> str:
    meta = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
            f"<title>{_e(title)} - sofs supervisor</title><style>{STYLE}</style></head><body>"
            f"<header><h1>sofs supervisor</h1><p>{head}</p><p>{tail}</p></header>"
            f"<main>{body}</main></body></html>\n")


def _refresh_words(refresh_s: int | None) -> str:
    return f"this page refreshes every {int(refresh_s)} s &middot; " if refresh_s else ""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _bytes(n: object) -> str:
    return human(float(n)) if isinstance(n, (int, float)) and not isinstance(n, bool) else "-"


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"

