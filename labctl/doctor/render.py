"""Doctor output for people: one line per check, the fix under it, a summary line.

``✓ title — detail`` / ``! …`` / ``✗ …`` / ``- …`` (skipped); ``[ok]`` / ``[!!]`` / ``[xx]`` /
``[--]`` when the output encoding cannot show those.  Colour only on a terminal, never with
``NO_COLOR`` set or ``TERM=dumb``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

from labctl.doctor.core import Check, Report, Status

UNICODE = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗", Status.SKIP: "-"}
ASCII = {Status.OK: "[ok]", Status.WARN: "[!!]", Status.FAIL: "[xx]", Status.SKIP: "[--]"}
COLOURS = {Status.OK: "32", Status.WARN: "33", Status.FAIL: "31", Status.SKIP: "2"}


def can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def wants_colour(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Style:
    def __init__(self, stream: TextIO, env: Mapping[str, str] | None = None) -> None:
        self.unicode = can_encode(stream, "✓✗—")
        self.colour = wants_colour(stream, env)
        self.symbols = UNICODE if self.unicode else ASCII
        self.dash = "—" if self.unicode else "-"

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def summary_line(report: Report) -> str:
    c = report.count
    return (f"{c(Status.OK)} ok, {plural(c(Status.WARN), 'warning')}, {c(Status.FAIL)} failed, "
            f"{c(Status.SKIP)} skipped in {report.seconds:.1f}s")


def render(report: Report, stream: TextIO, *, verbose: bool = False,
           env: Mapping[str, str] | None = None) -> None:
    style = Style(stream, env)
    lines = []
    for o in report.outcomes:
        sym = style.paint(style.symbols[o.status], COLOURS[o.status])
        title = o.check.title
        if o.status is not Status.OK and style.colour:
            title = style.paint(title, "1")
        line = f"{sym} {title}"
        if o.result.detail:
            line += f" {style.dash} {o.result.detail}"
        if verbose:
            line += style.paint(f"  [{o.check.id}, {o.seconds:.2f}s]", "2")
        lines.append(line)
        if verbose:
            lines.extend(f"    {x}" for x in o.result.extra)
        if o.result.fix and o.status in (Status.WARN, Status.FAIL):
            lines.append(f"  fix: {o.result.fix}")
    lines.append(summary_line(report))
    text = "\n".join(lines) + "\n"
    if not style.unicode:
        enc = getattr(stream, "encoding", None) or "ascii"
        text = text.encode(enc, "replace").decode(enc)
    stream.write(text)
    stream.flush()


def render_list(checks: list[Check], stream: TextIO) -> None:
    width = max((len(c.id) for c in checks), default=10)
    for c in checks:
        needs = f"  (needs {', '.join(c.requires)})" if c.requires else ""
        stream.write(f"{c.id:<{width}}  {c.layer:<15} {c.title}{needs}\n")
