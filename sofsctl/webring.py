"""The ring of the supervisor page as inline SVG: a donut on which each disk's arcs of the
consistent-hash keyspace (:mod:`sofsctl.ringarcs`) are drawn in the disk's colour, clockwise
from the top (point 0 of the keyspace). Pure: a ring document in, markup out.

A disk that is not ``up`` keeps its colour, faded, with a red mark outside its arcs, so the
part of the keyspace whose pieces lack a copy stands out; a standby disk (its node down) is
faded the same way. Every arc has a ``<title>`` (shown on hover) naming its disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

# Tableau 10 and 2 more: distinguishable, also in print; beyond 12 disks, golden-angle hues
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
           "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b")
SIZE = 380          # the SVG's width and height (px)
RADIUS = 140        # of the donut's middle line
WIDTH = 46          # of the donut's stroke
MARK_RADIUS = RADIUS + WIDTH / 2 + 9
WHOLE = 0.999999    # an arc this long is the whole ring (drawn as a circle)


def colour(index: int) -> str:
    """The colour of the INDEX-th disk of the ring (legend and arcs use the same)."""
    if index < len(PALETTE):
        return PALETTE[index]
    hue = (index * 137.508) % 360
    return f"hsl({hue:.0f},55%,52%)"


def colours(ring: Mapping[str, Any]) -> dict[str, str]:
    """Disk id -> its colour, in the ring document's disk order."""
    return {d["id"]: colour(i) for i, d in enumerate(ring.get("disks", []))}


def _point(fraction: float, radius: float) -> tuple[float, float]:
    angle = 2 * math.pi * fraction - math.pi / 2  # 0 at the top, clockwise
    c = SIZE / 2
    return c + radius * math.cos(angle), c + radius * math.sin(angle)


def arc_path(start: float, length: float, radius: float = RADIUS) -> str:
    """The SVG path data of the arc from START over LENGTH (fractions of the ring)."""
    x1, y1 = _point(start, radius)
    x2, y2 = _point(start + length, radius)
    large = 1 if length > 0.5 else 0
    return f"M {x1:.2f} {y1:.2f} A {radius} {radius} 0 {large} 1 {x2:.2f} {y2:.2f}"


def _arc(start: float, length: float, radius: float, attrs: str, title: str) -> str:
    if length >= WHOLE:
        c = SIZE / 2
        return (f'<circle cx="{c}" cy="{c}" r="{radius}" fill="none" {attrs}>'
                f"<title>{escape(title)}</title></circle>")
    return (f'<path d="{arc_path(start, length, radius)}" fill="none" {attrs}>'
            f"<title>{escape(title)}</title></path>")


def ring_svg(ring: Mapping[str, Any], unwell: Iterable[str] = ()) -> str:
    """The donut of RING (a :func:`sofsctl.ringarcs.ring_arcs` document); the disks named in
    UNWELL (not up, or unavailable) are faded and marked."""
    bad = set(unwell)
    palette = colours(ring)
    c = SIZE / 2
    out = [f'<svg id="ring-svg" xmlns="http://www.w3.org/2000/svg" width="{SIZE}" '
           f'height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}" role="img" '
           f'aria-label="the ring: each disk&#39;s arcs of the keyspace">',
           f'<circle cx="{c}" cy="{c}" r="{RADIUS}" fill="none" stroke="#eee" '
           f'stroke-width="{WIDTH}"/>']
    marks = []
    for d in ring.get("disks", []):
        faded = d["id"] in bad or d.get("standby")
        opacity = ' stroke-opacity="0.28"' if faded else ""
        why = " (not up)" if d["id"] in bad else " (standby: its node is down)" \
            if d.get("standby") else ""
        arcs = d.get("arcs", [])
        for n, (start, length) in enumerate(arcs, 1):
            title = (f"{d['id']}{why}: arc {n} of {len(arcs)}, {length * 100:.1f}% of the "
                     f"ring; the disk owns {d.get('share', 0) * 100:.1f}% in all")
            out.append(_arc(start, length, RADIUS,
                            f'stroke="{palette[d["id"]]}" stroke-width="{WIDTH}"{opacity} '
                            f'data-disk="{escape(d["id"])}"', title))
            if d["id"] in bad:
                marks.append(_arc(start, length, MARK_RADIUS,
                                  'stroke="#c62828" stroke-width="5" class="mark"',
                                  f"{d['id']} is not up: these keys lack its pieces"))
    for d in ring.get("disks", []):  # where each arc begins: a vnode's token before it
        for start, length in d.get("arcs", []):
            if length < WHOLE:
                xa, ya = _point(start, RADIUS - WIDTH / 2)
                xb, yb = _point(start, RADIUS + WIDTH / 2)
                out.append(f'<line x1="{xa:.2f}" y1="{ya:.2f}" x2="{xb:.2f}" y2="{yb:.2f}" '
                           'stroke="#fff" stroke-width="1"/>')
    out += marks
    # point 0 of the keyspace, and the middle's words
    x0, y0 = _point(0, RADIUS - WIDTH / 2 - 4)
    x1, y1 = _point(0, RADIUS + WIDTH / 2 + 4)
    out.append(f'<line x1="{x0:.2f}" y1="{y0:.2f}" x2="{x1:.2f}" y2="{y1:.2f}" '
               'stroke="#333" stroke-width="1.5"/>')
    count = len(ring.get("disks", []))
    out.append(f'<text x="{c}" y="{c - 6}" text-anchor="middle" font-size="22" '
               f'font-weight="600">{count} disk{"" if count == 1 else "s"}</text>')
    out.append(f'<text x="{c}" y="{c + 18}" text-anchor="middle" font-size="13" '
               f'fill="#555">ring epoch {escape(str(ring.get("epoch", "?")))}, '
               f'{escape(str(ring.get("vnodes_per_disk", "?")))} vnodes per disk</text>')
    out.append("</svg>")
    return "".join(out)
