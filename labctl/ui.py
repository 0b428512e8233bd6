"""Output, one stack for every command: rich tables and spinners for people, JSON for
scripts, and the rules they all follow.

* **Colour** (:func:`colour`): off with ``NO_COLOR`` or ``TERM=dumb``, on with
  ``FORCE_COLOR``, else only on a terminal.
* **Width** (:func:`width`): ``COLUMNS``, else the terminal's; in a pipe nothing is wrapped
  or cut (``None``), except prose such as guides, which wraps at 80 (:func:`prose_width`).
* **Symbols** (:func:`symbols`): ✓ ✗ — when the stream's encoding can show them, else ASCII.
* Errors are ``labctl: error: …`` with ``fix: …`` on its own line (:func:`error`); on a
  terminal both wrap at spaces with a hanging indent, never inside a word or a `code span`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    out: Console
    err: Console

PROSE_WIDTH = 80  # prose in a pipe
MAX_PROSE = 100  # prose on a wide terminal: longer lines are hard to read
RERUN_SAFE = "re-running is safe: labctl reads what is there again and carries on from this step"


# ---- the rules ------------------------------------------------------------------------------------
def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def colour(stream: Any, env: Any = None) -> bool:
    env = os.environ if env is None else env
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    if env.get("FORCE_COLOR"):
        return True
    return isatty(stream)


def width(stream: Any, env: Any = None) -> int | None:
    """The width to wrap to: COLUMNS, else the terminal's; None in a pipe (no wrapping)."""
    env = os.environ if env is None else env
    try:
        columns = int(env.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    if isatty(stream):
        try:
            return os.get_terminal_size(stream.fileno()).columns or 80
        except (OSError, AttributeError, ValueError):
            return shutil.get_terminal_size().columns
    return None


def prose_width(stream: Any, env: Any = None) -> int:
    return min(width(stream, env) or PROSE_WIDTH, MAX_PROSE)


def can_encode(stream: Any, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def symbols(stream: Any) -> dict[str, str]:
    if can_encode(stream, "✓✗—…"):
        return {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-", "dash": "—", "more": "…"}
    return {"ok": "[ok]", "warn": "[!!]", "fail": "[xx]", "skip": "[--]", "dash": "-", "more": "..."}


def paint(text: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if on and text else text


_NBSP = "\u00a0"  # textwrap splits on ASCII whitespace only


def fill(text: str, columns: int | None, first: str = "", rest: str = "") -> str:
    """Wrap at spaces with a hanging indent, never inside a word or a `code span` (commands
    stay whole); ``columns`` None: one line."""
    if columns is None:
        return first + text
    parts = text.split("`")
    for i in range(1, len(parts), 2):
        parts[i] = parts[i].replace(" ", _NBSP)
    out = textwrap.fill("`".join(parts), max(columns, len(rest) + 20), initial_indent=first,
                        subsequent_indent=rest, break_long_words=False, break_on_hyphens=False)
    lines = out.split("\n")
    for i, line in enumerate(lines[1:], 1):  # a word too long for its indent (a URL): less indent
        if len(line) > columns:
            lines[i] = line.lstrip(" ").rjust(min(len(line), columns))
    return "\n".join(lines).replace(_NBSP, " ")


def error(message: str, remedy: str | None = None, stream: IO[str] | None = None) -> None:
    """``labctl: error: MESSAGE`` and, on its own line, ``  fix: REMEDY``."""
    stream = stream or sys.stderr
    columns = width(stream) if isatty(stream) else None
    on = colour(stream)
    head = "labctl: error: "
    first = fill(message, columns, head, "  ")
    lines = [first.replace(head, "labctl: " + paint("error:", "1;31", on) + " ", 1)]
    if remedy:
        fix = fill(remedy, columns, "  fix: ", "       ")
        lines.append(fix.replace("fix:", paint("fix:", "1", on), 1))
    stream.write("\n".join(lines) + "\n")


# ---- rich, for tables and spinners ----------------------------------------------------------------
@cache
def _console(stderr: bool) -> Console:
    """rich is imported only when something is printed for people (not for --json)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    console = Console(stderr=stderr, highlight=False, soft_wrap=True, no_color=not colour(stream),
                      width=width(stream) or (240 if not stderr else PROSE_WIDTH))
    return console


def __getattr__(name: str) -> Any:
    if name == "out":
        return _console(False)
    if name == "err":
        return _console(True)
    raise AttributeError(name)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_document(name: str, body: dict[str, Any]) -> None:
    """A --json document: an object naming its schema and schema_version (labctl.documents)."""
    from labctl.documents import document

    print_json(document(name, body))


def stream_document(name: str, key: str, items: Iterable[dict[str, Any]]) -> None:
    """The --json document ``{..., key: [items]}`` written item by item: the same text as
    print_document (indent 2), without holding the whole text or its encoder's pieces."""
    from labctl.documents import document

    text = json.dumps(document(name, {key: []}), indent=2)
    marker = json.dumps(key) + ": []"
    cut = text.rindex(marker) + len(marker) - 1  # just after "["; the rest is "]\n}"
    out = sys.stdout
    out.write(text[:cut])
    sep = "\n"
    for item in items:
        out.write(sep + "    " + json.dumps(item, indent=2, default=str).replace("\n", "\n    "))
        sep = ",\n"
    if sep != "\n":
        out.write("\n  ")
    out.write(text[cut:] + "\n")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    _console(False).print(t)


def yesno(value: bool) -> str:
    return "yes" if value else "no"


def _plain_stderr() -> bool:
    """Piped stderr gets plain lines without loading rich at all (fast, and no escapes)."""
    return not isatty(sys.stderr)


def info(message: str) -> None:
    if _plain_stderr():
        sys.stderr.write(message + "\n")
        return
    _console(True).print(message, markup=False)


def plain(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def page(text: str) -> None:
    """Long text on a terminal goes through a pager ($PAGER, else ``less -FRX``), when it
    has more lines than the terminal; otherwise (or if the pager cannot run) it is printed."""
    import subprocess

    lines = text.count("\n")
    if isatty(sys.stdout) and isatty(sys.stdin):
        rows = shutil.get_terminal_size().lines
        pager = os.environ.get("PAGER", "less -FRX").strip()
        if lines >= rows - 1 and pager and pager != "cat":
            sys.stdout.flush()
            try:
                proc = subprocess.run(pager, shell=True, input=text.encode(sys.stdout.encoding or "utf-8",
                                                                            "replace"), check=False)
                if proc.returncode in (0, 1, 141):  # 141: the user quit before the end (SIGPIPE)
                    return
            except OSError:
                pass
    plain(text)


# ---- steps ------------------------------------------------------------------------------------------
class _Status:
    """The live line of a running step: description, elapsed time, the tool's latest output."""

    def __init__(self, description: str, started: float, columns: int) -> None:
        self.description = description
        self.started = started
        self.columns = columns
        self.latest = ""
        self.lock = threading.Lock()

    def feed(self, line: str) -> None:
        line = " ".join(line.split())
        if line:
            with self.lock:
                self.latest = line

    def __rich__(self) -> Any:
        from rich.text import Text

        secs = time.monotonic() - self.started
        head = f"{self.description} … {secs:.0f}s"
        with self.lock:
            latest = self.latest
        room = self.columns - len(head) - 5  # the spinner, its space and the separator
        text = Text(head)
        if latest and room > 10:
            if len(latest) > room:
                latest = latest[: room - 1] + "…"
            text.append(f"  {latest}", style="dim")
        elif len(head) > self.columns - 4:
            text = Text(head[: max(10, self.columns - 5)] + "…")
        return text


@contextlib.contextmanager
def step(description: str, *, rerun: str | None = None) -> Iterator[None]:
    """While the step runs: a spinner with its name, the elapsed time and the latest line the
    tool printed (on a terminal).  After it: a ✓ line, or, when it fails, a ✗ line that names
    the step and says whether running the command again is safe."""
    from labctl import progress

    started = time.monotonic()
    stream = sys.stderr
    sym = symbols(stream)
    on = colour(stream)
    status = _Status(description, started, width(stream) or PROSE_WIDTH)
    token = progress.listen(status.feed)
    try:
        if _plain_stderr():
            yield
        else:
            with _console(True).status(status):
                yield
    except BaseException as exc:
        secs = time.monotonic() - started
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        columns = width(stream) if isatty(stream) else None
        line = fill(f"{description} {what} after {secs:.1f}s", columns, f"{sym['fail']} ", "  ")
        stream.write(line.replace(sym["fail"], paint(sym["fail"], "31", on), 1) + "\n")
        stream.write(fill(rerun or RERUN_SAFE, columns, "  ", "  ") + "\n")
        stream.flush()
        raise
    finally:
        progress.unlisten(token)
    secs = time.monotonic() - started
    if _plain_stderr():
        stream.write(f"{sym['ok'] if sym['ok'] == '✓' else '+'} {description} ({secs:.1f}s)\n")
        return
    _console(True).print(f"[green]{sym['ok']}[/] {description} [dim]({secs:.1f}s)[/]",
                         markup=True, highlight=False)
