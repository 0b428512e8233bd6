"""``labctl route watch``: follow the Engine's network create/destroy events and sync the
routes on each; reconnect (and re-sync) after the engine restarts; Ctrl-C ends it cleanly.
Meanwhile it reads the routing table every few seconds and says once when a route it did not
make (a VPN that connected later) overlaps a lab subnet, with the fix; it never touches that
route."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from labctl.errors import LabctlError
from labctl.paths import Paths

EVENT_READ_TIMEOUT = 30.0
OVERLAP_CHECK = 3.0  # seconds between two looks at the routing table
MAX_BACKOFF = 60.0  # the longest wait between two reconnection attempts


def run_watch(machine: str | None, via: str | None, docker_host: str | None, retry: float,
              check_every: float = OVERLAP_CHECK) -> None:
    from labctl import engine, ui
    from labctl.fileops import locked
    from labctl.plan import execute
    from labctl.routes import service
    from labctl.runner import Runner

    paths = Paths.detect()
    guard = _Guard()
    notes = _Once()  # a plan's note is printed once per run
    once = _Once()  # a failure that repeats is printed once, until the engine is healthy again
    backoff = _Backoff(retry)
    previous = {sig: signal.signal(sig, guard.handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def sync(facts: service.EngineFacts) -> None:
        # Ctrl-C waits until the batch and its records are done
        with guard.critical(), locked(paths.state_dir):
            plan = service.sync_plan(paths, machine, via, docker_host, False, facts)
            # not the no-ops; overlaps with other routes are the table checker's to say, once
            for line in [*(f"warning: {w}" for w in plan.warnings), *plan.notes]:
                if notes.first(line):
                    ui.info(line)
            if not plan.empty:
                ctx = execute(plan, Runner(), paths.backup_dir, progress=lambda c: ui.step(c.description))
                for line in [*ctx.notices, *plan.after]:
                    ui.info(line)

    checker = _OverlapChecker(paths, check_every)
    checker.start()

    announced = False
    lost = False
    try:
        while True:
            opened: float | None = None  # when the event stream opened
            try:
                target = engine.resolve_target(paths, machine, docker_host)
                client = engine.connect(target, timeout=EVENT_READ_TIMEOUT)
                since = time.time()
                facts = service.engine_facts(paths, machine, docker_host)
                sync(facts)
                if not announced:
                    ui.info(f"watching network events at {target.url} (Ctrl-C to stop)")
                    announced = True
                elif lost and once.first(f"reconnected to {target.url}"):
                    ui.info(f"reconnected to {target.url}")
                lost = False
                opened = time.monotonic()
                events = 0
                stream = engine.events(client, since=int(since))
                try:  # the stream ends (StopIteration) on an idle timeout or a broken connection
                    for event in stream:
                        events += 1
                        backoff.reset()
                        once.clear()
                        action = event.get("Action") or event.get("status")
                        name = (event.get("Actor") or {}).get("Attributes", {}).get("name", "?")
                        ui.info(f"network {name}: {action}")
                        sync(service.engine_facts(paths, machine, docker_host))
                finally:  # the stream ended: idle timeout, or the engine went away
                    with contextlib.suppress(Exception):
                        stream.close()
                    with contextlib.suppress(Exception):
                        client.close()
                if not events and time.monotonic() - opened < backoff.base:
                    raise _StreamEnded("the engine ended its event stream at once")
                backoff.reset()  # an idle timeout after a healthy while: reconnect now
                once.clear()
            except LabctlError as exc:
                lost = True
                _retry(ui, once, backoff, f"labctl: {exc.message}")
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the event stream broke: engine restarted or idle timeout
                lost = True
                if isinstance(exc, _StreamEnded):
                    _retry(ui, once, backoff, f"labctl: {exc}")
                elif (_idle_timeout(exc) and opened is not None
                      and time.monotonic() - opened >= backoff.base):
                    backoff.reset()  # quiet for EVENT_READ_TIMEOUT: reconnect at once
                else:
                    _retry(ui, once, backoff, f"labctl: lost the engine ({type(exc).__name__})")
    except KeyboardInterrupt:
        ui.info("stopped watching")
    finally:
        checker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _OverlapChecker:
    """A daemon thread: every ``every`` seconds, the routing table against labctl's routes;
    a route labctl did not make that overlaps a lab subnet is reported once while it lasts."""

    def __init__(self, paths: Paths, every: float) -> None:
        from labctl.routes.vpn import Reporter

        self.paths = paths
        self.every = every
        self.reporter = Reporter()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="labctl-overlaps", daemon=True)

    def start(self) -> None:
        if self.every > 0:
            self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(timeout=self.every + 5)

    def check(self) -> list[str]:
        from labctl.routes import records
        from labctl.routes.tables import read_table

        return self.reporter.new(read_table(self.paths, quick=True), records.load(self.paths))

    def _run(self) -> None:
        from labctl import ui

        while True:
            try:
                for line in self.check():
                    ui.info(line)
            except Exception:  # noqa: BLE001 - a failed look is retried at the next tick
                pass
            if self.done.wait(self.every):
                return


class _StreamEnded(Exception):
    """The event stream ended before it delivered anything (not an idle timeout)."""


class _Once:
    """Say a warning the first time only, until :meth:`clear` (e.g. after a reconnection)."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def first(self, text: str) -> bool:
        if text in self.said:
            return False
        self.said.add(text)
        return True

    def clear(self) -> None:
        self.said.clear()


class _Backoff:
    """Waits between attempts: ``--retry`` seconds first, doubled after each failure in a
    row up to ``MAX_BACKOFF`` (or --retry when that is longer); reset by a healthy stream."""

    def __init__(self, base: float) -> None:
        self.base = max(base, 0.05)
        self.limit = max(self.base, MAX_BACKOFF)
        self.delay = self.base

    def reset(self) -> None:
        self.delay = self.base

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.limit)
        return delay


def _retry(ui: Any, once: _Once, backoff: _Backoff, why: str) -> None:
    delay = backoff.next()
    if once.first(why):
        ui.info(f"{why}; retrying in {delay:g} s, then less often (up to every {backoff.limit:g} s) "
                "while it lasts")
    time.sleep(delay)


def _idle_timeout(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return "timed out" in text or "Timeout" in text


class _Guard:
    """SIGINT/SIGTERM raise KeyboardInterrupt, except inside a sync: then they take effect
    right after it (a batch of route changes is never cut between the kernel and the records)."""

    def __init__(self) -> None:
        self.busy = False
        self.pending = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.busy:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
        if self.pending:
            raise KeyboardInterrupt
