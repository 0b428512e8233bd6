"""`labctl up` / `down` / `status`: one loop that observes, plans, applies, observes again.

The planners (:mod:`labctl.planner`) are pure; the facts come from :mod:`labctl.facts` (through
:func:`labctl.world.observe`).  Each round observes the lab, plans every phase, applies the
first phase that has changes, and starts over with fresh facts, until no phase has anything
to do.  A phase that still has work right after it ran is an error (it did not take effect),
never a loop.  A dry run is the command layer's business: it prints the plan of the first
round instead of running the loop.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.changes import RemoveMachine, RestartNetworking
from labctl.errors import CommandFailed, Conflict, InvalidInput, LabctlError, PreconditionMissing
from labctl.facts import Facts
from labctl.labspec import LabSpec, MachineSpec
from labctl.machine import DockerMachine
from labctl.paths import Paths
from labctl.plan import Change, WriteFile, execute
from labctl.planner import LabPlan, Phase, UpOptions, plan_down, plan_up
from labctl.runner import Runner, is_root
from labctl.world import Later, World, observe


@dataclass
class Report:
    """What one machine ended up as (the summary, ``status`` and ``--json``)."""

    name: str
    state: str = ""
    nic: str = ""
    vmnet: int | None = None
    mac: str | None = None
    fixed_ip: str | None = None
    machine_ip: str | None = None
    routes: list[str] = field(default_factory=list)
    context: str | None = None
    changes: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "nic": self.nic,
                "vmnet": f"vmnet{self.vmnet}" if self.vmnet is not None else None,
                "mac": self.mac, "fixed_ip": self.fixed_ip, "machine_ip": self.machine_ip,
                "routes": self.routes, "context": self.context, "changes": self.changes,
                "notes": self.notes}


Progress = Callable[[str], Any]  # a context manager factory: with progress("step"): ...


def step_dict(phase: Phase, change: Change) -> dict[str, Any]:
    """One step as ``--json`` shows it (planned in a dry run, applied in a real run)."""
    return {"phase": phase.title, "key": phase.key, "kind": type(change).__name__,
            "description": change.description, "commands": [c.show() for c in change.commands()]}


@dataclass
class Lab:
    """One ``up``/``down``/``status`` run: where the lab is and how to speak to the user."""

    paths: Paths
    runner: Runner
    dm: DockerMachine
    progress: Progress | None = None
    say: Callable[[str], None] = print
    confirm: Callable[[str], bool] | None = None  # asked before a networking restart (no --yes)
    persist: bool = False  # up --persist: a boot unit re-applies the routes
    applied: list[dict[str, Any]] = field(default_factory=list)  # every step run, in order
    said: list[str] = field(default_factory=list)
    # VMs labctl adopts: how each was powered before labctl first looked at it, and those the
    # preflight did not power on for its look (it would have: the plan knows they will run)
    adopt_power: dict[str, str] = field(default_factory=dict)
    unlooked: list[str] = field(default_factory=list)

    def facts(self) -> Facts:
        return Facts(self.paths, runner=self.runner)

    # ---- preflight ------------------------------------------------------------------------------
    def preflight(self, spec: LabSpec, power_on: bool = True) -> None:
        """Everything that can be checked before the first change (so a failure leaves nothing
        half-made): the host, docker-machine and its driver, VMware's network tool, names and
        subnets, and a VM to adopt (its look may power it on: ``power_on``)."""
        hv = self.paths.hypervisor
        hv.refuse_unworkable(spec.machines)  # arm64 boot2docker, Apple's DHCP (exit 3)
        self.dm.require()  # PreconditionMissing when docker-machine is not installed
        for m in spec.machines:
            self.dm.preflight_driver(m.driver)
        if not os.access(hv.network_tool, os.X_OK):
            raise PreconditionMissing(
                f"{hv.product}'s network tool {hv.network_tool} was not found",
                f"install {hv.product} (labctl needs it to restart vmnet DHCP)")
        _, nf = hv.read_networks()
        for m in spec.machines:
            if m.vmnet is not None and m.subnet is not None:
                v = nf.get(m.vmnet)
                if v is not None and v.network != m.subnet:
                    raise Conflict(f"vmnet{m.vmnet} is {v.network}, not {m.subnet}",
                                   f"leave out --subnet, or pick another vmnet for {m.name}")
        facts = self.facts()
        for m in spec.machines:
            if m.nic == "existing" and m.vmnet is not None and not m.adopting:
                check_existing_vmnet(facts, m, nf)
        for m in spec.machines:
            if m.adopting:  # the VM the user installed: its .vmx, guest OS, SSH (labctl.adopt)
                from labctl import adopt

                rec = facts.machine_record(m.name)
                power, looked = adopt.preflight(self.paths, self.runner, m, rec.extra if rec else {},
                                                power_on=power_on)
                self.adopt_power[m.name] = power
                if not looked:
                    self.unlooked.append(m.name)

    # ---- observing and planning ----------------------------------------------------------------------
    def observe_up(self, facts: Facts, spec: LabSpec, deep: bool = True) -> World:
        from labctl import adopt
        from labctl.routes.persist import unit_path

        adopted = {m.name: (m.vmx, adopt.login_for(m)) for m in spec.machines if m.vmx is not None}
        world = observe(facts, spec.names, units=[unit_path(self.paths, n) for n in spec.names],
                        adopted=adopted, power=self.adopt_power, deep=deep,
                        cas=[m.name for m in spec.machines if m.ca_certs],
                        settings=[m.name for m in spec.machines
                                  if m.engine_env or m.registry_mirrors or m.insecure_registries])
        for name in self.unlooked:  # the look would have powered it on
            if not world.machine(name).vm_running:
                world = world.with_machine(name, vm_running=True)
        return world

    def plan_up(self, spec: LabSpec, facts: Facts | None = None, deep: bool = True) -> LabPlan:
        return plan_up(self.observe_up(facts or self.facts(), spec, deep), spec, UpOptions(self.persist))

    def replan_up(self, spec: LabSpec, facts: Facts) -> LabPlan:
        """The next round's plan: from a shallow look when its first phase needs no more
        (creating, editing, reserving), else from the whole look."""
        from labctl.planner import SHALLOW

        try:
            plan = self.plan_up(spec, facts, deep=False)
        except LabctlError:  # the whole look says what is wrong
            return self.plan_up(spec, facts)
        first = plan.first()
        if first is not None and first.key.split(":")[0] in SHALLOW:
            return plan
        return self.plan_up(spec, facts)

    def observe_down(self, facts: Facts, names: list[str]) -> World:
        from labctl.routes.persist import unit_path

        adopted = {}
        cas = []
        settings = []
        for n in names:
            rec = facts.machine_record(n)
            if rec is not None and rec.extra.get("adopted") and rec.vmx:
                adopted[n] = (Path(rec.vmx), None)
            if rec is not None and rec.extra.get("ca_certs"):
                cas.append(n)
            if rec is not None and rec.extra.get("engine_settings"):
                settings.append(n)
        return observe(facts, names, units=[unit_path(self.paths, n) for n in names], vmx_scan=True,
                       engine=False, adopted=adopted, cas=cas, settings=settings)

    def plan_down(self, names: list[str], keep_vm: bool, facts: Facts | None = None) -> LabPlan:
        return plan_down(self.observe_down(facts or self.facts(), names), names, keep_vm)

    # ---- the loop -------------------------------------------------------------------------------------
    def converge(self, first: LabPlan, replan: Callable[[Facts], LabPlan]) -> LabPlan:
        """Apply ``first``'s first phase with changes, then observe and plan again, until
        nothing is left to do.  Root is asked for once, before the first change."""
        plan = first
        refuse_unwritable(plan)
        if any(p.privileged for p in plan.phases):
            self.runner.ensure_privilege()
        done: set[str] = set()
        while True:
            self._tell(plan)
            phase = plan.first()
            if phase is None:
                return plan
            if phase.key in done:
                raise CommandFailed(f"{phase.title}: still not done right after it ran "
                                    f"({phase.changes[0].description})",
                                    "run labctl doctor, then the command again")
            done.add(phase.key)
            self.apply(phase)
            plan = replan(self.facts())

    def _tell(self, plan: LabPlan) -> None:
        for phase in plan.phases:
            for line in [*(f"warning: {w}" for w in phase.warnings), *(f"note: {n}" for n in phase.notes)]:
                if line not in self.said:
                    self.said.append(line)
                    self.say(line)

    def apply(self, phase: Phase) -> None:
        if self.confirm is not None and any(isinstance(c, RestartNetworking) for c in phase.changes) \
                and not self.confirm(f"{phase.title}: this restarts {self.paths.hypervisor.product} "
                                     "networking, which briefly disconnects every running VM. Continue?"):
            raise LabctlError("stopped before restarting VMware networking; nothing of this step "
                              "was changed", "run it again with --yes to skip the question")

        def progress(change: Change) -> Any:
            return self.progress(change.description) if self.progress else contextlib.nullcontext()

        ctx = execute(phase, self.runner, self.paths.backup_dir, progress=progress, data={"dm": self.dm},
                      done=lambda change: self.applied.append(step_dict(phase, change)))
        for line in [*ctx.notices, *phase.after]:
            self.say(line)

    # ---- up and down ----------------------------------------------------------------------------------
    def up(self, spec: LabSpec, first: LabPlan | None = None) -> list[Report]:
        final = self.converge(first or self.plan_up(spec), lambda facts: self.replan_up(spec, facts))
        return self.reports(final, spec.machines)

    def down(self, names: list[str], keep_vm: bool, first: LabPlan | None = None) -> list[Report]:
        self.converge(first or self.plan_down(names, keep_vm),
                      lambda facts: self.plan_down(names, keep_vm, facts))
        return [Report(n, changes=sum(1 for s in self.applied if _about(s, n))) for n in names]

    def reports(self, plan: LabPlan, machines: tuple[MachineSpec, ...] | list[MachineSpec]) -> list[Report]:
        out = []
        for m in machines:
            it = plan.machines[m.name]
            mv = plan.world.machine(m.name)
            out.append(Report(
                m.name, state=mv.state, nic=m.nic, vmnet=it.vmnet, mac=_text(it.mac), fixed_ip=it.ip,
                machine_ip=_text(mv.ip), routes=list(it.routes), context=it.context,
                changes=sum(1 for s in self.applied if _about(s, m.name)),
                notes=[line for p in plan.phases if p.key.endswith(f":{m.name}")
                       for line in [*p.warnings, *p.notes]]))
        return out

    # ---- status ---------------------------------------------------------------------------------------
    def status(self, names: list[str]) -> list[Report]:
        from labctl.routes.analysis import route_state

        facts = self.facts()
        names = names or list(facts.recorded_machines())
        try:
            table = facts.route_table(True)
        except LabctlError:
            table = []
        reports = []
        for name in names:
            rec = facts.machine_record(name)
            r = Report(name)
            if rec is not None:
                r = Report(name, nic=rec.nic or "", mac=rec.mac, fixed_ip=rec.ip, context=rec.context,
                           vmnet=rec.vmnet)
            if facts.machine_exists(name):
                try:
                    r.state = facts.machine_status(name)
                except LabctlError as exc:
                    r.state = "Error"
                    r.notes.append(exc.message)
                if r.state == "Running":
                    with contextlib.suppress(LabctlError):
                        r.machine_ip = facts.machine_config(name).ip_address or None
            else:
                r.state = "absent"
                if rec is None:
                    r.notes.append("no such machine (labctl up NAME creates it)")
            for x in facts.routes_of(name):
                r.routes.append(f"{x.destination} via {x.gateway} ({route_state(x, table, None)})")
            reports.append(r)
        return reports


def check_existing_vmnet(facts: Facts, m: MachineSpec, nf: Any) -> None:
    """--nic existing with --vmnet: only the NIC's own vmnet can carry its reservation."""
    if facts.machine_exists(m.name):
        n0 = facts.vmx_file(m.name).vmx.nic(0)
        if n0 is not None:  # refuses a --vmnet that is not the NIC's
            facts.paths.hypervisor.reservation_network(n0, nf, m.vmnet, m.name)
    elif m.vmnet != 8:
        raise InvalidInput(f"--vmnet vmnet{m.vmnet} with --nic existing: the NIC docker-machine "
                           f"creates for {m.name} is on vmnet8 (NAT), and its address is "
                           "reserved there",
                           "leave out --vmnet, or use --nic dedicated to put a NIC on that vmnet")


def _about(step: dict[str, Any], name: str) -> bool:
    return str(step.get("key", "")).endswith(f":{name}")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def refuse_unwritable(plan: LabPlan) -> None:
    """The files the plan edits must be writable now (a read-only mount or an immutable file
    found half-way would leave a machine without its reservation): refused before the first
    change."""
    if not is_root():  # otherwise sudo writes them; access() would only speak for this user
        return
    for change in plan.changes:
        path = getattr(change, "path", None)
        if not isinstance(change, WriteFile | _file_edit()) or not isinstance(path, Path):
            continue
        if path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise PreconditionMissing(
                f"{path} is not writable (read-only mount or immutable file); nothing was changed",
                f"make it writable (e.g. chattr -i {path}), then run labctl again")


def _file_edit() -> type:
    from labctl.changes import FileEdit

    return FileEdit


def removes_machines(plan: LabPlan) -> list[str]:
    return [c.name for c in plan.changes if isinstance(c, RemoveMachine)]


def unknown_machines(facts: Facts, names: list[str]) -> None:
    known = facts.recorded_machines()
    unknown = [n for n in names if n not in known]
    if unknown:
        hint = f" (it knows {', '.join(known)})" if known else ""
        raise InvalidInput(f"labctl has no lab machine named {', '.join(unknown)}{hint}",
                           "labctl status lists the machines labctl set up; labctl down --all removes "
                           "every one")


__all__ = ["Lab", "Later", "Report", "removes_machines", "step_dict", "unknown_machines"]
