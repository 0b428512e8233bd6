"""The lab's planners: pure functions from the facts (:class:`~labctl.world.World`) and the
wanted lab to ordered **phases** of typed Changes.

``plan_up(world, spec)`` returns every phase ``up`` needs, in order, for each machine:

  vmnet (create the host-only vmnet) -> machine (docker-machine create) -> nic (ethernet1 in
  the .vmx, VM stopped; or ethernet0's MAC) -> reserve (the DHCP reservation, then one
  networking restart) -> boot (start or restart the VM, wait for the fixed IP) -> certs
  (regenerate them when the engine's address moved) -> routes -> persist -> context ->
  record

Each phase is planned against the facts as the phases before it will leave them (the
planner projects each change onto the World), so a dry run shows every step, with values
learnt later shown as ``<what they are>``.  A real run applies only the first phase that has
changes, then observes the world again and plans anew (:mod:`labctl.converge`): facts are
never trusted across a change.  ``plan_down(world, names, keep_vm)`` does the same for
teardown, undoing only what labctl's records say it made.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl import changes as ch
from labctl.errors import CommandFailed, Conflict, PreconditionMissing
from labctl.labspec import EngineNets, LabSpec, MachineSpec
from labctl.plan import Change, Plan, WriteFile
from labctl.routes.model import GATEWAY, LINK, Route
from labctl.world import Later, MachineView, Net, World, parse_dhcpd, parse_networking, parse_vmx


@dataclass
class Phase(Plan):
    """One step of the lab's convergence: changes applied together, then the world is
    observed again.  ``key`` names it (``reserve:lab``)."""

    key: str = ""


@dataclass
class Intent:
    """What the plan settles for one machine (the values later phases use)."""

    name: str
    nic: str
    nets: EngineNets | None = None
    vmnet: int | None = None
    mac: Any = None  # str | Later
    ip: str | None = None
    routes: list[str] = field(default_factory=list)
    context: str | None = None
    firewall: dict[str, str] | None = None  # labctl's DOCKER-USER rule in the VM
    pending: bool = False  # an earlier phase of this plan has changes (its facts may follow)


@dataclass
class LabPlan:
    phases: list[Phase]
    machines: dict[str, Intent]
    world: World  # the world as the plan leaves it

    def first(self) -> Phase | None:
        return next((p for p in self.phases if not p.empty), None)

    @property
    def changes(self) -> list[Change]:
        return [c for p in self.phases for c in p.changes]


def _record(world: World, name: str, values: dict[str, Any], what: str = "") -> tuple[list[Change], World]:
    """A Record change when labctl's record of ``name`` lacks any of ``values``."""
    machines = world.state.get("machines") or {}
    have = machines.get(name) if isinstance(machines, dict) else None
    have = have if isinstance(have, dict) else {}
    if all(have.get(k) == v for k, v in values.items()):
        return [], world

    def mutate(state: dict[str, Any]) -> None:
        state["machines"].setdefault(name, {}).update(values)

    step = ch.record(world.paths, what or f"record {name} in labctl's state", mutate)
    return [step], world.with_state(mutate)


# ---- engine networks --------------------------------------------------------------------------------
def allocate(world: World, spec: LabSpec) -> dict[str, EngineNets]:
    """Existing machines keep the bip/pool they were created with; new ones get blocks that
    overlap nothing on this desktop (host networks, VPN routes, other machines)."""
    from labctl.labspec import allocate_engines, engine_nets_from_flags

    avoid: list[Any] = [net for _, net in world.host_networks]
    own = {r.destination for r in world.route_records()}
    avoid += [r.destination for r in world.table if r.destination.prefixlen > 0 and r.destination not in own]
    existing: dict[str, EngineNets] = {}
    for name, flags in world.engines.items():
        try:
            nets = engine_nets_from_flags(flags)
        except ValueError:
            continue
        if nets is not None:
            existing[name] = nets
    pinned = []
    for m in spec.machines:
        if m.name in existing:
            m = replace(m, bip=existing[m.name].bip, pool=existing[m.name].pool)
        pinned.append(m)
    others = [n for name, e in existing.items() if name not in spec.names for n in e.networks]
    return allocate_engines(replace(spec, machines=tuple(pinned)), avoid=[*avoid, *others])


# ---- up: one function per phase ----------------------------------------------------------------------
Step = Callable[[World, MachineSpec, Intent, "UpOptions"], tuple[Phase, World]]


@dataclass(frozen=True)
class UpOptions:
    persist: bool = False


def free_subnet(world: World) -> ipaddress.IPv4Network:
    nf = world.networking_file()
    used = [v.network for v in nf.vmnets.values() if v.network] + [net for _, net in world.host_networks]
    for third in range(99, 255):
        cand = ipaddress.IPv4Network(f"192.168.{third}.0/24")
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise Conflict("no free 192.168.x.0/24 for a new vmnet", "pass --subnet")


def lab_vmnet(world: World, m: MachineSpec) -> int | None:
    """The vmnet of the dedicated NIC: the one asked for, else the machine's, else the lab's."""
    if m.vmnet is not None:
        return m.vmnet
    rec = world.record(m.name)
    if rec is not None and rec.nic == "dedicated" and rec.vmnet is not None:
        return int(rec.vmnet)
    default = world.state.get("default_vmnet")
    if isinstance(default, int) and default in world.lab_vmnets():
        return default
    return None


def phase_vmnet(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    hv = w.paths.hypervisor
    phase = Phase("vmnet", key=f"vmnet:{m.name}")
    if m.nic != "dedicated":
        return phase, w
    number = lab_vmnet(w, m)
    nf = w.networking_file()
    v = nf.get(number) if number is not None else None
    if v is not None and number is not None:
        if v.kind != "host-only" or not v.dhcp:
            raise Conflict(f"vmnet{number} is {v.kind}{'' if v.dhcp else ' without DHCP'}; the "
                           "dedicated NIC needs a host-only vmnet with DHCP",
                           "pick another with --vmnet, or --vmnet auto")
        it.vmnet = number
        return phase, w
    net = m.subnet or free_subnet(w)
    assert w.networking is not None
    plan, created = hv.network_create_plan(
        w.networking, w.host_networks, f"vmnet{number}" if number is not None else "auto", net,
        restart=False, dhcpd_exists=lambda n: n in w.dhcpd)
    it.vmnet = created
    phase = Phase(plan.title, plan.changes, plan.notes, key=f"vmnet:{m.name}")
    new_networking = next(c.new for c in plan.changes
                          if isinstance(c, WriteFile) and c.path == w.paths.hypervisor.networking)
    w = replace(w, networking=new_networking)
    if created not in w.dhcpd:  # Linux: labctl writes it; Fusion: vmnet-cli --configure does
        w = w.with_dhcpd(created, hv.render_dhcp_config(created, net))
    return phase, w.with_state(hv.record_network(created, net, pending=True))


def phase_machine(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    from labctl.machine import create_argv

    phase = Phase(f"create machine {m.name}", key=f"machine:{m.name}")
    mv = w.machine(m.name)
    if mv.exists:
        return phase, w
    nets = it.nets
    assert nets is not None
    opts = [*nets.engine_opts(), *m.engine_opts]
    settings, flags, extra = _create_settings(w, m, it, "boot2docker")
    argv = [w.dm_binary, *create_argv(m.name, m.driver, cpus=m.cpus, memory=m.memory, disk=m.disk,
                                      engine_opts=opts, extra=flags)]
    phase.add(ch.CreateMachine(m.name, m.driver, argv, m.cpus, m.memory, m.disk, opts,
                               description=f"create the docker-machine {m.name} ({m.driver}, engine "
                                           f"{nets.bip}, pool {nets.pool}{extra})", engine_flags=flags))
    values: dict[str, Any] = {"created_by_labctl": True, "driver": m.driver,
                              "engine": {"bip": str(nets.bip), "pool": str(nets.pool)}}
    if settings is not None:
        values["engine_settings"] = _owned_new(settings).as_dict()
    changes, w = _record(w, m.name, values)
    phase.changes += changes
    address = Later(f"{m.name}'s address on vmnet8")
    w = w.with_machine(
        m.name, exists=True, state="Running", driver=m.driver, ip=address, engine_flags=tuple(opts),
        machine_dir=f"{w.store}/machines/{m.name}",
        vmx_path=mv.vmx_path or f"{w.store}/machines/{m.name}/{m.name}.vmx",
        vmx=Later(f"the .vmx docker-machine create writes for {m.name}"), guest=(address,),
        cert_ips=(address,), networks=(Net("bridge", (nets.bip.network,)),), engine_error="",
        **_created_engine(settings, "boot2docker"))
    return phase, replace(w, engines={**w.engines, m.name: tuple(opts)})


# ---- the engine's proxies, mirrors, insecure registries (labctl.engineconf) -------------------------
def _owned_new(settings: Any) -> Any:
    """What labctl owns of the settings a machine it creates gets: all of them."""
    from labctl import engineconf as ec

    return ec.owned(ec.Settings(), settings)


def _created_engine(settings: Any, init: str) -> dict[str, Any]:
    """The projection of a new machine's engine settings (docker-machine writes them)."""
    from labctl import engineconf as ec

    s = settings if settings is not None else ec.Settings()
    return {"engine_conf": ec.projected(s, init),
            "config_json": ec.config_with(b'{"HostOptions": {"EngineOptions": {}}}', s)}


def _create_settings(w: World, m: MachineSpec, it: Intent, init: str) -> tuple[Any, list[str], str]:
    """(settings, docker-machine create flags, words for the description) of a new machine."""
    from labctl import engineconf as ec

    want = m.engine_settings
    if want.empty:
        return None, [], ""
    settings, appended = ec.target(ec.Settings(), want, _lab_entries(w, m, it, _planned_ip(w, m, it)))
    extra = f", {ec.describe(settings)}"
    if appended:
        extra += f" (labctl added {', '.join(appended)} to NO_PROXY: lab traffic bypasses the proxy)"
    return settings, ec.create_flags(settings), extra


def _planned_ip(w: World, m: MachineSpec, it: Intent) -> str | None:
    """The fixed IP phase_reserve will give the machine (for NO_PROXY before it is reserved)."""
    if it.ip is not None:
        return it.ip
    if m.ip is not None:
        return str(m.ip)
    rec = w.record(m.name)
    if rec is not None and rec.ip:
        return str(rec.ip)
    vmnet = it.vmnet if it.vmnet is not None else (8 if m.nic == "existing" else None)
    if vmnet is None or vmnet not in w.dhcpd or isinstance(w.dhcpd[vmnet], Later):
        return None
    try:
        conf = w.dhcpd_conf(vmnet)
        host = conf.host(m.name)
        if host is not None and host.managed and host.ip:
            return str(host.ip)
        if m.nic == "dedicated":
            return str(conf.plan_reserve(m.name, w.paths.hypervisor.nic_mac(m.name), None)[1])
        return str(conf.pick_free_ip())
    except Exception:  # noqa: BLE001 - phase_reserve says what is wrong with the file
        return None


def _lab_entries(w: World, m: MachineSpec, it: Intent, ip: str | None) -> list[str]:
    """What the engine's NO_PROXY must hold: the vmnet's subnet, the engine's bip and pool
    subnets, the fixed IP."""
    out: list[str] = []
    vmnet = it.vmnet if it.vmnet is not None else (8 if m.nic == "existing" else None)
    if ip is not None:
        out.append(str(_subnet(w, vmnet, ip)))
    elif m.subnet is not None:
        out.append(str(m.subnet))
    if it.nets is not None:
        out += [str(n) for n in it.nets.networks]
    if ip is not None:
        out.append(str(ip))
    return list(dict.fromkeys(out))


def phase_engine(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """The engine's environment (proxies: NO_PROXY with the lab's subnets), registry mirrors
    and insecure registries on an existing machine: a reconfiguration (docker-machine's record,
    the VM's file, one engine restart), never a re-create."""
    from labctl import engineconf as ec

    phase = Phase(f"engine settings of {m.name}", key=f"engine:{m.name}")
    want = m.engine_settings
    if want.empty:
        return phase, w
    mv = w.machine(m.name)
    rec = w.record(m.name)
    had = ec.Owned.from_record(rec.extra.get("engine_settings") if rec is not None else None)
    if mv.config_json is None or isinstance(mv.config_json, Later):
        raise CommandFailed(f"cannot read docker-machine's config.json of {m.name}",
                            f"docker-machine inspect {m.name} shows why; then labctl up again")
    current = ec.Settings.of_config(mv.config_json)
    start = ec.base(current, had)
    assert it.ip is not None
    settings, appended = ec.target(start, want, _lab_entries(w, m, it, it.ip))
    owns = ec.owned(start, settings)
    if appended and not current.same(settings):
        phase.notes.append(f"{m.name}'s engine uses a proxy: labctl adds {', '.join(appended)} to its "
                           "NO_PROXY and no_proxy, so lab traffic does not go to the proxy")
    done = Later(f"{m.name}'s engine, reconfigured")
    conf = mv.engine_conf
    if conf == done:  # a dry run past this phase
        return phase, w
    if conf is None and (it.pending or not mv.running):
        conf = Later(f"{m.name}'s engine settings")
    vm: list[Change] = []
    if isinstance(conf, Later):
        if not current.same(settings):
            vm.append(ch.VmEngineLater(f"set {ec.describe(settings)} for {m.name}'s engine in the VM and "
                                   "restart the engine"))
    else:
        if conf is None or not conf.complete:
            raise CommandFailed(f"{m.name} did not answer labctl's engine probe completely",
                                f"check docker-machine ssh {m.name} works, then run labctl up again")
        try:
            edit = ec.plan_vm(m.name, conf, settings, f"set {ec.describe(settings)}")
        except ec.Unsupported:
            raise Conflict(f"{m.name} is a systemd host: its registry mirrors and insecure registries "
                           "are flags docker-machine set when it provisioned the VM, and labctl does "
                           "not change them there",
                           f"labctl down {m.name} (the VM stays), then labctl up {m.name} with the new "
                           "flags: provisioning sets them") from None
        if edit is not None:
            vm.append(ch.VmEngineRestart(m.name, edit.command, w.dm_binary, edit.description,
                                         edit.vm_path, edit.vm_old, edit.vm_new))
    changes: list[Change] = []
    if had.union(owns) != had:  # recorded first: should a step fail, down knows all of it
        changes, w = _record(w, m.name, {"engine_settings": had.union(owns).as_dict()})
    new_json = ec.config_with(mv.config_json, settings)
    if new_json != mv.config_json:
        path = Path(mv.machine_dir or f"{w.store}/machines/{m.name}") / "config.json"
        changes.append(ch.FileEdit(path, mv.config_json, new_json, privileged=False,
                                   description=f"record {ec.describe(settings)} in docker-machine's "
                                               f"config.json of {m.name} (HostOptions.EngineOptions)"))
    changes += vm
    more, w = _record(w, m.name, {"engine_settings": owns.as_dict()})
    phase.changes = [*changes, *more] if (changes or more) else []
    after = done if isinstance(conf, Later) else ec.projected(settings, conf.init) if vm else conf
    return phase, w.with_machine(m.name, config_json=new_json, engine_conf=after)


def down_engine(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    """What labctl set of the engine's environment, mirrors and registries leaves a machine
    that stays (one labctl removes takes it along); what was there before comes back."""
    from labctl import engineconf as ec

    phase = Phase(f"restore {rec.name}'s engine settings", key=f"engine:{rec.name}")
    had = ec.Owned.from_record(rec.extra.get("engine_settings"))
    mv = w.machine(rec.name)
    removing = not keep_vm and rec.created and not rec.extra.get("adopted")
    if had.empty or not mv.exists or removing:
        return phase, w
    if not mv.running or mv.engine_conf is None or isinstance(mv.engine_conf, Later) \
            or not mv.engine_conf.complete or not isinstance(mv.config_json, bytes):
        what = "is stopped" if not mv.running else "did not answer"
        phase.notes.append(f"{rec.name} {what}, so the engine settings labctl set stay; start it and run "
                           f"labctl down {rec.name} again to remove them")
        return phase, w
    current = ec.Settings.of_config(mv.config_json)
    start = ec.base(current, had)
    new_json = ec.config_with(mv.config_json, start)
    if new_json != mv.config_json:
        what = f"restore the engine settings in docker-machine's config.json of {rec.name}"
        phase.add(ch.FileEdit(Path(mv.machine_dir) / "config.json", mv.config_json, new_json,
                              privileged=False, description=f"{what} ({ec.describe(start)})"))
    try:
        edit = ec.plan_vm(rec.name, mv.engine_conf, start, "remove labctl's engine settings")
    except ec.Unsupported:
        edit = None
        phase.notes.append(f"{rec.name}'s registry mirrors and insecure registries stay in docker-machine's "
                           "drop-in (set when it was provisioned)")
    if edit is not None:
        phase.add(ch.VmEngineRestart(rec.name, edit.command, w.dm_binary, edit.description, edit.vm_path,
                                     edit.vm_old, edit.vm_new))
    return phase, w


def _vmx(mv: MachineView) -> Any:
    if isinstance(mv.vmx, Later):
        return mv.vmx
    if mv.vmx is None:
        raise PreconditionMissing(mv.vmx_error or f"cannot read {mv.name}'s .vmx {mv.vmx_path}",
                                  "is it a VMware machine (driver vmwarefusion or vmware)?")
    return parse_vmx(mv.vmx)


def phase_nic(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    from pathlib import Path

    hv = w.paths.hypervisor
    mv = w.machine(m.name)
    phase = Phase(f"{m.nic} NIC for {m.name}", key=f"nic:{m.name}")
    vmx = _vmx(mv)
    if m.nic == "dedicated":
        assert it.vmnet is not None
        it.mac = hv.nic_mac(m.name)
        path = Path(mv.vmx_path)
        if isinstance(vmx, Later):
            new: Any = Later(f"{path.name} with ethernet1 on vmnet{it.vmnet}")
            if vmx == new:  # a dry run past this phase
                return phase, w
        else:
            new = hv.plan_nic(vmx, it.vmnet, it.mac)
            if new == mv.vmx:
                return phase, w
        if mv.running:
            phase.add(ch.StopVM(m.name, w.dm_binary, description=f"stop {m.name} so its .vmx can be edited"))
        phase.add(ch.EditVmx(path, mv.vmx, new,
                             description=f"add ethernet1 ({it.mac}) on vmnet{it.vmnet} to {path.name}"))
        w = w.with_machine(m.name, vmx=new, state="Stopped", guest=None)
        return phase, _vmx_user(w, mv.vmx_path, new)
    # --nic existing: ethernet0's generated MAC on the vmnet it is on
    if isinstance(vmx, Later):
        it.mac, it.vmnet = Later(f"{m.name}'s ethernet0 MAC"), 8
        return phase, w
    n0 = vmx.nic(0)
    if n0 is None or not n0.address:
        if mv.running:
            raise PreconditionMissing(f"{m.name}'s ethernet0 has no MAC yet (it gets one at first boot)",
                                      f"restart it once: docker-machine restart {m.name}")
        phase.add(ch.StartVM(m.name, w.dm_binary,
                             description=f"start {m.name} so its ethernet0 gets a MAC"))
        it.mac, it.vmnet = Later(f"{m.name}'s ethernet0 MAC"), 8
        booted = Later(f"{m.name}'s .vmx after its first boot")
        return phase, w.with_machine(m.name, state="Running", vmx=booted)
    it.mac, it.vmnet = n0.address, hv.reservation_network(n0, w.networking_file(), m.vmnet, m.name)
    return phase, w


def _vmx_user(w: World, path: str, data: Any) -> World:
    if path not in w.vmx_users or isinstance(data, Later):
        return w
    nets = {w.paths.hypervisor.nic_network(n) for n in parse_vmx(data).nics() if n.present}
    return replace(w, vmx_users={**w.vmx_users, path: tuple(sorted(n for n in nets if n is not None))})


def _restart(w: World, vmnets: set[int], title: str, key: str) -> tuple[list[Change], World]:
    """One networking restart for ``vmnets`` (their pending marks cleared), projected: the host
    adapter of each vmnet is up afterwards."""
    ordered = tuple(sorted(vmnets))
    changes: list[Change] = [ch.RestartNetworking(w.paths, ordered, w.paths.hypervisor.restart_commands())]
    pending = w.pending_restarts()
    if pending & vmnets:
        def clear(state: dict[str, Any]) -> None:
            state["restart_pending"] = [n for n in state.get("restart_pending") or [] if n not in vmnets]

        changes.append(ch.record(w.paths, f"record that {title} took effect", clear))
        w = w.with_state(clear)
    try:
        nf = w.networking_file()
    except Exception:
        return changes, w
    table = list(w.table)
    for n in ordered:
        v = nf.get(n)
        if v is None or v.network is None or not v.virtual_adapter:
            continue
        if not any(r.kind == LINK and r.destination == v.network for r in table):
            table.append(Route(v.network, None, w.adapters.get(n) or f"vmnet{n}", LINK))
    return changes, replace(w, table=tuple(table))


def phase_reserve(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    from labctl.text import encode

    hv = w.paths.hypervisor
    assert it.vmnet is not None
    vmnet = it.vmnet
    conf = w.dhcpd_conf(vmnet)
    path = w.paths.hypervisor.dhcpd_conf(vmnet)
    want = str(m.ip) if m.ip is not None else None
    changed = False
    rec = w.record(m.name)
    if isinstance(it.mac, Later) and rec is not None and rec.mac == str(it.mac).lower() and rec.ip:
        it.ip = rec.ip  # a dry run past this phase
        return Phase(f"reserve {rec.ip} for {m.name} on vmnet{vmnet}", key=f"reserve:{m.name}"), w
    if isinstance(it.mac, Later):
        host = conf.host(m.name)
        ip = want or (host.ip if host is not None and host.managed and host.ip else str(conf.pick_free_ip()))
        phase = Phase(f"reserve {ip} for {m.name} on vmnet{vmnet}", key=f"reserve:{m.name}")
        phase.add(ch.Reserve(path, w.dhcpd[vmnet], Later(f"dhcpd.conf with {m.name}'s block"),
                             description=f"add host {m.name} ({ip}, {it.mac}) to {path}"))
        changed = True
    else:
        new_text, ip = conf.plan_reserve(m.name, it.mac, want)
        phase = Phase(f"reserve {ip} for {m.name} on vmnet{vmnet}", key=f"reserve:{m.name}")
        if new_text != conf.text:
            hv.refuse_mac_elsewhere(w.dhcpd, vmnet, it.mac)
            new = encode(new_text)
            phase.add(ch.Reserve(path, w.dhcpd[vmnet], new,
                                 description=f"add host {m.name} ({ip}, {it.mac}) to {path}",
                                 validate=functools.partial(hv.validate_reservation_edit, conf)))
            w = w.with_dhcpd(vmnet, new)
            changed = True
    it.ip = ip
    if changed or vmnet in w.pending_restarts():
        changes, w = _restart(w, {vmnet}, f"the restart for vmnet{vmnet}", phase.key)
        phase.changes += changes
    # recorded at once: should a later step fail, `down` finds the reservation to undo
    changes, w = _record(w, m.name, {"vmnet": vmnet, "mac": str(it.mac), "ip": ip, "nic": m.nic})
    phase.changes += changes
    return phase, w


def phase_boot(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """The VM runs and holds its fixed IP: start it, or restart it so DHCP hands out the
    reservation (and wait for the address)."""
    mv = w.machine(m.name)
    phase = Phase(f"{m.name} on {it.ip}", key=f"boot:{m.name}")
    assert it.ip is not None
    if mv.running and mv.guest is not None and it.ip in mv.guest:
        return phase, w
    phase.add(ch.StartVM(m.name, w.dm_binary, wait_ip=it.ip, restart=mv.running))
    dm_ip = it.ip if m.nic == "existing" else mv.ip
    guest = tuple(dict.fromkeys(a for a in (dm_ip, it.ip) if a is not None))
    networks = mv.networks if mv.networks is not None else Later(f"{m.name}'s engine networks")
    return phase, w.with_machine(m.name, state="Running", guest=guest, ip=dm_ip, networks=networks,
                                 engine_error="", vm=_booted(mv.vm, m.name, it.ip))


def _booted(vm: Any, name: str, ip: str) -> Any:
    """The VM's firewall after a (re)boot onto ``ip``: the NIC on that /24 holds it, and only
    the rules its boot files put back are there (unknown before: a Later)."""
    if vm is None or isinstance(vm, Later):
        return Later(f"{name}'s firewall")
    import copy

    net = ipaddress.IPv4Network(f"{ip}/24", strict=False)
    new = copy.deepcopy(vm)
    moved = False
    for iface, addrs in new.addresses.items():
        if any(a.ip in net for a in addrs):
            new.addresses[iface] = [ipaddress.IPv4Interface(f"{ip}/{net.prefixlen}")]
            moved = True
    if not moved:
        return Later(f"{name}'s firewall")
    if not new.persisted(name):
        new.user_rules = []
    return new


def phase_certs(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """docker-machine's TLS certificates name the engine's address: when that moved (the
    existing NIC's new fixed IP), they are made again."""
    mv = w.machine(m.name)
    phase = Phase(f"TLS certificates of {m.name}", key=f"certs:{m.name}")
    if not mv.running or mv.ip is None or mv.cert_ips is None or mv.ip in mv.cert_ips:
        return phase, w
    phase.add(ch.RegenerateCerts(m.name, w.dm_binary, mv.ip))
    return phase, w.with_machine(m.name, cert_ips=(mv.ip,))


def phase_routes(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    from labctl.routes.analysis import Wanted
    from labctl.routes.model import parse_gateway
    from labctl.routes.planner import plan_sync

    mv = w.machine(m.name)
    assert it.ip is not None
    gateway = parse_gateway(it.ip)
    routed = Later(f"{m.name}'s engine networks, routed")
    if mv.networks == routed:  # a dry run past this phase
        return Phase(f"routes to {m.name}'s containers", key=f"routes:{m.name}"), w
    if mv.networks is None and it.pending:  # e.g. certificates regenerated first
        mv = replace(mv, networks=Later(f"{m.name}'s engine networks"))
    if isinstance(mv.networks, Later):
        phase = Phase(f"routes to {m.name}'s containers", key=f"routes:{m.name}")
        phase.add(ch.RouteBatchLater(f"add routes via {gateway} to every network of {m.name}'s engine "
                                 "(read once the engine runs)"))
        it.routes = [f"every network of {m.name}'s engine via {gateway}"]
        return phase, w.with_machine(m.name, networks=routed)
    if mv.networks is None:
        raise CommandFailed(f"cannot read {m.name}'s Docker networks: {mv.engine_error or 'no answer'}",
                            f"labctl doctor {m.name}; then labctl up {m.name} again (it resumes)")
    wanted = [Wanted(s, gateway, n.name) for n in mv.networks for s in n.subnets]
    it.routes = [f"{x.destination} via {x.gateway}" for x in wanted]
    records = w.route_records(m.name)
    plan = plan_sync(w.paths, wanted, list(w.table), records, m.name)
    phase = Phase(plan.title, plan.changes, key=f"routes:{m.name}",
                  warnings=[*mv.engine_warnings, *plan.warnings])
    keep = {x.destination for x in wanted}
    return phase, project_routes(w, plan, [r for r in records if r.destination not in keep])


def project_routes(w: World, plan: Plan, candidates: list[Any]) -> World:
    """The routing table and labctl's route records once ``plan`` ran: its batch took effect,
    and the records of ``candidates`` (stale or removed routes) the batch does not touch are
    forgotten."""
    from labctl.routes import records as rec
    from labctl.routes.planner import RouteBatch

    ops = [op for c in plan.changes if isinstance(c, RouteBatch) for op in c.ops]
    machine = next((c.machine for c in plan.changes if isinstance(c, RouteBatch)), "")
    touched = {op.destination for op in ops}
    table = list(w.table)
    for op in ops:
        table = [r for r in table if not (r.kind == GATEWAY and r.destination == op.destination)]
        if op.action != "delete":
            table.append(Route(op.destination, op.gateway, None, GATEWAY))
    forget = [r.destination for r in candidates if r.destination not in touched]

    def mutate(state: dict[str, Any]) -> None:
        for op in ops:
            if op.action == "delete":
                rec.drop(state, op.destination)
            else:
                rec.put(state, rec.Record(op.destination, op.gateway, machine, op.network, "-"))
        for dest in forget:
            rec.drop(state, dest)

    w = replace(w, table=tuple(table))
    return w.with_state(mutate) if ops or forget else w


def phase_persist(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    from labctl.routes.persist import plan_persist, unit_path

    phase = Phase(f"keep {m.name}'s routes across reboots", key=f"persist:{m.name}")
    if not opt.persist:
        return phase, w
    assert it.ip is not None and it.vmnet is not None
    path = unit_path(w.paths, m.name)
    iface = w.adapters.get(it.vmnet, f"vmnet{it.vmnet}")
    plan = plan_persist(w.paths, m.name, it.ip, iface, old=w.units.get(str(path)))
    phase = Phase(plan.title, plan.changes, key=phase.key)
    if plan.empty:
        return phase, w
    new = next(c.new for c in plan.changes if isinstance(c, WriteFile) and c.path == path)

    def record(state: dict[str, Any]) -> None:
        state.setdefault("units", {})[f"routes:{m.name}"] = str(path)

    return phase, replace(w, units={**w.units, str(path): new}).with_state(record)


def phase_context(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """A docker context named after the machine, pointing at its engine with its TLS files;
    one that labctl did not make is left alone."""
    mv = w.machine(m.name)
    phase = Phase(f"docker context {m.name}", key=f"context:{m.name}")
    if not w.docker_cli:
        phase.notes.append("the docker CLI is not installed, so no docker context was made")
        return phase, w
    rec = w.record(m.name)
    ours = rec is not None and rec.context == m.name
    host: Any = Later(f"{m.name}'s engine URL") if isinstance(mv.ip, Later) or mv.ip is None \
        else f"tcp://{mv.ip}:2376"
    if mv.context is not None and not ours:
        phase.warnings.append(f"a docker context named {m.name} exists and labctl did not make it: left "
                              f"alone (use docker --context {m.name} only if it points at {host})")
        return phase, w
    it.context = m.name
    if mv.context is not None and mv.context == host:
        return phase, w
    d = mv.machine_dir or f"{w.store}/machines/{m.name}"
    phase.add(ch.DockerContext(m.name, "create" if mv.context is None else "update", host,
                               f"{d}/ca.pem", f"{d}/cert.pem", f"{d}/key.pem"))
    changes, w = _record(w, m.name, {"context": m.name})
    phase.changes += changes
    return phase, w.with_machine(m.name, context=host)


def phase_record(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    mv = w.machine(m.name)
    phase = Phase(f"record {m.name}", key=f"record:{m.name}")
    values: dict[str, Any] = {"vmnet": it.vmnet, "mac": str(it.mac), "ip": it.ip, "nic": m.nic}
    values.update({"vmx": mv.adopt_vmx or mv.vmx_path, "driver": m.driver})
    if it.nets is not None:
        values["engine"] = {"bip": str(it.nets.bip), "pool": str(it.nets.pool)}
    phase.changes, w = _record(w, m.name, values)
    return phase, w


# ---- the VM's firewall (labctl.vmpath) ---------------------------------------------------------------
def _subnet(w: World, vmnet: int | None, ip: str) -> ipaddress.IPv4Network:
    try:
        v = w.networking_file().get(vmnet) if vmnet is not None else None
    except Exception:
        v = None
    if v is not None and v.network is not None:
        return v.network
    return ipaddress.IPv4Network(f"{ip}/24", strict=False)


def phase_vmpath(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """Routed traffic from the vmnet reaches the containers: labctl's DOCKER-USER rule on the
    NIC that holds the fixed IP, now and at every boot (labctl.vmpath says why)."""
    from labctl import vmpath

    mv = w.machine(m.name)
    assert it.ip is not None
    phase = Phase(f"open the route into {m.name}'s containers", key=f"vmpath:{m.name}")
    subnet = _subnet(w, it.vmnet, it.ip)
    vm = mv.vm
    opened = Later(f"{m.name}'s firewall, with labctl's rule")
    if vm == opened:  # a dry run past this phase
        return phase, w
    if vm is None and it.pending:
        vm = Later(f"{m.name}'s firewall")
    if isinstance(vm, Later):
        nic = Later(f"the NIC that holds {it.ip}")
        boot = Later(f"{m.name}'s boot files")
        phase.add(ch.VmPathLater(f"accept traffic from {subnet} on {m.name}'s {nic} in {vmpath.CHAIN} "
                                 f"(now, and at boot via {boot})"))
        it.firewall = {"iface": str(nic), "subnet": str(subnet), "init": str(boot)}
        changes, w = _record(w, m.name, {"firewall": it.firewall})
        phase.changes += changes
        return phase, w.with_machine(m.name, vm=opened)
    if vm is None:
        raise CommandFailed(f"cannot read {m.name}'s firewall (docker-machine ssh {m.name} did not "
                            "answer)", f"labctl doctor {m.name}; then labctl up {m.name} again (it resumes)")
    plan, rule = vmpath.plan_open(m.name, vm, it.ip, subnet, lambda command: None, w.dm_binary)
    phase.notes = plan.notes
    if rule is None:
        return phase, w
    phase.changes = [ch.VmPath.of(m.name, c, w.dm_binary) for c in plan.changes]
    it.firewall = {"iface": rule.iface, "subnet": str(rule.source), "init": vm.init}
    if phase.changes:
        import copy

        done = copy.deepcopy(vm)
        if not done.has_rule(rule):
            done.user_rules.append({"-i": rule.iface, "-s": str(rule.source), "-j": "ACCEPT"})
        new = phase.changes[0].vm_new  # type: ignore[attr-defined]
        if new is not None and phase.changes[0].vm_path == vmpath.BOOTSYNC:  # type: ignore[attr-defined]
            done.bootsync = new
        elif new is not None:
            done.dropin = new
        w = w.with_machine(m.name, vm=done)
    changes, w = _record(w, m.name, {"firewall": it.firewall})
    phase.changes += changes
    return phase, w


# ---- a VM labctl adopts (labctl.adopt) -----------------------------------------------------------------
def phase_adopt_record(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """First of all, labctl's record: should a later step fail, ``down`` knows this is a VM it
    adopted (never to be removed) and how it was powered before."""
    from labctl.adopt import GENERIC

    mv = w.machine(m.name)
    phase = Phase(f"adopt {Path(mv.adopt_vmx).name} as {m.name}", key=f"adopt:{m.name}")
    login = mv.login
    power = mv.power_before or ("running" if mv.vm_running else "stopped")
    values = {"adopted": True, "vmx": mv.adopt_vmx, "driver": GENERIC, "power_before": power,
              "nic": m.nic, "ssh_user": login.user, "ssh_key": str(login.key)}
    phase.changes, w = _record(w, m.name, values)
    return phase, w


def phase_adopt_nic(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """dedicated: labctl's ethernet1 in the user's .vmx, written while the VM is shut down;
    existing: ethernet0's MAC on the vmnet it is really on."""
    hv = w.paths.hypervisor

    mv = w.machine(m.name)
    path = Path(mv.adopt_vmx)
    phase = Phase(f"{m.nic} NIC for {m.name}", key=f"nic:{m.name}")
    vmx = _vmx(mv)
    if m.nic == "existing":
        n0 = vmx.nic(0)
        if n0 is None or not n0.address:
            raise PreconditionMissing(
                f"{m.name}'s ethernet0 has no MAC yet (VMware writes one at first boot)",
                "start the VM once in VMware, then run labctl up again")
        it.mac, it.vmnet = n0.address, hv.reservation_network(n0, w.networking_file(), m.vmnet, m.name)
        return phase, w
    assert it.vmnet is not None
    it.mac = hv.nic_mac(m.name)
    new = hv.plan_nic(vmx, it.vmnet, it.mac)
    if new == mv.vmx:
        return phase, w
    if mv.vm_running:
        phase.add(ch.VmrunStop(w.paths, path, description=f"shut {path.name} down so its .vmx can be "
                                                          "edited (vmrun stop soft)"))
    phase.add(ch.EditVmx(path, mv.vmx, new,
                         description=f"add ethernet1 ({it.mac}) on vmnet{it.vmnet} to {path}"))
    return phase, w.with_machine(m.name, vmx=new, vm_running=False, ssh_ok=False)


def phase_adopt_boot(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """The VM runs and answers SSH on its fixed IP: started, or restarted when it holds
    another address."""
    mv = w.machine(m.name)
    path = Path(mv.adopt_vmx)
    assert it.ip is not None
    phase = Phase(f"{path.name} on {it.ip}", key=f"boot:{m.name}")
    rec = w.record(m.name)
    if mv.vm_running and mv.ssh_ok and rec is not None and rec.ip == it.ip:
        return phase, w
    verb = "restart" if mv.vm_running else "start"
    phase.add(ch.VmrunStart(w.paths, path, m.name, wait_ip=it.ip, login=mv.login,
                            restart=bool(mv.vm_running),
                            description=f"{verb} {path.name} and wait until SSH answers on {it.ip}"))
    vm = Later(f"{m.name}'s firewall") if w.machine(m.name).exists else w.machine(m.name).vm
    return phase, w.with_machine(m.name, vm_running=True, ssh_ok=True, vm=vm)


def phase_adopt_machine(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """docker-machine's record of the host, provisioned by the generic driver for the fixed
    IP (its TLS certificate names that address)."""
    from labctl import adopt

    mv = w.machine(m.name)
    path = Path(mv.adopt_vmx)
    phase = Phase(f"provision {m.name}", key=f"machine:{m.name}")
    assert it.ip is not None and it.nets is not None
    if mv.exists:
        if mv.driver != adopt.GENERIC or (not isinstance(mv.ip, Later) and mv.ip != it.ip):
            raise Conflict(f"a docker-machine named {m.name} already exists ({mv.driver}, "
                           f"{mv.ip or 'no address'}), not the adopted VM at {it.ip}",
                           f"use another name, or remove it: docker-machine rm -y {m.name}")
        return phase, w
    nets = it.nets
    opts = [*nets.engine_opts(), *m.engine_opts]
    settings, flags, extra = _create_settings(w, m, it, "systemd")
    argv = adopt.create_argv(m.name, it.ip, mv.login, opts, engine_flags=flags)
    phase.add(ch.GenericCreate(m.name, argv, w.dm_binary,
                               description=f"provision {path.name} as the docker-machine {m.name} (generic "
                                           f"driver, {it.ip}, engine {nets.bip}, pool {nets.pool}{extra})"))
    values: dict[str, Any] = {"engine": {"bip": str(nets.bip), "pool": str(nets.pool)}}
    if settings is not None:
        values["engine_settings"] = _owned_new(settings).as_dict()
    changes, w = _record(w, m.name, values)
    phase.changes += changes
    w = w.with_machine(m.name, exists=True, state="Running", driver=adopt.GENERIC, ip=it.ip,
                       engine_flags=tuple(opts), machine_dir=f"{w.store}/machines/{m.name}",
                       guest=(it.ip,), cert_ips=(it.ip,), networks=(Net("bridge", (nets.bip.network,)),),
                       vm=Later(f"{m.name}'s firewall"), engine_error="",
                       **_created_engine(settings, "systemd"))
    return phase, replace(w, engines={**w.engines, m.name: tuple(opts)})


# ---- CA certificates the engine must trust (labctl.vmcerts) --------------------------------------------
def _vm_changes(name: str, plan: Plan, binary: str) -> list[Change]:
    """labctl.vmcerts's planned changes as typed ones: the last one of a non-empty plan
    refreshes the CA store and restarts the engine."""
    out: list[Change] = [ch.VmPath.of(name, c, binary) for c in plan.changes]
    if out:
        last = plan.changes[-1]
        out[-1] = ch.VmEngineRestart(name, last.command, binary, last.description,  # type: ignore[attr-defined]
                                     last.vm_path, last.vm_old, last.vm_new)  # type: ignore[attr-defined]
    return out


def phase_ca(w: World, m: MachineSpec, it: Intent, opt: UpOptions) -> tuple[Phase, World]:
    """The CA certificates the engine must trust (--ca-cert), in the VM's system store the way
    its host loads them at boot; the engine restarted once when one was added."""
    import copy

    from labctl import vmcerts

    phase = Phase(f"trust {len(m.ca_certs)} CA certificate(s) in {m.name}'s engine", key=f"ca:{m.name}")
    if not m.ca_certs:
        return phase, w
    mv = w.machine(m.name)
    done = Later(f"{m.name}'s CA store, with labctl's CAs")
    if mv.certs == done:  # a dry run past this phase
        return phase, w
    certs = mv.certs
    if certs is None and it.pending:
        certs = Later(f"{m.name}'s CA store")
    if isinstance(certs, Later):
        phase.add(ch.VmCaLater(f"install {len(m.ca_certs)} CA certificate(s) in {m.name}'s system store "
                               "and restart its engine"))
        w = w.with_machine(m.name, certs=done)
    else:
        if certs is None or not certs.complete:
            raise CommandFailed(f"{m.name} did not answer labctl's CA probe completely",
                                f"check docker-machine ssh {m.name} works, then run labctl up again")
        plan = vmcerts.plan_install(m.name, certs, list(m.ca_certs), lambda command: None, w.dm_binary)
        phase.changes = _vm_changes(m.name, plan, w.dm_binary)
        if phase.changes:
            after = copy.deepcopy(certs)
            for cert in m.ca_certs:
                after.files[certs.path_for(cert)] = cert.pem
            w = w.with_machine(m.name, certs=after)
    rec = w.record(m.name)
    have = rec.extra.get("ca_certs") if rec is not None else None
    wanted = sorted(set(have if isinstance(have, list) else []) | {c.sha256 for c in m.ca_certs})
    changes, w = _record(w, m.name, {"ca_certs": wanted})
    phase.changes += changes
    return phase, w


def down_ca(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    """labctl's CA files leave a VM that stays (one labctl removes takes them along)."""
    from labctl import vmcerts

    phase = Phase(f"remove labctl's CA certificates from {rec.name}", key=f"ca:{rec.name}")
    mv = w.machine(rec.name)
    removing = not keep_vm and rec.created and not rec.extra.get("adopted")
    if not rec.extra.get("ca_certs") or not mv.exists or removing:
        return phase, w
    if not mv.running or mv.certs is None or isinstance(mv.certs, Later):
        what = "is stopped" if not mv.running else "did not answer"
        phase.notes.append(f"{rec.name} {what}, so labctl's CA certificates stay in it; start it and "
                           f"run labctl down {rec.name} again to remove them")
        return phase, w
    phase.changes = _vm_changes(rec.name, vmcerts.plan_remove(rec.name, mv.certs, lambda command: None,
                                                              w.dm_binary), w.dm_binary)
    return phase, w


UP_PHASES: tuple[Step, ...] = (phase_vmnet, phase_machine, phase_nic, phase_reserve, phase_boot, phase_certs,
                               phase_engine, phase_vmpath, phase_ca, phase_routes, phase_persist,
                               phase_context, phase_record)
ADOPT_PHASES: tuple[Step, ...] = (phase_vmnet, phase_adopt_record, phase_adopt_nic, phase_reserve,
                                  phase_adopt_boot, phase_adopt_machine, phase_engine, phase_vmpath,
                                  phase_ca, phase_routes, phase_persist, phase_context, phase_record)


#: phases planned from facts that need no VM or engine to answer: a real run may plan them
#: from a shallow look (labctl.world.observe(deep=False)) and saves the probes of the VM
SHALLOW = ("vmnet", "machine", "nic", "reserve", "adopt")


def plan_up(world: World, spec: LabSpec, options: UpOptions | None = None) -> LabPlan:
    """Every phase of ``up`` for every machine of ``spec``, in order (pure)."""
    options = options or UpOptions()
    nets = allocate(world, spec)
    phases: list[Phase] = []
    intents: dict[str, Intent] = {}
    w = world
    for m in spec.machines:
        it = intents[m.name] = Intent(m.name, m.nic, nets[m.name])
        for step in ADOPT_PHASES if m.adopting else UP_PHASES:
            it.pending = any(not p.empty for p in phases)
            phase, w = step(w, m, it, options)
            phases.append(phase)
    return LabPlan(phases, intents, w)


# ---- down ---------------------------------------------------------------------------------------------
def plan_down(world: World, names: list[str], keep_vm: bool = False) -> LabPlan:
    """Undo what labctl's records say ``up`` made for ``names``, then remove the vmnets labctl
    created that nothing uses any more, with one networking restart (pure)."""
    phases: list[Phase] = []
    w = world
    for name in names:
        rec = w.record(name)
        if rec is None:
            continue
        for step in (down_routes, down_persist, down_context, down_release, down_vmpath, down_ca,
                     down_engine, down_adopted, down_nic, down_machine, down_forget):
            phase, w = step(w, rec, keep_vm)
            phases.append(phase)
    for n in sorted(w.lab_vmnets()):
        phase, w = down_vmnet(w, n)
        phases.append(phase)
    pending = {n for n in w.pending_restarts() if _vmnet_exists(w, n)}
    phase = Phase(f"restart {w.paths.hypervisor.product} networking", key="restart")
    if pending:
        phase.changes, w = _restart(w, pending, "the restart", "restart")
    phases.append(phase)
    return LabPlan(phases, {}, w)


def _vmnet_exists(w: World, n: int) -> bool:
    try:
        return w.networking_file().get(n) is not None
    except Exception:
        return False


def down_routes(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    from labctl.routes.planner import plan_remove

    mine = w.route_records(rec.name)
    phase = Phase(f"remove {rec.name}'s routes", key=f"routes:{rec.name}")
    if not mine:
        return phase, w
    plan = plan_remove(w.paths, mine, list(w.table), title=phase.title)
    phase.changes, phase.notes, phase.noops = plan.changes, plan.notes, plan.noops
    return phase, project_routes(w, plan, mine)


def down_persist(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    from labctl.routes.persist import plan_unpersist, unit_path

    phase = Phase(f"stop keeping {rec.name}'s routes across reboots", key=f"persist:{rec.name}")
    if f"routes:{rec.name}" not in (w.state.get("units") or {}):
        return phase, w
    path = unit_path(w.paths, rec.name)
    plan = plan_unpersist(w.paths, rec.name, old=w.units.get(str(path)))
    phase.changes = plan.changes

    def forget(state: dict[str, Any]) -> None:
        state.setdefault("units", {}).pop(f"routes:{rec.name}", None)

    return phase, replace(w, units={**w.units, str(path): None}).with_state(forget)


def down_context(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    """Only the context labctl made (its record says so) goes."""
    phase = Phase(f"remove docker context {rec.name}", key=f"context:{rec.name}")
    if not rec.context:
        return phase, w
    mv = w.machine(rec.name)
    if mv.context is not None:
        phase.add(ch.RemoveContext(rec.context))
    return phase, w.with_machine(rec.name, context=None)


def down_release(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    from labctl.text import encode

    phase = Phase(f"release {rec.name} on vmnet{rec.vmnet}", key=f"release:{rec.name}")
    if rec.vmnet is None:
        return phase, w
    vmnet = int(rec.vmnet)
    try:
        conf = w.dhcpd_conf(vmnet)
        new_text = conf.plan_release(rec.name)
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        phase.notes.append(f"reservation for {rec.name} not released: {message}")
        return phase, w
    if new_text == conf.text:
        return phase, w
    path = w.paths.hypervisor.dhcpd_conf(vmnet)
    new = encode(new_text)
    phase.add(ch.Release(path, w.dhcpd[vmnet], new, description=f"remove host {rec.name} from {path}",
                         validate=functools.partial(w.paths.hypervisor.validate_reservation_edit, conf)))

    def pending(state: dict[str, Any]) -> None:
        due = [n for n in state.get("restart_pending") or [] if n != vmnet]
        state["restart_pending"] = [*due, vmnet]

    phase.add(ch.record(w.paths, f"record that vmnet{vmnet} awaits a networking restart", pending))
    return phase, w.with_dhcpd(vmnet, new).with_state(pending)


def down_nic(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    """A VM that stays (``--keep-vm``, or one labctl did not create) loses the NIC labctl
    added; it is stopped for the edit and started again if it ran."""
    from pathlib import Path

    mv = w.machine(rec.name)
    phase = Phase(f"remove {rec.name}'s dedicated NIC", key=f"nic:{rec.name}")
    stays = keep_vm or not rec.created
    if rec.extra.get("adopted") or not (stays and mv.exists and rec.nic == "dedicated" and rec.mac):
        return phase, w
    vmx = _vmx(mv)
    new = w.paths.hypervisor.plan_nic_removal(vmx, str(rec.mac))
    if new == mv.vmx:
        return phase, w
    path = Path(mv.vmx_path)
    if mv.running:
        phase.add(ch.StopVM(rec.name, w.dm_binary, description=f"stop {rec.name} so its .vmx can be edited"))
    phase.add(ch.EditVmx(path, mv.vmx, new, description=f"remove ethernet1 from {path.name}"))
    if mv.running:
        phase.add(ch.StartVM(rec.name, w.dm_binary, description=f"start {rec.name} again"))
    return phase, _vmx_user(w.with_machine(rec.name, vmx=new), mv.vmx_path, new)


def down_vmpath(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    """labctl's DOCKER-USER rule and its boot-time copy, from a VM that stays (one labctl
    removes takes them along)."""
    from labctl import vmpath

    phase = Phase(f"close the route into {rec.name}'s containers", key=f"vmpath:{rec.name}")
    rule = vmpath.rule_from_record(rec.extra)
    mv = w.machine(rec.name)
    removing = not keep_vm and rec.created and not rec.extra.get("adopted")
    if rule is None or not mv.exists or removing:
        return phase, w
    if not mv.running:
        phase.notes.append(f"{rec.name} is stopped, so labctl's firewall rule stays in its boot files; "
                           f"start it and run labctl down {rec.name} again to remove it")
        return phase, w
    if mv.vm is None or isinstance(mv.vm, Later):
        phase.notes.append(f"{rec.name}'s firewall rule was not removed (the VM did not answer); it goes "
                           f"with the VM, or run labctl down {rec.name} again")
        return phase, w
    plan = vmpath.plan_close(rec.name, mv.vm, rule, lambda command: None, w.dm_binary)
    phase.changes = [ch.VmPath.of(rec.name, c, w.dm_binary) for c in plan.changes]
    return phase, w


def down_adopted(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    """A VM labctl adopted: docker-machine's record goes (the generic driver's ``rm`` never
    touches the VM), labctl's NIC leaves the .vmx, and the VM is powered as before ``up``.
    The VM itself stays."""
    mv = w.machine(rec.name)
    path = Path(mv.adopt_vmx or rec.vmx or "")
    phase = Phase(f"give {path.name} back as it was", key=f"adopted:{rec.name}")
    if not rec.extra.get("adopted"):
        return phase, w
    if mv.exists:
        what = f"remove docker-machine's record of {rec.name} (generic driver: the VM stays)"
        phase.add(ch.RemoveMachine(rec.name, w.dm_binary, description=what))
        w = w.with_machine(rec.name, exists=False)
    if not isinstance(mv.vmx, bytes):
        phase.notes.append(f"{rec.name}'s .vmx {path} is gone; nothing to undo in it")
        return phase, w
    keep_on = rec.extra.get("power_before") == "running"
    new = mv.vmx
    if rec.nic == "dedicated" and rec.mac:
        new = w.paths.hypervisor.plan_nic_removal(parse_vmx(mv.vmx), str(rec.mac))
    running = bool(mv.vm_running)
    if new != mv.vmx:
        if running:
            phase.add(ch.VmrunStop(w.paths, path, description=f"shut {path.name} down so its .vmx can be "
                                                              "edited (vmrun stop soft)"))
        phase.add(ch.EditVmx(path, mv.vmx, new, description=f"remove ethernet1 (labctl's) from {path}"))
        if running and keep_on:
            phase.add(ch.VmrunStart(w.paths, path, rec.name,
                                    description=f"start {path.name} again (it was running before labctl up)"))
    elif running and not keep_on:
        phase.add(ch.VmrunStop(w.paths, path, description=f"shut {path.name} down (it was off before "
                                                          "labctl up)"))
    w = _vmx_user(w, str(path), new)
    return phase, w.with_machine(rec.name, vmx=new, vm_running=running and keep_on)


def down_machine(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    """Only a machine labctl created goes (and not with ``--keep-vm``)."""
    mv = w.machine(rec.name)
    phase = Phase(f"remove machine {rec.name}", key=f"machine:{rec.name}")
    if keep_vm or not rec.created or not mv.exists:
        return phase, w
    phase.add(ch.RemoveMachine(rec.name, w.dm_binary))
    users = {k: v for k, v in w.vmx_users.items() if k != mv.vmx_path}
    return phase, replace(w.without_machine(rec.name), vmx_users=users,
                          engines={k: v for k, v in w.engines.items() if k != rec.name})


def down_forget(w: World, rec: Any, keep_vm: bool) -> tuple[Phase, World]:
    phase = Phase(f"forget {rec.name}", key=f"forget:{rec.name}")

    def forget(state: dict[str, Any]) -> None:
        state["machines"].pop(rec.name, None)

    phase.add(ch.record(w.paths, f"forget {rec.name} in labctl's state", forget))
    return phase, w.with_state(forget)


def vmnet_users(w: World, n: int) -> list[str]:
    """What keeps vmnet ``n``: labctl's machines on it and every .vmx found with a NIC on it."""
    users = [f"lab machine {r.name}" for r in w.records() if r.vmnet == n]
    users += [path for path, nets in sorted(w.vmx_users.items()) if n in nets]
    return users


def down_vmnet(w: World, n: int) -> tuple[Phase, World]:
    """A vmnet goes only if labctl created it, no lab machine and no .vmx labctl can find uses
    it, and its dhcpd.conf holds no reservation but VMware's own."""
    hv = w.paths.hypervisor
    phase = Phase(f"remove vmnet{n}", key=f"vmnet:{n}")
    info = w.lab_vmnets().get(n) or {}
    if not info.get("created"):
        return phase, w
    users = vmnet_users(w, n)
    if users:
        if not any(u.startswith("lab machine ") for u in users):
            phase.notes.append(f"vmnet{n} is still used by {', '.join(users)}; labctl keeps it")
        return phase, w
    if n in w.dhcpd:
        conf = parse_dhcpd(w.dhcpd[n])
        if any(not h.protected for h in conf.hosts):
            phase.notes.append(f"vmnet{n} still has other reservations; labctl keeps it")
            return phase, w
    from labctl.plan import DeleteFile, Run

    if w.networking is not None and parse_networking(w.networking).get(n) is not None:
        new = hv.network_removal(w.networking, n)
        phase.add(WriteFile(hv.networking, w.networking, new,
                            description=f"remove vmnet{n} (created by labctl) from {hv.networking}"))
        w = replace(w, networking=new)
    if w.paths.platform == "linux" and n in w.dhcpd:
        phase.add(DeleteFile(w.paths.hypervisor.dhcpd_conf(n), w.dhcpd[n],
                             description=f"remove vmnet{n}'s dhcpd.conf (written by labctl)"))
        w = w.with_dhcpd(n, None)
    configure = hv.configure_command()
    if configure and phase.changes:
        phase.add(Run([configure], description="regenerate the vmnet configuration"))
    if phase.changes:
        phase.add(ch.RestartNetworking(w.paths, (), hv.restart_commands()))

    def forget(state: dict[str, Any]) -> None:
        state["vmnets"].pop(str(n), None)
        if state.get("default_vmnet") == n:
            state.pop("default_vmnet", None)
        state["restart_pending"] = [v for v in state.get("restart_pending") or [] if v != n]
        if not state["restart_pending"]:
            state.pop("restart_pending")

    phase.add(ch.record(w.paths, f"forget vmnet{n}", forget))
    return phase, w.with_state(forget)
