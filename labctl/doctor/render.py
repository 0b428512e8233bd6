"""Doctor output for people: one line per check, the fix under it, a summary line.

``✓ title — detail`` / ``! …`` / ``✗ …`` / ``- …`` (skipped); ``[ok]`` / ``[!!]`` / ``[xx]`` /
``[--]`` when the output encoding cannot show those.  Checks skipped only because a
prerequisite failed (or was itself skipped) are not listed one by one: one line under the
check that caused them counts them (``-v`` lists them there).  Long lines wrap at the
terminal's width with a hanging indent.  Colour, width and symbols follow labctl's one output
stack (:mod:`labctl.ui`): ``NO_COLOR``, ``FORCE_COLOR``, ``TERM=dumb``, ``COLUMNS``, pipes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from labctl import ui
from labctl.doctor.core import Check, Outcome, Report, Status

COLOURS = {Status.OK: "32", Status.WARN: "33", Status.FAIL: "31", Status.SKIP: "2"}


class Style:
    def __init__(self, stream: TextIO, env: Mapping[str, str] | None = None) -> None:
        sym = ui.symbols(stream)
        self.unicode = sym["ok"] == "✓"
        self.colour = ui.colour(stream, env)
        self.width = ui.width(stream, env)
        self.symbols = {Status.OK: sym["ok"], Status.WARN: sym["warn"], Status.FAIL: sym["fail"],
                        Status.SKIP: sym["skip"]}
        self.dash = sym["dash"]

    def paint(self, text: str, code: str) -> str:
        return ui.paint(text, code, self.colour)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def summary_line(report: Report) -> str:
    c = report.count
    return (f"{c(Status.OK)} ok, {plural(c(Status.WARN), 'warning')}, {c(Status.FAIL)} failed, "
            f"{c(Status.SKIP)} skipped in {report.seconds:.1f}s")


def root_causes(report: Report) -> dict[str, list[Outcome]]:
    """{check id: the outcomes skipped because of it, directly or through other skips}."""
    by_id = {o.check.id: o for o in report.outcomes}
    out: dict[str, list[Outcome]] = {}
    for o in report.outcomes:
        cause = o.result.cause
        if o.status is not Status.SKIP or cause is None:
            continue
        seen = {o.check.id}
        while cause in by_id and by_id[cause].result.cause is not None and cause not in seen:
            seen.add(cause)
            cause = by_id[cause].result.cause
        if cause is not None:
            out.setdefault(cause, []).append(o)
    return out


def _line(style: Style, o: Outcome, verbose: bool) -> list[str]:
    sym = style.symbols[o.status]
    text = o.check.title
    if o.result.detail:
        text += f" {style.dash} {o.result.detail}"
    if verbose:
        text += f"  [{o.check.id}, {o.seconds:.2f}s]"
    wrapped = ui.fill(text, style.width, f"{sym} ", " " * (len(sym) + 1))
    first, _, rest = wrapped.partition("\n")
    title = o.check.title
    head = first[len(sym) + 1:]
    if style.colour and o.status is not Status.OK and head.startswith(title):
        head = style.paint(title, "1") + head[len(title):]
    lines = [f"{style.paint(sym, COLOURS[o.status])} {head}"] + (rest.split("\n") if rest else [])
    if verbose:
        lines.extend(ui.fill(x, style.width, "    ", "      ") for x in o.result.extra)
    if o.result.fix and o.status in (Status.WARN, Status.FAIL):
        lines.append(ui.fill(o.result.fix, style.width, "  fix: ", "       "))
    return lines


def render(report: Report, stream: TextIO, *, verbose: bool = False,
           env: Mapping[str, str] | None = None) -> None:
    style = Style(stream, env)
    caused = root_causes(report)
    collapsed = {o.check.id for group in caused.values() for o in group}
    lines: list[str] = []
    for o in report.outcomes:
        if o.check.id in collapsed:
            continue
        lines.extend(_line(style, o, verbose))
        group = caused.get(o.check.id)
        if not group:
            continue
        skip = style.symbols[Status.SKIP]
        if verbose:
            lines.append(ui.fill(f"skipped because of this ({len(group)}):", style.width,
                                 f"  {skip} ", "    "))
            for g in group:
                lines.append(ui.fill(f"{g.check.title}  [{g.check.id}]", style.width, "      ", "        "))
        else:
            what = plural(len(group), "check")
            lines.append(style.paint(ui.fill(f"{what} skipped because of this (-v lists them)",
                                             style.width, f"  {skip} ", "    "), "2"))
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
