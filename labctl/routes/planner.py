"""Planners: (routing table, records, wanted routes) -> a Plan whose route changes are ONE
privileged batch, followed by re-reading the table and recording what took effect."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from labctl.errors import CommandFailed, Conflict
from labctl.paths import Paths
from labctl.plan import Change, Command, ExecContext, Plan, Step
from labctl.routes import records as rec
from labctl.routes.analysis import Analysis, Wanted, analyze_add, analyze_remove
from labctl.routes.model import IPv4Address, IPv4Network, Route
from labctl.routes.tables import CHANGE_TIMEOUT, DarwinTable, LinuxTable, RouteOp, outcome, table_for
from labctl.runner import is_root


@dataclass
class RouteBatch(Change):
    """All route changes of one command, applied as one privileged batch: Linux
    ``ip -batch -`` (one process), macOS one ``route`` run per change inside one privileged
    helper process.  Then the table is re-read and labctl's records follow what took effect."""

    paths: Paths
    ops: list[RouteOp]
    machine: str = ""
    description: str = ""
    privileged: bool = True
    results: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.description:
            n = len(self.ops)
            how = "ip -batch -" if self.paths.platform == "linux" else "route"
            self.description = (f"change {n} route{'s' if n != 1 else ''} in one privileged batch "
                                f"({how}): " + "; ".join(op.describe() for op in self.ops[:5])
                                + (" …" if n > 5 else ""))

    def commands(self) -> list[Command]:
        table = table_for(self.paths)
        return [Command(argv, sudo=True, timeout=CHANGE_TIMEOUT)
                for op in self.ops for argv in table.op_argvs(op)]

    def apply(self, ctx: ExecContext) -> None:
        state = self._intend(ctx)
        table = table_for(self.paths)
        failure: str | None = None
        said: dict[RouteOp, str] = {}
        if isinstance(table, LinuxTable):
            lines = "".join(table.batch_line(op) + "\n" for op in self.ops)
            res = ctx.runner.run(table.batch_argv(), sudo=True, timeout=CHANGE_TIMEOUT + len(self.ops) * 0.1,
                                 check=False, input=lines)
            if not res.ok:
                last = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.returncode}"]
                failure = f"ip -batch failed: {last[0]}"
            elif is_root() and self._record_acked(ctx, state):
                return  # ip, run by labctl itself as root, applied every line: nothing to read back
        else:
            assert isinstance(table, DarwinTable)
            failure, said = self._apply_darwin(ctx, table)
        after = table.read(ctx.runner)
        self._record(ctx, after)
        there = rec.gateway_routes(after)
        missing = [op for op in self.ops if not _took_effect(op, there)]
        if failure or missing:
            what = "; ".join(op.describe() + (f" ({said[op]})" if op in said else "") for op in missing)
            raise CommandFailed(f"route changes did not all take effect: {what or failure}"
                                + (f"; {failure}" if failure and what else ""),
                                "run labctl route ls to see what is in place; the routes that did "
                                "take effect are recorded")

    def _apply_darwin(self, ctx: ExecContext, table: DarwinTable) -> tuple[str | None, dict[RouteOp, str]]:
        argvs = [(op, argv) for op in self.ops for argv in table.op_argvs(op)]
        if is_root():
            outs = []
            for _, argv in argvs:
                r = ctx.runner.run(argv, timeout=CHANGE_TIMEOUT, check=False)
                outs.append((r.returncode, r.stdout, r.stderr))
        else:  # one sudo for the whole batch: the helper runs each route command as root
            from labctl.privileged import run_helper

            r = run_helper(ctx.runner, "labctl.routes.batch", [], check=False,
                           timeout=CHANGE_TIMEOUT * len(argvs) + 5,
                           input=json.dumps([a for _, a in argvs]))
            try:
                outs = [(o["rc"], o["stdout"], o["stderr"]) for o in json.loads(r.stdout)]
            except (ValueError, KeyError, TypeError):
                return f"the privileged route helper failed: {(r.stderr or r.stdout).strip()[-300:]}", {}
        said: dict[RouteOp, str] = {}
        problems = []
        for (op, argv), (rc, out, err) in zip(argvs, outs, strict=False):
            what = outcome(op, rc, out, err)
            self.results.append(what)
            if what != "ok":
                said[op] = " ".join((out.strip() or err.strip()).split())
            if what == "failed":
                problems.append(f"{' '.join(argv)}: {said[op]}")
        return "; ".join(problems) or None, said

    def _intend(self, ctx: ExecContext) -> dict:
        """Write-ahead: the batch's routes are recorded (pending) before the kernel sees them,
        so a labctl killed during the batch leaves no route without a record."""
        from labctl import state as labstate

        state = labstate.load(self.paths)
        rec.intend(state, self.ops, self.machine)
        ctx.write(labstate.state_path(self.paths), labstate.dump(state), privileged=True)
        return state  # as written (the lock is held until the batch is settled)

    def _record_acked(self, ctx: ExecContext, state: dict) -> bool:
        """``ip -batch`` exits 0 only when the kernel acknowledged every line, so when labctl
        ran it itself (as root: no sudo or helper in between whose word it would take) the
        batch's routes are exactly as asked.  Settle the batch's records on that, without
        reading the table back, if they are the only pending ones (else False: read it)."""
        from labctl import state as labstate

        mine = {str(op.destination) for op in self.ops}
        pending = [r for r in state.get("routes", []) if rec.is_pending(r)]
        if any(r.get("destination") not in mine for r in pending):
            return False
        there: set[tuple[IPv4Network, IPv4Address | None]] = {
            (op.destination, op.gateway) for op in self.ops if op.action != "delete"}
        if rec.settle(state, [], there):
            ctx.write(labstate.state_path(self.paths), labstate.dump(state), privileged=True)
        return True

    def _record(self, ctx: ExecContext, after: list[Route]) -> None:
        """Settle the pending records with the table as it is now: what took effect is
        labctl's, what did not is dropped (or back to its previous gateway)."""
        from labctl import state as labstate

        state = labstate.load(self.paths)
        if rec.settle(state, after):
            ctx.write(labstate.state_path(self.paths), labstate.dump(state), privileged=True)


def _took_effect(op: RouteOp, there: set[tuple[IPv4Network, IPv4Address | None]]) -> bool:
    """``there``: records.gateway_routes of the table after the batch."""
    here = (op.destination, op.gateway) in there
    return not here if op.action == "delete" else here


class ForgetRoutes(Step):
    """labctl forgets its records of routes that are gone (or changed hands)."""


def _forget_step(paths: Paths, forget: list[rec.Record]) -> Change:
    from labctl import state as labstate

    def mutate(state: dict) -> None:
        for r in forget:
            rec.drop(state, r.destination)

    names = ", ".join(str(r.destination) for r in forget)
    step = labstate.update_step(paths, f"forget labctl's records of {names}", mutate)
    return ForgetRoutes(step.description, step.fn, step.privileged, quiet=True)


def ops_or_forget(plan: Plan) -> bool:
    return any(isinstance(c, RouteBatch | ForgetRoutes) for c in plan.changes)


def _settle_step(paths: Paths, records: list[rec.Record], table: list[Route]) -> Change | None:
    """Records still pending from a run that was killed during its batch: settled against the
    table (adopted or dropped) before anything else is planned on them."""
    from labctl import state as labstate

    pending = [r for r in records if r.pending]
    if not pending:
        return None
    names = ", ".join(str(r.destination) for r in pending[:3]) + (" …" if len(pending) > 3 else "")

    def mutate(state: dict) -> None:
        rec.settle(state, table)

    return labstate.update_step(paths, f"settle labctl's unfinished route records ({names})", mutate)


def _raise_conflicts(an: Analysis) -> None:
    if an.conflicts:
        msg, fix = an.conflicts[0]
        more = f" (and {len(an.conflicts) - 1} more)" if len(an.conflicts) > 1 else ""
        raise Conflict(msg + more, fix)


def plan_add(paths: Paths, wanted: list[Wanted], table: list[Route], records: list[rec.Record],
             machine: str = "", title: str | None = None) -> Plan:
    settle = _settle_step(paths, records, table)
    an = analyze_add(wanted, table, rec.settled(records, table))
    _raise_conflicts(an)
    plan = Plan(title or f"routes to {len(wanted)} container subnet(s)")
    if settle is not None:
        plan.add(settle)
    plan.notes.extend(an.notes)
    plan.warnings.extend(an.warnings)
    plan.overlaps.extend(an.overlaps)
    for w in an.present:
        plan.noops.append(f"{w.destination} via {w.gateway} is already in place")
    if an.ops:
        plan.add(RouteBatch(paths, an.ops, machine))
    elif not plan.notes and not plan.noops:
        plan.noops.append("no routes to add; nothing to do")
    return plan


def plan_remove(paths: Paths, targets: list[rec.Record], table: list[Route],
                title: str | None = None) -> Plan:
    settle = _settle_step(paths, targets, table)
    an = analyze_remove(rec.settled(targets, table), table)
    plan = Plan(title or f"remove {len(targets)} labctl route(s)")
    if settle is not None:
        plan.add(settle)
    plan.notes.extend(an.notes)
    if an.ops:
        plan.add(RouteBatch(paths, an.ops))
    gone = [t for t in targets if t.destination not in {op.destination for op in an.ops}]
    if gone:
        plan.add(_forget_step(paths, gone))
    if not ops_or_forget(plan) and not plan.notes:
        plan.noops.append("labctl has no routes to remove; nothing to do")
    return plan


def plan_sync(paths: Paths, wanted: list[Wanted], table: list[Route], records: list[rec.Record],
              machine: str = "") -> Plan:
    """Add what is missing, remove labctl's routes whose Docker network is gone; one batch."""
    settle = _settle_step(paths, records, table)
    records = rec.settled(records, table)
    keep = {w.destination for w in wanted}
    stale = [r for r in records if r.destination not in keep]
    add = analyze_add(wanted, table, records)
    _raise_conflicts(add)
    rm = analyze_remove(stale, table)
    plan = Plan(f"sync routes with the Engine's networks{' for ' + machine if machine else ''}")
    if settle is not None:
        plan.add(settle)
    plan.notes.extend(add.notes + rm.notes)
    plan.warnings.extend(add.warnings)
    plan.overlaps.extend(add.overlaps)
    ops = add.ops + rm.ops
    if ops:
        plan.add(RouteBatch(paths, ops, machine))
    gone = [s for s in stale if s.destination not in {op.destination for op in rm.ops}]
    if gone:
        plan.add(_forget_step(paths, gone))
    if not any(isinstance(c, RouteBatch) for c in plan.changes) and not gone:
        plan.noops.append("routes already match the Engine's networks; nothing to do")
    return plan
