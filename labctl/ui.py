"""Output: rich tables and spinners for people, JSON for scripts.  rich honours NO_COLOR and
drops colour when output is not a terminal."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    out: Console
    err: Console


@cache
def _console(stderr: bool) -> Console:
    """rich is imported only when something is printed for people (not for --json)."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not stderr and not console.is_terminal:  # piped: never cut a column
        console.width = max(console.width, 240)
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
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


def info(message: str) -> None:
    if _plain_stderr():
        sys.stderr.write(message + "\n")
        return
    _console(True).print(message, markup=False)


def plain(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@contextlib.contextmanager
def step(description: str) -> Iterator[None]:
    """A spinner with the step's name and elapsed time while it runs; a ✓ line after."""
    started = time.monotonic()
    if _plain_stderr():
        yield
        mark = "✓" if (sys.stderr.encoding or "").lower().replace("-", "") in ("utf8",) else "+"
        sys.stderr.write(f"{mark} {description} ({time.monotonic() - started:.1f}s)\n")
        return
    err = _console(True)
    with err.status(f"{description} …"):
        yield
    err.print(f"[green]✓[/] {description} [dim]({time.monotonic() - started:.1f}s)[/]",
              markup=True, highlight=False)
