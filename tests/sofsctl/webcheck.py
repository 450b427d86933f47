"""Helpers for the supervisor page's real-process tests and ``scripts/screenshot-supervisor``:
``sofsctl supervise`` started as a subprocess on a free port (:class:`SupervisorProcess`), an
HTTP client for its JSON (urllib, a real client), and what a page shows, read back from its
DOM (:func:`page_facts`).

Until ``sofsctl/main.py`` registers the command, the process is started through a two-line
launcher that adds it to the same click group (``--data-dir`` and all) and runs
``sofsctl.main.main``; once it is registered the launcher changes nothing.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from sofsctl.webauth import basic_authorization

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ("from sofsctl import main as m; from sofsctl.supervise import supervise; "
          "m.cli.commands.setdefault('supervise', supervise); m.main()")
START_TIMEOUT_S = 120.0


def sofsctl_argv(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "--data-dir", str(data), *args]


class SupervisorProcess:
    """``sofsctl supervise --listen 127.0.0.1:0`` on data directory DATA; the URL is read from
    what it prints once it listens. :meth:`stop` (SIGTERM, then SIGKILL) in a finally."""

    def __init__(self, data: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.proc = subprocess.Popen(
            sofsctl_argv(data, "supervise", "--listen", "127.0.0.1:0", *extra), cwd=ROOT,
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.output = ""
        self.url = ""
        try:
            self.url = self._wait_for_url()
        except BaseException:
            self.stop()
            raise
        self.password = (data / "supervise.password").read_text().splitlines()[0]

    def _wait_for_url(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        fd = self.proc.stdout.fileno()
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                self.output = buf.decode(errors="replace")
                for word in self.output.split():
                    if word.startswith("http://") and word.endswith("/"):
                        return word
            elif self.proc.poll() is not None:
                break
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None \
            and self.proc.stderr else ""
        raise AssertionError(f"sofsctl supervise did not say where it listens: "
                             f"{self.output!r} {err!r}")

    def get(self, path: str, password: str | None = None, user: str = "admin"
            ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of GET PATH, with Basic credentials unless PASSWORD is
        None (the server's own password when it is "")."""
        req = urllib.request.Request(self.url.rstrip("/") + path)
        if password is not None:
            req.add_header("Authorization",
                           basic_authorization(user, password or self.password))
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def status_json(self) -> dict[str, Any]:
        status, _, body = self.get("/status.json", "")
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> int | None:
        """SIGTERM, and SIGKILL if it has not exited 60 s later; its exit status."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        return proc.returncode


@dataclass
class PageFacts:
    """What a supervisor page shows, from its DOM."""

    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    disks: dict[str, str] = field(default_factory=dict)      # disk id -> its state cell
    volumes: dict[str, str] = field(default_factory=dict)    # name -> its row's text
    chunk_line: str = ""
    sections: list[str] = field(default_factory=list)
    arcs: int = 0                                            # arcs drawn on the ring
    text: str = ""


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@dataclass
class _Collecting:
    what: str
    depth: int                      # of the element whose text this is
    parts: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    """Collects the text of the elements :class:`PageFacts` names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.facts = PageFacts()
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._open: list[_Collecting] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and a.get("id"):
            self.facts.sections.append(a["id"])
        if tag in ("path", "circle") and "data-disk" in a:
            self.facts.arcs += 1
        self._gap()
        if tag in VOID:
            return
        within = {x.get("id") for _, x in self._stack}
        self._stack.append((tag, a))
        what = None
        if a.get("id") == "verdict":
            what = "verdict"
        elif a.get("id") == "chunk-line":
            what = "chunks"
        elif tag == "li" and "reasons" in within:
            what = "reason"
        elif tag == "tr" and "data-disk" in a and "disks" in within:
            what = "disk:" + a["data-disk"]
        elif tag == "tr" and "data-volume" in a:
            what = "volume:" + a["data-volume"]
        if what is not None:
            self._open.append(_Collecting(what, len(self._stack)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        self._gap()
        if tag in VOID or all(t != tag for t, _ in self._stack):
            return
        while self._stack:
            depth = len(self._stack)
            t, _ = self._stack.pop()
            for c in [c for c in self._open if c.depth == depth]:
                self._open.remove(c)
                self._finish(c.what, " ".join("".join(c.parts).split()))
            if t == tag:
                break

    def _gap(self) -> None:
        """A tag separates words (cells, list items): text on either side is two words."""
        self._text.append(" ")
        for c in self._open:
            c.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        for c in self._open:
            c.parts.append(data)

    def _finish(self, what: str, text: str) -> None:
        f = self.facts
        if what == "verdict":
            f.verdict = text
        elif what == "reason":
            f.reasons.append(text)
        elif what == "chunks":
            f.chunk_line = text
        elif what.startswith("disk:"):
            f.disks[what.removeprefix("disk:")] = text
        elif what.startswith("volume:"):
            f.volumes[what.removeprefix("volume:")] = text


def page_facts(html: str) -> PageFacts:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    reader.facts.text = " ".join("".join(reader._text).split())
    return reader.facts
