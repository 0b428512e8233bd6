"""Where a running step listens for the lines its tool prints (ui.step registers, the Runner
feeds).  Tiny on purpose: the Runner imports it on every command."""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[str], None]

_lock = threading.Lock()
_stack: list[tuple[int, Listener]] = []
_next = 0


def listen(fn: Listener) -> int:
    global _next
    with _lock:
        _next += 1
        _stack.append((_next, fn))
        return _next


def unlisten(token: int) -> None:
    with _lock:
        _stack[:] = [(t, f) for t, f in _stack if t != token]


def current() -> Listener | None:
    with _lock:
        return _stack[-1][1] if _stack else None
