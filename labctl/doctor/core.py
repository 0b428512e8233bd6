"""The doctor framework: Checks, Results and the runner that executes them.

A **Check** is an id (``vmnet.dhcp``), a title, a layer, the ids it ``requires`` and a function
``fn(ctx) -> Result``.  Check modules declare theirs with the :func:`check` decorator::

    @check("vmnet.dhcp", "DHCP on the lab vmnet", requires=("vmnet.exists",))
    def dhcp_on(ctx: Context) -> Result:
        v = ctx.vmnet()
        if v.dhcp:
            return ok(f"{v.name} serves addresses by DHCP")
        return fail(f"DHCP is off on {v.name}", fix="...a command the user can paste...")

Rules the runner enforces, so a check never has to:

* every check runs in its own daemon thread, as soon as its prerequisites have finished;
  independent checks run in parallel;
* a check whose prerequisite failed or was skipped is ``skip`` with the reason (no cascade);
  a prerequisite that only warned counts as met;
* a check that raises becomes ``fail`` with the error text (a LabctlError's remedy becomes the
  fix), never a traceback; the other checks still run;
* a check that does not return within its time limit becomes ``fail`` "timed out after N s";
  the runner stops waiting for it.  The threads are daemon threads and subprocesses run through
  the Runner with their own (shorter) timeouts, so nothing a check waits on can keep doctor
  from returning or the process from exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from labctl.errors import InvalidInput, LabctlError

if TYPE_CHECKING:
    from labctl.doctor.context import Context

log = logging.getLogger("labctl.doctor")

DEFAULT_TIMEOUT = 2.0

# Display order of the layers; checks of a layer not listed here go last.
LAYERS = ("lab", "host", "docker-machine", "vmnet", "reservation", "lease",
          "machine", "engine", "routes", "forwarding", "end-to-end")


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Result:
    status: Status
    detail: str = ""
    fix: str | None = None
    extra: tuple[str, ...] = ()  # more lines, shown with -v
    cause: str | None = None  # a skip because this prerequisite failed or was skipped

    def __post_init__(self) -> None:
        if self.status in (Status.WARN, Status.FAIL) and not self.fix:
            raise ValueError(f"a {self.status} result needs a fix: {self.detail!r}")


def ok(detail: str = "", extra: Iterable[str] = ()) -> Result:
    return Result(Status.OK, detail, None, tuple(extra))


def warn(detail: str, fix: str, extra: Iterable[str] = ()) -> Result:
    return Result(Status.WARN, detail, fix, tuple(extra))


def fail(detail: str, fix: str, extra: Iterable[str] = ()) -> Result:
    return Result(Status.FAIL, detail, fix, tuple(extra))


def skip(detail: str) -> Result:
    return Result(Status.SKIP, detail)


CheckFn = Callable[["Context"], Result]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    layer: str
    fn: CheckFn = field(repr=False, compare=False)
    requires: tuple[str, ...] = ()
    timeout: float | None = None  # None: the run's default
    # the fix shown when this check times out (default: a generic one)
    timeout_fix: str | None = None
    opt_in: bool = False  # runs only when asked for (doctor --probe / --check ID)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "layer": self.layer,
                "requires": list(self.requires)}


_REGISTRY: dict[str, Check] = {}


def check(id: str, title: str, *, layer: str | None = None, requires: Sequence[str] = (),
          timeout: float | None = None, timeout_fix: str | None = None, opt_in: bool = False
          ) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as a check.  ``layer`` defaults to the id's first part."""

    def deco(fn: CheckFn) -> CheckFn:
        if id in _REGISTRY and _REGISTRY[id].fn is not fn:
            raise ValueError(f"doctor check {id!r} is registered twice")
        _REGISTRY[id] = Check(id, title, layer or id.split(".", 1)[0], fn, tuple(requires),
                              timeout, timeout_fix, opt_in)
        return fn

    return deco


def registered() -> dict[str, Check]:
    return dict(_REGISTRY)


def order(checks: Iterable[Check]) -> list[Check]:
    """Layer order, registration order within a layer; prerequisites always first.
    Raises ValueError on an unknown prerequisite or a cycle (a bug in a check module)."""
    checks = list(checks)
    by_id = {c.id: c for c in checks}
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    pos = {c.id: i for i, c in enumerate(checks)}
    ranked = sorted(checks, key=lambda c: (rank.get(c.layer, len(LAYERS)), pos[c.id]))
    out: list[Check] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(c: Check) -> None:
        if state.get(c.id) == 2:
            return
        if state.get(c.id) == 1:
            raise ValueError(f"doctor checks form a cycle at {c.id!r}")
        state[c.id] = 1
        for r in c.requires:
            if r not in by_id:
                raise ValueError(f"doctor check {c.id!r} requires unknown check {r!r}")
            visit(by_id[r])
        state[c.id] = 2
        out.append(c)

    for c in ranked:
        visit(c)
    return out


def select(checks: list[Check], ids: Sequence[str]) -> list[Check]:
    """The checks named by ``ids`` plus everything they need (so a skip can say why)."""
    by_id = {c.id: c for c in checks}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise InvalidInput(f"unknown check id{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
                           "see them all with: labctl doctor --list-checks")
    wanted: set[str] = set()
    stack = list(ids)
    while stack:
        i = stack.pop()
        if i in wanted:
            continue
        wanted.add(i)
        stack.extend(by_id[i].requires)
    return [c for c in checks if c.id in wanted]


@dataclass(frozen=True)
class Outcome:
    check: Check
    result: Result
    seconds: float

    @property
    def status(self) -> Status:
        return self.result.status

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.check.id,
            "title": self.check.title,
            "layer": self.check.layer,
            "status": self.result.status.value,
            "detail": self.result.detail,
            "fix": self.result.fix,
            "cause": self.result.cause,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Report:
    outcomes: list[Outcome]
    seconds: float

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def failed(self) -> bool:
        return self.count(Status.FAIL) > 0

    @property
    def warned(self) -> bool:
        return self.count(Status.WARN) > 0

    def summary(self) -> dict[str, Any]:
        return {s.value: self.count(s) for s in Status} | {"seconds": round(self.seconds, 3)}

    def as_dict(self) -> dict[str, Any]:
        return {"checks": [o.as_dict() for o in self.outcomes], "summary": self.summary()}


def _call(c: Check, ctx: Context) -> Result:
    try:
        result = c.fn(ctx)
        if not isinstance(result, Result):
            raise TypeError(f"check returned {type(result).__name__}, not a Result")
        return result
    except LabctlError as exc:
        log.debug("check %s: %s", c.id, exc, exc_info=True)
        return Result(Status.FAIL, exc.message,
                      exc.remedy or f"see the error above; rerun with: labctl doctor --check {c.id}")
    except Exception as exc:  # a crashing check is a failed check, never a traceback
        log.debug("check %s crashed", c.id, exc_info=True)
        return Result(Status.FAIL, f"the check crashed: {type(exc).__name__}: {exc}",
                      f"this is a labctl bug; run `labctl --debug doctor --check {c.id}` "
                      "and report the traceback")


def _prerequisite_skip(c: Check, done: dict[str, Outcome]) -> Result | None:
    for r in c.requires:
        o = done[r]
        if o.status is Status.FAIL:
            return Result(Status.SKIP, f"skipped because {r} failed ({o.check.title})", cause=r)
        if o.status is Status.SKIP:
            return Result(Status.SKIP, f"skipped because {r} was skipped ({o.check.title})", cause=r)
    return None


def run(checks: Sequence[Check], ctx: Context, *, timeout: float = DEFAULT_TIMEOUT,
        on_outcome: Callable[[Outcome], None] | None = None) -> Report:
    """Run ``checks`` (in :func:`order`) in parallel; return every outcome in that order."""
    started = time.monotonic()
    checks = order(checks)
    done: dict[str, Outcome] = {}
    pending = list(checks)
    running: dict[str, tuple[Check, float, float]] = {}  # id -> (check, started, deadline)
    finished: queue.Queue[tuple[str, Result, float]] = queue.Queue()

    def worker(c: Check, t0: float) -> None:
        result = _call(c, ctx)
        finished.put((c.id, result, time.monotonic() - t0))

    def record(o: Outcome) -> None:
        done[o.check.id] = o
        if on_outcome is not None:
            on_outcome(o)

    while pending or running:
        progressed = True
        while progressed:  # start what is ready; settle skips (which may ready more)
            progressed = False
            for c in list(pending):
                if not all(r in done for r in c.requires):
                    continue
                pending.remove(c)
                progressed = True
                reason = _prerequisite_skip(c, done)
                if reason is not None:
                    record(Outcome(c, reason, 0.0))
                    continue
                t0 = time.monotonic()
                limit = c.timeout if c.timeout is not None else timeout
                running[c.id] = (c, t0, t0 + limit)
                threading.Thread(target=worker, args=(c, t0), name=f"doctor:{c.id}",
                                 daemon=True).start()
        if not running:
            if pending:  # cannot happen after order(); guard against a silent hang
                for c in pending:
                    record(Outcome(c, skip("its prerequisites never ran"), 0.0))
                pending.clear()
            break
        wait = max(0.0, min(d for _, _, d in running.values()) - time.monotonic())
        try:
            cid, result, secs = finished.get(timeout=wait)
        except queue.Empty:
            now = time.monotonic()
            for cid, (c, t0, deadline) in list(running.items()):
                if deadline <= now:
                    del running[cid]
                    limit = deadline - t0
                    record(Outcome(c, Result(
                        Status.FAIL, f"timed out after {limit:g} s",
                        c.timeout_fix or f"something it waits on hangs; rerun with "
                                         f"`labctl --debug doctor --check {c.id}` to see what"),
                        now - t0))
            continue
        if cid in running:  # a late answer from a timed-out check is ignored
            c, _, _ = running.pop(cid)
            record(Outcome(c, result, secs))
    return Report([done[c.id] for c in checks if c.id in done], time.monotonic() - started)
