"""`labctl up` / `down` / `status`: converge a docker-machine lab, undo it, show it.

The work runs in phases.  Each phase probes what is there, plans the changes that are
missing (a Plan: described, with argv and diffs) and applies them, then the next phase
probes again (facts are never trusted across a change).  A phase with nothing to do plans
nothing, so a second ``up`` on a converged lab changes nothing and runs no privileged
command.  With ``--dry-run`` every phase prints its plan against the facts as they are now;
phases whose facts depend on an earlier change say so instead of guessing.

Order for one machine (``--nic dedicated``, the classic Fusion recipe):
  preflight -> vmnet (create if missing) -> machine (create, or start) -> NIC ethernet1 in the
  .vmx (VM stopped) -> DHCP reservation (networking restarted only if the file changed) ->
  VM started, fixed IP verified -> routes to the engine's networks via the fixed IP ->
  docker context -> labctl's record.
``--nic existing`` reserves ethernet0's generated MAC on its own vmnet instead, restarts
the VM if it held another address and regenerates the TLS certificates for the new one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import state as labstate
from labctl.errors import (
    CommandFailed,
    Conflict,
    InvalidInput,
    LabctlError,
    PreconditionMissing,
)
from labctl.labspec import EngineNets, LabSpec, MachineSpec
from labctl.machine import DockerMachine
from labctl.paths import Paths
from labctl.plan import Plan, Step, WriteFile, execute
from labctl.runner import Runner, is_root
from labctl.vmware.vmx import Vmx

IP_TIMEOUT = float(os.environ.get("LABCTL_IP_TIMEOUT", "180"))


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


@dataclass
class Converger:
    paths: Paths
    runner: Runner
    dm: DockerMachine
    dry_run: bool = False
    progress: Progress | None = None
    say: Callable[[str], None] = print
    show_plan: Callable[[str], None] = print  # where --dry-run prints the plans (stdout)
    ip_timeout: float = IP_TIMEOUT
    persist: bool = False  # up --persist: a boot unit re-applies the routes
    restart_pending: bool = False  # a new vmnet waits for the reservation's restart
    confirm: Callable[[str], bool] | None = None  # asked before a networking restart (no --yes)
    changes: int = 0
    # what this run has already learned about a machine (re-asking docker-machine costs a
    # process each): the engine target ensure_routes resolved, its state
    _targets: dict[str, Any] = field(default_factory=dict)
    _states: dict[str, str] = field(default_factory=dict)  # read once; kept by create/stop/start
    _vm: dict[str, Any] = field(default_factory=dict)  # the VM's last probe (labctl.vmpath facts)
    _adopt_power: dict[str, str] = field(default_factory=dict)  # adopted VMs: powered before up?

    # ---- applying -------------------------------------------------------------------------------
    def do(self, plan: Plan) -> None:
        """Print (dry run) or apply one phase's plan."""
        if plan.empty:
            return
        self.changes += len(plan.changes)
        if self.dry_run:
            self.show_plan(plan.render().rstrip("\n"))
            return
        if self.confirm is not None and _restarts_networking(plan) and not self.confirm(
                f"{plan.title}: this restarts {self.paths.product} networking, which briefly "
                "disconnects every running VM. Continue?"):
            raise LabctlError("stopped before restarting VMware networking; nothing of this step "
                              "was changed", "run it again with --yes to skip the question")

        def progress(change: Any) -> Any:
            if self.progress is None:
                import contextlib

                return contextlib.nullcontext()
            return self.progress(change.description)

        ctx = execute(plan, self.runner, self.paths.backup_dir, progress=progress)
        for line in [*ctx.notices, *plan.after]:
            self.say(line)

    # ---- preflight ------------------------------------------------------------------------------
    def preflight(self, spec: LabSpec) -> None:
        """Everything that can be checked before the first change (so a failure leaves nothing
        half-made): docker-machine and its driver, VMware's network tool, the networking file,
        names and subnets."""
        from labctl.vmware import facts
        from labctl.vmware.preflight import refuse_unworkable

        refuse_unworkable(self.paths, spec.machines)  # arm64 boot2docker, Apple's DHCP (exit 3)
        self.dm.version()  # PreconditionMissing when docker-machine is not installed
        for m in spec.machines:
            self.dm.preflight_driver(m.driver)
        if not os.access(self.paths.network_tool, os.X_OK):
            raise PreconditionMissing(
                f"{self.paths.product}'s network tool {self.paths.network_tool} was not found",
                f"install {self.paths.product} (labctl needs it to restart vmnet DHCP)")
        _, nf = facts.read_networking(self.paths)
        for m in spec.machines:
            if m.vmnet is not None and m.subnet is not None:
                v = nf.get(m.vmnet)
                if v is not None and v.network != m.subnet:
                    raise Conflict(f"vmnet{m.vmnet} is {v.network}, not {m.subnet}",
                                   f"leave out --subnet, or pick another vmnet for {m.name}")
        for m in spec.machines:
            if m.nic == "existing" and m.vmnet is not None:
                self._check_existing_vmnet(m)
            self._check_writable(m, nf)
        for m in spec.machines:
            if m.adopting:  # the VM the user installed: its .vmx, guest OS, SSH (labctl.adopt)
                from labctl.adopt import Adopter

                Adopter(self).preflight(m)

    def _check_existing_vmnet(self, m: MachineSpec) -> None:
        """--nic existing with --vmnet: only the NIC's own vmnet can carry its reservation."""
        if self.dm.exists(m.name):
            from labctl.vmware import facts
            from labctl.vmware.vmx import reservation_vmnet

            n0 = self.read_vmx(m.name)[2].nic(0)
            if n0 is not None:  # refuses a --vmnet that is not the NIC's
                reservation_vmnet(n0, facts.read_networking(self.paths)[1], m.vmnet, m.name)
        elif m.vmnet != 8:
            raise InvalidInput(f"--vmnet vmnet{m.vmnet} with --nic existing: the NIC docker-machine "
                               f"creates for {m.name} is on vmnet8 (NAT), and its address is "
                               "reserved there",
                               "leave out --vmnet, or use --nic dedicated to put a NIC on that vmnet")

    def _check_writable(self, m: MachineSpec, nf: Any) -> None:
        """The files this machine's run will edit must be writable now (a read-only mount or
        an immutable file found half-way would leave a machine without its reservation)."""
        number: int | None
        if m.nic == "dedicated":
            number = m.vmnet
            if number is None:
                st = labstate.load(self.paths)
                rec = st.get("machines", {}).get(m.name) or {}
                number = rec.get("vmnet") if rec.get("nic") == "dedicated" else None
                if number is None and str(st.get("default_vmnet")) in st.get("vmnets", {}):
                    number = int(st["default_vmnet"])
        else:
            number = 8
            if self.dm.exists(m.name):
                with contextlib.suppress(LabctlError):
                    number = self.existing_nic(m)[1]
        files = [self.paths.dhcpd_conf(int(number))] if number is not None and nf.get(number) else []
        if number is None or nf.get(number) is None:
            files.append(self.paths.networking)  # a vmnet will be added
        if is_root():  # otherwise sudo writes them; access() would only speak for this user
            for path in files:
                if path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
                    raise PreconditionMissing(
                        f"{path} is not writable (read-only mount or immutable file); nothing was changed",
                        f"make it writable (e.g. chattr -i {path}), then run labctl up again")

    def needs_root(self, spec: LabSpec) -> bool:
        """Whether this run will change anything only root may change (asked once, up front)."""
        if is_root():
            return False
        st = labstate.load(self.paths)
        for m in spec.machines:
            rec = st.get("machines", {}).get(m.name)
            if not rec or not rec.get("ip"):
                return True
            if not any(r.get("machine") == m.name for r in st.get("routes", [])):
                return True
        return False

    # ---- engine networks ------------------------------------------------------------------------
    def engine_nets(self, spec: LabSpec) -> dict[str, EngineNets]:
        """Existing machines keep the bip/pool they were created with; new ones get blocks that
        overlap nothing on this desktop (host networks, VPN routes, other machines)."""
        from labctl.labspec import allocate_engines, engine_nets_from_flags
        from labctl.routes import records as rroutes
        from labctl.routes.tables import read_table
        from labctl.vmware import facts

        avoid: list[Any] = [net for _, net in facts.host_networks()]
        # labctl's own routes lead to machines' engines (whose blocks come from their
        # config below): they are not VPN or host routes to keep clear of
        own = {r.destination for r in rroutes.load(self.paths)}
        with contextlib.suppress(LabctlError):
            avoid += [r.destination for r in read_table(self.paths, self.runner, quick=True)
                      if r.destination.prefixlen > 0 and r.destination not in own]
        existing: dict[str, EngineNets] = {}
        for name in self.dm.names():
            try:
                nets = engine_nets_from_flags(self.dm.read_config(name).engine_flags)
            except LabctlError:
                continue
            if nets is not None:
                existing[name] = nets
        from dataclasses import replace

        pinned = []
        for m in spec.machines:
            if m.name in existing:
                m = replace(m, bip=existing[m.name].bip, pool=existing[m.name].pool)
            pinned.append(m)
        others = [n for name, e in existing.items() if name not in spec.names for n in e.networks]
        return allocate_engines(replace(spec, machines=tuple(pinned)), avoid=[*avoid, *others])

    # ---- phases ---------------------------------------------------------------------------------
    def ensure_vmnet(self, m: MachineSpec) -> int:
        """The host-only vmnet for the dedicated NIC: the one asked for, else the lab's, else a
        new one labctl creates (and records as its own)."""
        from labctl.vmware import facts
        from labctl.vmware import lab as vlab

        _, nf = facts.read_networking(self.paths)
        st = labstate.load(self.paths)
        number = m.vmnet
        if number is None:
            rec = st.get("machines", {}).get(m.name) or {}
            number = rec.get("vmnet") if rec.get("nic") == "dedicated" else None
        if number is None:
            default = st.get("default_vmnet")
            if default is not None and str(default) in st.get("vmnets", {}):
                number = int(default)
        v = nf.get(number) if number is not None else None
        if v is not None and number is not None:
            if v.kind != "host-only" or not v.dhcp:
                raise Conflict(f"vmnet{number} is {v.kind}{'' if v.dhcp else ' without DHCP'}; the "
                               "dedicated NIC needs a host-only vmnet with DHCP",
                               "pick another with --vmnet, or --vmnet auto")
            return int(number)
        subnet = m.subnet or self._free_subnet(nf)
        self.restart_pending = True  # once, after the reservation on it
        plan, created = vlab.plan_vmnet_create(
            self.paths, f"vmnet{number}" if number is not None else "auto", str(subnet), restart=False)
        self.do(plan)
        return created

    def _free_subnet(self, nf: Any) -> ipaddress.IPv4Network:
        from labctl.vmware import facts

        used = [v.network for v in nf.vmnets.values() if v.network] + \
               [net for _, net in facts.host_networks()]
        for third in range(99, 255):
            cand = ipaddress.IPv4Network(f"192.168.{third}.0/24")
            if not any(cand.overlaps(u) for u in used):
                return cand
        raise Conflict("no free 192.168.x.0/24 for a new vmnet", "pass --subnet")

    def ensure_machine(self, m: MachineSpec, nets: EngineNets) -> bool:
        """Create the machine if it does not exist (True if created).  A create that fails
        half-way is removed again, so the next `up` starts clean."""
        if self.dm.exists(m.name):
            return False
        from labctl.machine import create_argv

        engine_opts = [*nets.engine_opts(), *m.engine_opts]
        argv = [str(self.dm.binary), *create_argv(
            m.name, m.driver, cpus=m.cpus, memory=m.memory, disk=m.disk,
            engine_opts=engine_opts)]
        from labctl.plan import Command

        def create() -> None:
            try:
                self.dm.create(m.name, m.driver, cpus=m.cpus, memory=m.memory, disk=m.disk,
                               engine_opts=engine_opts)
                self._states[m.name] = "Running"  # docker-machine create leaves it running
            except LabctlError:
                self._states.pop(m.name, None)
                if self.dm.exists(m.name):
                    with contextlib.suppress(LabctlError):
                        self.dm.rm(m.name, force=True, missing_ok=True)
                raise
            st = labstate.load(self.paths)
            rec = st["machines"].setdefault(m.name, {})
            rec["created_by_labctl"] = True

        plan = Plan(f"create machine {m.name}")
        plan.add(Step(f"create the docker-machine {m.name} ({m.driver}, engine {nets.bip}, "
                      f"pool {nets.pool})", lambda ctx: create(), shown=[Command(argv)]))
        plan.add(self._record_step(m.name, {"created_by_labctl": True, "driver": m.driver,
                                            "engine": {"bip": str(nets.bip), "pool": str(nets.pool)}}))
        self.do(plan)
        return True

    def _record_step(self, name: str, values: dict[str, Any]) -> Step:
        def mutate(state: dict[str, Any]) -> None:
            state["machines"].setdefault(name, {}).update(values)

        return labstate.update_step(self.paths, f"record {name} in labctl's state", mutate)

    def machine_state(self, name: str) -> str:
        """docker-machine status, unless this run just created, stopped or started it."""
        if name not in self._states:
            self._states[name] = self.dm.status(name)
        return self._states[name]

    def read_vmx(self, name: str) -> tuple[Path, bytes, Vmx]:
        path = self.dm.vmx_path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PreconditionMissing(f"cannot read {name}'s .vmx {path}: {exc.strerror}",
                                      "is it a VMware machine (driver vmwarefusion or vmware)?") from exc
        return path, data, Vmx.parse(data)

    def ensure_nic(self, m: MachineSpec, vmnet: int) -> tuple[str, bool]:
        """labctl's ethernet1 on the vmnet (static MAC from the name), written while the VM is
        stopped.  Returns (mac, whether the VM was stopped for it)."""
        from labctl import nic

        mac = nic.mac_for(m.name)
        path, old, vmx = self.read_vmx(m.name)
        new = nic.plan_nic(vmx, vmnet, mac)
        if new == old:
            return mac, False
        stopped = False
        plan = Plan(f"dedicated NIC for {m.name}")
        if self.dry_run or self.machine_state(m.name) == "Running":
            def stop(ctx: Any) -> None:
                self.dm.stop(m.name)
                self._states[m.name] = "Stopped"

            plan.add(Step(f"stop {m.name} so its .vmx can be edited", stop,
                          shown=[_cmd(self.dm, "stop", m.name)]))
            stopped = True
        plan.add(WriteFile(path, old, new, privileged=False,
                           description=f"add ethernet1 ({mac}) on vmnet{vmnet} to {path.name}"))
        self.do(plan)
        return mac, stopped

    def existing_nic(self, m: MachineSpec) -> tuple[str, int]:
        """ethernet0's MAC and the vmnet it is on (--nic existing)."""
        _, _, vmx = self.read_vmx(m.name)
        n0 = vmx.nic(0)
        if n0 is None or not n0.address:
            raise PreconditionMissing(f"{m.name}'s ethernet0 has no MAC yet (it gets one at first boot)",
                                      f"start it once: docker-machine start {m.name}")
        from labctl.vmware import facts
        from labctl.vmware.vmx import reservation_vmnet

        return n0.address, reservation_vmnet(n0, facts.read_networking(self.paths)[1], m.vmnet, m.name)

    def ensure_reservation(self, m: MachineSpec, vmnet: int, mac: str) -> str:
        from labctl.vmware import lab as vlab

        want = str(m.ip) if m.ip is not None else None
        plan, ip = vlab.plan_reserve(self.paths, vlab.ReservationRequest(m.name, mac, want, vmnet))
        if plan.empty and self.restart_pending:
            vlab.add_restart(plan, self.paths, vmnet, True)
        self.restart_pending = False
        self.do(plan)
        if not self.dry_run:
            # recorded at once: should a later step fail, `down` finds the reservation to undo
            self._record_if_changed(m.name, {"vmnet": vmnet, "mac": mac, "ip": ip, "nic": m.nic})
        return ip

    def guest_has(self, name: str, ip: str) -> bool:
        """Whether the guest holds ``ip`` on some interface (one ``docker-machine ssh`` that also
        reads the VM's firewall, kept for the firewall phase that follows)."""
        try:
            facts = self.vm_facts(name, fresh=True)
        except LabctlError:
            return False
        return facts.iface_for(ip) is not None

    def wait_for_ip(self, name: str, ip: str) -> None:
        deadline = time.monotonic() + self.ip_timeout
        while True:
            if self.guest_has(name, ip):
                return
            if time.monotonic() > deadline:
                raise CommandFailed(
                    f"{name} did not take its fixed address {ip} within {self.ip_timeout:g} s",
                    f"run labctl doctor {name}; then labctl up {name} again (it resumes)")
            time.sleep(1.0)

    def ensure_running_with_ip(self, m: MachineSpec, ip: str, restart: bool) -> None:
        """Start the VM (or restart it so DHCP hands out the reservation) and verify the IP."""
        if self.dry_run:
            if restart:
                self.show_plan(f"then: start {m.name} and wait until it holds {ip}")
            return
        state = self.machine_state(m.name)
        if state == "Running" and not restart and self.guest_has(m.name, ip):
            return
        self.changes += 1
        with self._progress(f"{'restart' if state == 'Running' else 'start'} {m.name} and wait for {ip}"):
            self._states.pop(m.name, None)
            if state == "Running":
                self.dm.stop(m.name)
            self.dm.start(m.name)
            self._states[m.name] = "Running"
            self.wait_for_ip(m.name, ip)

    def _progress(self, description: str) -> Any:
        import contextlib

        return self.progress(description) if self.progress else contextlib.nullcontext()

    def ensure_routes(self, m: MachineSpec, gateway: str) -> list[str]:
        from labctl.routes import records as rec
        from labctl.routes import service
        from labctl.routes.model import parse_gateway
        from labctl.routes.planner import plan_sync
        from labctl.routes.tables import read_table

        if self.dry_run and not self.dm.exists(m.name):
            self.show_plan(f"then: add routes via {gateway} to every network of {m.name}'s engine")
            return []
        facts = service.engine_facts(self.paths, m.name, None, self.runner)
        self._targets[m.name] = facts.target
        for note in facts.notes:
            self.say(note)
        wanted = service.wanted_from_networks(facts.networks, parse_gateway(gateway))
        table = read_table(self.paths, self.runner)
        records = rec.for_machine(rec.load(self.paths), m.name)
        plan = plan_sync(self.paths, wanted, table, records, m.name)
        plan.notes = [n for n in plan.notes if n.startswith("warning")]
        self.do(plan)
        return [f"{w.destination} via {w.gateway}" for w in wanted]

    def vm_facts(self, name: str, fresh: bool = False) -> Any:
        """The VM's addresses, firewall and boot files (one ``docker-machine ssh``; labctl.vmpath),
        probed again unless this run already did since the VM last changed."""
        from labctl import vmpath

        if fresh or name not in self._vm:
            out = self.dm.ssh(name, vmpath.probe_script(), timeout=30).stdout
            self._vm[name] = vmpath.parse_probe(out)
        return self._vm[name]

    def _vm_ssh(self, name: str) -> Any:
        return lambda command: self.dm.ssh(name, command, timeout=60)

    def ensure_vm_path(self, name: str, ip: str, vmnet: int) -> dict[str, Any] | None:
        """The VM forwards what the desktop routes to its containers: labctl's DOCKER-USER rule
        for the vmnet's subnet on the NIC holding the fixed IP, now and at every boot
        (labctl.vmpath explains why real Docker hosts need it)."""
        from labctl import vmpath
        from labctl.vmware import facts

        _, nf = facts.read_networking(self.paths)
        v = nf.get(vmnet)
        subnet = v.network if v is not None else None
        if subnet is None:
            subnet = ipaddress.IPv4Network(f"{ip}/24", strict=False)
        try:
            vf = self.vm_facts(name)
        except LabctlError:
            if self.dry_run:
                self.show_plan(f"then: accept traffic from {subnet} on {name}'s lab NIC in "
                               f"{vmpath.CHAIN} (now, and at every boot)")
                return None
            raise
        plan, rule = vmpath.plan_open(name, vf, ip, subnet, self._vm_ssh(name), str(self.dm.binary))
        if not plan.empty:
            self._vm.pop(name, None)  # changed: the next look probes again
        if rule is None and self.dry_run:
            self.show_plan(f"then: accept traffic from {subnet} on the NIC of {name} that holds {ip} "
                           f"in {vmpath.CHAIN} (now, and at every boot)")
            return None
        self.do(plan)
        if rule is None:
            return None
        return {"iface": rule.iface, "subnet": str(rule.source), "init": vf.init}

    def close_vm_path(self, name: str, rec: dict[str, Any]) -> None:
        from labctl import vmpath

        rule = vmpath.rule_from_record(rec)
        if rule is None:
            return
        try:
            vf = self.vm_facts(name)
        except LabctlError as exc:
            self.say(f"note: {name}'s firewall rule was not removed (the VM did not answer: "
                     f"{exc.message}); it goes with the VM, or run labctl down {name} again")
            return
        self.do(vmpath.plan_close(name, vf, rule, self._vm_ssh(name), str(self.dm.binary)))

    def ensure_ca(self, m: MachineSpec) -> list[str]:
        """The CA certificates the engine must trust, installed in the VM's system store the way
        the host loads them at boot, the engine restarted once if one was added
        (labctl.vmcerts).  Returns the sha256 of each certificate in place."""
        from labctl import vmcerts

        if not m.ca_certs:
            return []
        certs = list(m.ca_certs)
        try:
            facts = vmcerts.parse_probe(self.dm.ssh(m.name, vmcerts.probe_script(), timeout=30).stdout)
        except LabctlError:
            if self.dry_run:
                self.show_plan(f"then: install {len(certs)} CA certificate(s) in {m.name} and restart "
                               "its engine")
                return []
            raise
        if not facts.complete:
            raise LabctlError(f"{m.name} did not answer labctl's CA probe completely",
                              f"check docker-machine ssh {m.name} works, then run labctl up again")
        plan = vmcerts.plan_install(m.name, facts, certs, self._vm_ssh(m.name), str(self.dm.binary))
        self.do(plan)
        if not plan.empty and not self.dry_run:
            self.wait_for_engine(m.name)
        return [c.sha256 for c in certs]

    def remove_ca(self, name: str) -> None:
        from labctl import vmcerts

        try:
            facts = vmcerts.parse_probe(self.dm.ssh(name, vmcerts.probe_script(), timeout=30).stdout)
        except LabctlError as exc:
            self.say(f"note: labctl's CA certificates stay in {name} (the VM did not answer: "
                     f"{exc.message}); run labctl down {name} again")
            return
        plan = vmcerts.plan_remove(name, facts, self._vm_ssh(name), str(self.dm.binary))
        self.do(plan)
        if not plan.empty and not self.dry_run:
            self.wait_for_engine(name)

    def wait_for_engine(self, name: str, timeout: float = 90.0) -> None:
        """After an engine restart: wait until it answers again (boot2docker's init script
        returns before dockerd listens)."""
        from labctl import engine

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                target = engine.resolve_target(self.paths, name, None, self.runner)
                engine.read(target, timeout=5).close()
                return
            except LabctlError as exc:
                last = exc.message
            except Exception as exc:  # noqa: BLE001 - the SDK's connection errors
                last = str(exc)
            time.sleep(0.5)
        raise LabctlError(f"{name}'s engine did not answer within {timeout:g} s after its restart: "
                          f"{last}", f"docker-machine ssh {name} to look, then run labctl up again")

    def ensure_persist(self, name: str, gateway: str, vmnet: int) -> None:
        """The launchd daemon / systemd unit that re-applies the routes at boot and whenever the
        vmnet's host interface (found by subnet: vmnetN, or bridge10x on macOS 11+) comes up
        (``labctl route persist``); ``down`` removes it."""
        from labctl.hostinfo import adapter_name
        from labctl.routes.persist import plan_persist
        from labctl.vmware import facts

        iface = adapter_name(self.paths, facts.read_networking(self.paths)[1].get(vmnet), vmnet)
        plan = plan_persist(self.paths, name, gateway, iface)
        plan.notes = []
        self.do(plan)

    def ensure_context(self, name: str) -> str | None:
        """A docker context named after the machine, pointing at its engine with its TLS files."""
        if self.dry_run and not self.dm.exists(name):
            self.show_plan(f"then: create docker context {name}")
            return name
        target = self._targets.get(name)
        if target is not None and target.ca and target.cert and target.key:
            from labctl.machine import MachineConfig

            config = MachineConfig(host=target.url, tlscacert=str(target.ca), tlscert=str(target.cert),
                                   tlskey=str(target.key))
        else:
            config = self.dm.config(name)
        try:
            current = self.runner.run(["docker", "context", "inspect", name, "--format",
                                       "{{.Endpoints.docker.Host}}"], timeout=20, check=False)
        except PreconditionMissing:
            self.say("note: the docker CLI is not installed, so no docker context was made")
            return None
        verb = None
        if current.returncode != 0:
            verb = "create"
        elif current.stdout.strip() != config.host:
            verb = "update"
        if verb is None:
            return name
        argv = ["docker", "context", verb, name, "--description", f"labctl machine {name}",
                "--docker", config.context_docker_arg()]
        from labctl.plan import Command, Run

        plan = Plan(f"docker context {name}")
        plan.add(Run([Command(argv, timeout=30)], description=f"{verb} docker context {name} "
                      f"({config.host})"))
        plan.add(self._record_step(name, {"context": name}))
        self.do(plan)
        return name

    # ---- up -------------------------------------------------------------------------------------
    def up(self, spec: LabSpec, preflight: bool = True) -> list[Report]:
        if preflight:
            self.preflight(spec)
        if not self.dry_run and self.needs_root(spec):
            self.runner.ensure_privilege()
        nets = self.engine_nets(spec)
        return [self.up_one(m, nets[m.name]) for m in spec.machines]

    def up_one(self, m: MachineSpec, nets: EngineNets) -> Report:
        if m.adopting:
            from labctl.adopt import Adopter

            return Adopter(self).up_one(m, nets)
        report = Report(m.name, nic=m.nic)
        before = self.changes
        if m.nic == "dedicated":
            vmnet = self.ensure_vmnet(m)
            created = self.ensure_machine(m, nets)
            if self.dry_run and created:
                self.show_plan(f"then: add ethernet1 on vmnet{vmnet} to {m.name}'s .vmx (VM stopped), "
                               "reserve its MAC, start it, accept traffic from the vmnet in its "
                               "DOCKER-USER chain (now and at boot), " + self._ca_then(m) +
                               "add routes and a docker context")
                report.vmnet = vmnet
                report.changes = self.changes - before
                return report
            mac, stopped = self.ensure_nic(m, vmnet)
            ip = self.ensure_reservation(m, vmnet, mac)
            self.ensure_running_with_ip(m, ip, restart=stopped)
        else:
            created = self.ensure_machine(m, nets)
            if self.dry_run and created:
                self.show_plan(f"then: reserve {m.name}'s ethernet0 MAC on its vmnet, restart it, "
                               "regenerate its certificates if its address changed, accept traffic "
                               "from the vmnet in its DOCKER-USER chain (now and at boot), " +
                               self._ca_then(m) + "add routes and a docker context")
                report.changes = self.changes - before
                return report
            if not self.dry_run and self.machine_state(m.name) != "Running":
                self.dm.start(m.name)
                self._states[m.name] = "Running"
            mac, vmnet = self.existing_nic(m)
            # the address docker-machine last saw (its certificates' address), from the store
            old_ip = None if self.dry_run else (self._stored_ip(m.name) or self._quiet_ip(m.name))
            ip = self.ensure_reservation(m, vmnet, mac)
            moved = old_ip is not None and old_ip != ip
            self.ensure_running_with_ip(m, ip, restart=moved)
            if moved and not self.dry_run:
                with self._progress(f"regenerate {m.name}'s TLS certificates for {ip}"):
                    self.dm.regenerate_certs(m.name, force=True)
                self.changes += 1
        report.vmnet, report.mac, report.fixed_ip = vmnet, mac, ip
        firewall = self.ensure_vm_path(m.name, ip, vmnet)
        cas = self.ensure_ca(m)
        report.routes = self.ensure_routes(m, ip)
        if self.persist:
            self.ensure_persist(m.name, ip, vmnet)
        report.context = self.ensure_context(m.name)
        record = {"vmnet": vmnet, "mac": mac, "ip": ip, "nic": m.nic,
                  "vmx": str(self.dm.vmx_path(m.name)), "driver": m.driver,
                  "engine": {"bip": str(nets.bip), "pool": str(nets.pool)}}
        if firewall is not None:
            record["firewall"] = firewall
        st = labstate.load(self.paths)
        have = st.get("machines", {}).get(m.name, {})
        if cas:  # up adds CAs; labctl down removes all of them
            record["ca_certs"] = sorted(set(have.get("ca_certs") or []) | set(cas))
        if any(have.get(k) != v for k, v in record.items()):
            plan = Plan(f"record {m.name}")
            plan.add(self._record_step(m.name, record))
            if self.dry_run:
                self.changes += 1
            else:
                self.do(plan)
        if not self.dry_run:
            target = self._targets.get(m.name)
            report.state = self.machine_state(m.name)
            report.machine_ip = (target.host if target is not None and target.host
                                 else self._quiet_ip(m.name))
        report.changes = self.changes - before
        return report

    @staticmethod
    def _ca_then(m: MachineSpec) -> str:
        if not m.ca_certs:
            return ""
        return (f"install {len(m.ca_certs)} CA certificate(s) in its system store and restart its "
                "engine, ")

    def _record_if_changed(self, name: str, values: dict[str, Any]) -> None:
        have = labstate.load(self.paths).get("machines", {}).get(name, {})
        if any(have.get(k) != v for k, v in values.items()):
            plan = Plan(f"record {name}")
            plan.add(self._record_step(name, values))
            self.do(plan)

    def _stored_ip(self, name: str) -> str | None:
        try:
            return self.dm.read_config(name).ip_address or None
        except LabctlError:
            return None

    def _quiet_ip(self, name: str) -> str | None:
        try:
            return self.dm.ip(name)
        except LabctlError:
            return None

    # ---- down -----------------------------------------------------------------------------------
    def down(self, names: list[str], keep_vm: bool) -> list[Report]:
        st = labstate.load(self.paths)
        machines = st.get("machines", {})
        if not names:
            names = sorted(machines)
        unknown = [n for n in names if n not in machines]
        if unknown:
            raise InvalidInput(f"labctl has no lab machine named {', '.join(unknown)}",
                               "labctl status lists the machines labctl set up")
        # a vmnet that goes away anyway is restarted once, when it goes, not per release
        doomed = self._removable_vmnets(names, quiet=True)
        reports = []
        for name in names:
            reports.append(self.down_one(name, machines[name], keep_vm, no_restart=doomed))
        self.remove_unused_vmnets(leaving=names)
        return reports

    def down_one(self, name: str, rec: dict[str, Any], keep_vm: bool,
                 no_restart: set[int] | None = None) -> Report:
        from labctl.routes import records as rroutes
        from labctl.routes.planner import plan_remove
        from labctl.routes.tables import read_table
        from labctl.vmware import lab as vlab

        report = Report(name, nic=str(rec.get("nic", "")))
        before = self.changes
        if not is_root() and not self.dry_run:
            self.runner.ensure_privilege()
        # routes and their boot-time unit
        mine = rroutes.for_machine(rroutes.load(self.paths), name)
        if mine:
            self.do(plan_remove(self.paths, mine, read_table(self.paths, self.runner),
                                title=f"remove {name}'s routes"))
        if f"routes:{name}" in labstate.load(self.paths).get("units", {}):
            from labctl.routes.persist import plan_unpersist

            self.do(plan_unpersist(self.paths, name))
        # docker context
        if rec.get("context"):
            self._remove_context(str(rec["context"]))
        # reservation
        if rec.get("vmnet") is not None:
            try:
                vmnet = int(rec["vmnet"])
                plan = vlab.plan_release(self.paths, name, vmnet,
                                         restart=vmnet not in (no_restart or set()))
                plan.after = [a for a in plan.after if "not restarted" not in a]
                self.do(plan)
            except LabctlError as exc:
                self.say(f"note: reservation for {name} not released: {exc.message}")
        exists = self.dm.exists(name)
        # the VM-side firewall rule (goes with a VM labctl removes; otherwise removed here)
        removing_vm = not keep_vm and rec.get("created_by_labctl", False)
        if exists and not removing_vm and rec.get("firewall"):
            if self.machine_state(name) == "Running":
                self.close_vm_path(name, rec)
            else:
                self.say(f"note: {name} is stopped, so labctl's firewall rule stays in its "
                         "bootsync.sh; start it and run labctl down again to remove it")
        if exists and not removing_vm and rec.get("ca_certs"):
            if self.machine_state(name) == "Running":
                self.remove_ca(name)
            else:
                self.say(f"note: {name} is stopped, so labctl's CA certificates stay in it; start "
                         "it and run labctl down again to remove them")
        if rec.get("adopted"):  # a VM the user installed: never removed (labctl.adopt)
            from labctl.adopt import Adopter

            Adopter(self).teardown(name, rec)
            exists = keep_vm = False
        # the NIC (only matters when the VM stays)
        if keep_vm and exists and rec.get("nic") == "dedicated" and rec.get("mac"):
            from labctl import nic

            path, old, vmx = self.read_vmx(name)
            new = nic.plan_nic_removal(vmx, str(rec["mac"]))
            if new != old:
                running = self.machine_state(name) == "Running"
                plan = Plan(f"remove {name}'s dedicated NIC")
                if running:
                    plan.add(Step(f"stop {name} so its .vmx can be edited",
                                  lambda ctx: self.dm.stop(name), shown=[_cmd(self.dm, "stop", name)]))
                plan.add(WriteFile(path, old, new, privileged=False,
                                   description=f"remove ethernet1 from {path.name}"))
                if running:
                    plan.add(Step(f"start {name} again", lambda ctx: self.dm.start(name),
                                  shown=[_cmd(self.dm, "start", name)]))
                self.do(plan)
        if not keep_vm and exists and rec.get("created_by_labctl", False):
            plan = Plan(f"remove machine {name}")
            plan.add(Step(f"remove the docker-machine {name} and its VM",
                          lambda ctx: self.dm.rm(name, force=True, missing_ok=True),
                          shown=[_cmd(self.dm, "rm", "-y", "-f", name)]))
            self.do(plan)
        plan = Plan(f"forget {name}")

        def forget(state: dict[str, Any]) -> None:
            state["machines"].pop(name, None)

        plan.add(labstate.update_step(self.paths, f"forget {name} in labctl's state", forget))
        self.do(plan)
        report.changes = self.changes - before
        return report

    def _remove_context(self, name: str) -> None:
        from labctl.plan import Command, Run

        try:
            have = self.runner.run(["docker", "context", "inspect", name], timeout=20, check=False)
        except PreconditionMissing:
            return
        if have.returncode != 0:
            return
        plan = Plan(f"remove docker context {name}")
        plan.add(Run([Command(["docker", "context", "rm", "-f", name], timeout=30)],
                     description=f"remove docker context {name}"))
        self.do(plan)

    def _removable_vmnets(self, leaving: list[str], quiet: bool = False) -> set[int]:
        """vmnets labctl created that no remaining machine uses and that hold no reservation
        but those of the machines going away."""
        from labctl.vmware import facts

        st = labstate.load(self.paths)
        gone = set(leaving)
        used = {int(r["vmnet"]) for name, r in st.get("machines", {}).items()
                if r.get("vmnet") is not None and name not in gone}
        out = set()
        for key, info in st.get("vmnets", {}).items():
            n = int(key)
            if n in used or not info.get("created"):
                continue
            try:
                _, conf = facts.read_dhcpd(self.paths, n)
            except LabctlError:
                conf = None
            if conf is not None and any(not h.protected and not (h.managed and h.name in gone)
                                        for h in conf.hosts):
                if not quiet:
                    self.say(f"note: vmnet{n} still has other reservations; labctl keeps it")
                continue
            out.add(n)
        return out

    def remove_unused_vmnets(self, leaving: list[str] | None = None) -> None:
        """A vmnet labctl created goes when no lab machine uses it any more."""
        from labctl.plan import Run
        from labctl.vmware import facts, tools

        for n in sorted(self._removable_vmnets(leaving or [])):
            old, nf = facts.read_networking(self.paths)
            nf.remove_vmnet(n)
            plan = Plan(f"remove vmnet{n}")
            plan.add(WriteFile(self.paths.networking, old, nf.dump(),
                               description=f"remove vmnet{n} (created by labctl) from "
                                           f"{self.paths.networking}"))
            conf_path = self.paths.dhcpd_conf(n)
            if self.paths.platform == "linux" and conf_path.exists():
                from labctl.plan import DeleteFile

                plan.add(DeleteFile(conf_path, conf_path.read_bytes(),
                                    description=f"remove vmnet{n}'s dhcpd.conf (written by labctl)"))
            configure = tools.configure_command(self.paths)
            if configure:
                plan.add(Run([configure], description="regenerate the vmnet configuration"))
            plan.add(Run(tools.restart_commands(self.paths),
                         description=f"restart {self.paths.product} networking"))

            def forget(state: dict[str, Any], n: int = n) -> None:
                state["vmnets"].pop(str(n), None)
                if state.get("default_vmnet") == n:
                    state.pop("default_vmnet", None)

            plan.add(labstate.update_step(self.paths, f"forget vmnet{n}", forget))
            self.do(plan)

    # ---- status ---------------------------------------------------------------------------------
    def status(self, names: list[str]) -> list[Report]:
        from labctl.routes import records as rroutes
        from labctl.routes.analysis import route_state
        from labctl.routes.tables import read_table

        st = labstate.load(self.paths)
        machines = st.get("machines", {})
        names = names or sorted(machines)
        try:
            table = read_table(self.paths, self.runner, quick=True)
        except LabctlError:
            table = []
        records = rroutes.load(self.paths)
        reports = []
        for name in names:
            rec = machines.get(name, {})
            r = Report(name, nic=str(rec.get("nic", "")), mac=rec.get("mac"), fixed_ip=rec.get("ip"),
                       context=rec.get("context"))
            r.vmnet = int(rec["vmnet"]) if rec.get("vmnet") is not None else None
            if self.dm.exists(name):
                try:
                    r.state = self.dm.status(name)
                except LabctlError as exc:
                    r.state = "Error"
                    r.notes.append(exc.message)
                if r.state == "Running":
                    r.machine_ip = self._quiet_ip(name)
            else:
                r.state = "absent"
                if name not in machines:
                    r.notes.append("no such machine (labctl up NAME creates it)")
            for x in rroutes.for_machine(records, name):
                r.routes.append(f"{x.destination} via {x.gateway} ({route_state(x, table, None)})")
            reports.append(r)
        return reports


def _cmd(dm: DockerMachine, *args: str) -> Any:
    from labctl.plan import Command

    return Command([str(dm.binary), *args])


def _restarts_networking(plan: Plan) -> bool:
    return any(c.argv[-1:] == ["--stop"] for change in plan.changes for c in change.commands())
