"""The lab as the planner sees it: one immutable snapshot of the facts (:class:`World`).

:func:`observe` reads a World through the facts layer (:mod:`labctl.facts`), asking only
what is meaningful (no ``ssh`` to a stopped VM, no engine of a machine that does not exist).
The planner (:mod:`labctl.planner`) is a pure function of a World and the wanted lab; its
table-driven tests build Worlds from small data files (:func:`World.from_data`).

A value labctl will only learn once an earlier step has run (a machine's address before
``docker-machine create``) is a :class:`Later`: it prints as ``<what it is>`` in a dry run
and two Laters for the same thing compare equal.  Real runs never see one: after each step
the loop observes the world again.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError, MalformedFile
from labctl.paths import Paths
from labctl.routes.model import Route


class Later:
    """A value learnt after an earlier step (dry run only)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __str__(self) -> str:
        return f"<{self.what}>"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Later) and other.what == self.what

    def __hash__(self) -> int:
        return hash(("Later", self.what))


@dataclass(frozen=True)
class Net:
    """One Docker network of an engine: its name and IPv4 subnets."""

    name: str
    subnets: tuple[ipaddress.IPv4Network, ...]


@dataclass(frozen=True)
class MachineView:
    """One docker-machine as observed (``exists`` False: not in docker-machine's store)."""

    name: str
    exists: bool = False
    state: str = ""  # docker-machine status: Running, Stopped, ... ("" absent)
    driver: str = ""
    ip: Any = None  # docker-machine's address of it (config.json), str | Later | None
    engine_flags: tuple[str, ...] = ()
    machine_dir: str = ""
    vmx_path: str = ""
    vmx: Any = None  # bytes | Later | None (None: not readable, vmx_error says why)
    vmx_error: str = ""
    guest: tuple[Any, ...] | None = None  # addresses the guest holds (None: not asked / no answer)
    cert_ips: tuple[Any, ...] | None = None  # addresses the engine's certificate is valid for
    networks: Any = None  # tuple[Net, ...] | Later | None (None: engine_error says why)
    engine_error: str = ""
    engine_warnings: tuple[str, ...] = ()  # Engine >= 28: networks only published ports reach
    context: str | None = None  # the endpoint of the docker context named after it
    vm: Any = None  # labctl.vmpath.VmFacts | Later | None: the VM's firewall (None: not asked)
    certs: Any = None  # labctl.vmcerts.CertFacts | Later | None: labctl's CA files in the VM
    # the engine's environment, mirrors and insecure registries (labctl.engineconf): what the
    # VM starts it with (EngineFacts | Later | None) and docker-machine's config.json (bytes)
    engine_conf: Any = None
    config_json: Any = None
    # a VM labctl adopts (--adopt): its own .vmx, whether it runs (vmrun), whether SSH answers
    # on its fixed IP, and how it was powered before labctl's first up
    adopt_vmx: str = ""
    vm_running: bool | None = None
    ssh_ok: bool | None = None
    power_before: str = ""
    login: Any = None  # labctl.adopt.Login

    @property
    def running(self) -> bool:
        return self.state == "Running"


@dataclass(frozen=True)
class World:
    paths: Paths
    dm_binary: str
    store: str
    state: Mapping[str, Any]
    networking: bytes | None  # VMware's networking file (None: not readable)
    dhcpd: Mapping[int, bytes]  # vmnet -> dhcpd.conf bytes (those that exist)
    host_networks: tuple[tuple[str, ipaddress.IPv4Network], ...] = ()
    table: tuple[Route, ...] = ()  # the routing table
    machines: Mapping[str, MachineView] = field(default_factory=dict)
    engines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # store machine -> flags
    docker_cli: bool = True
    units: Mapping[str, bytes | None] = field(default_factory=dict)  # boot unit path -> bytes
    adapters: Mapping[int, str | None] = field(default_factory=dict)  # vmnet -> host interface
    vmx_users: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # .vmx -> its vmnets
    networking_error: LabctlError | None = field(default=None, compare=False)

    # ---- reading -------------------------------------------------------------------------------
    def machine(self, name: str) -> MachineView:
        return self.machines.get(name) or MachineView(name)

    def record(self, name: str) -> Any:
        from labctl.facts import MachineRecord

        machines = self.state.get("machines")
        if not isinstance(machines, dict) or not isinstance(machines.get(name), dict):
            return None
        return MachineRecord.from_state(name, machines[name])

    def records(self) -> list[Any]:
        machines = self.state.get("machines")
        return [r for r in (self.record(n) for n in sorted(machines or {})) if r is not None] \
            if isinstance(machines, dict) else []

    def route_records(self, machine: str | None = None) -> list[Any]:
        from labctl.routes import records

        return records.for_machine(records.from_state(dict(self.state)), machine)

    def networking_file(self) -> Any:
        if self.networking is None:
            hv = self.paths.hypervisor
            raise self.networking_error or MalformedFile(
                f"{hv.product} networking file not found: {hv.networking}")
        return parse_networking(self.networking)

    def dhcpd_conf(self, vmnet: int) -> Any:
        data = self.dhcpd.get(vmnet)
        if data is None:
            raise MalformedFile(f"vmnet{vmnet} dhcpd.conf not found: "
                                f"{self.paths.hypervisor.dhcpd_conf(vmnet)}")
        return parse_dhcpd(data)

    def lab_vmnets(self) -> dict[int, dict[str, Any]]:
        """The vmnets labctl created (its records)."""
        out = {}
        for key, info in (self.state.get("vmnets") or {}).items():
            with contextlib.suppress(ValueError, TypeError):
                out[int(key)] = info if isinstance(info, dict) else {}
        return out

    def pending_restarts(self) -> set[int]:
        """vmnets whose files labctl changed without restarting VMware networking yet."""
        value = self.state.get("restart_pending") or []
        return {int(v) for v in value if isinstance(v, int)} if isinstance(value, list) else set()

    # ---- projecting (what a change will make of the world) --------------------------------------
    def with_state(self, mutate: Callable[[dict[str, Any]], None]) -> World:
        state = copy.deepcopy(dict(self.state))
        for key, value in (("vmnets", {}), ("routes", []), ("machines", {}), ("units", {})):
            state.setdefault(key, copy.deepcopy(value))
        mutate(state)
        return replace(self, state=state)

    def with_machine(self, name: str, **changes: Any) -> World:
        return replace(self, machines={**self.machines, name: replace(self.machine(name), **changes)})

    def without_machine(self, name: str) -> World:
        return replace(self, machines={k: v for k, v in self.machines.items() if k != name})

    def with_dhcpd(self, vmnet: int, data: bytes | None) -> World:
        dhcpd = dict(self.dhcpd)
        if data is None:
            dhcpd.pop(vmnet, None)
        else:
            dhcpd[vmnet] = data
        return replace(self, dhcpd=dhcpd)

    # ---- test data -------------------------------------------------------------------------------
    @classmethod
    def from_data(cls, data: Mapping[str, Any], paths: Paths) -> World:
        """A World from plain data (the planner's table-driven tests): bytes as text,
        networks as CIDR strings, routes as ``ip -j route`` objects."""
        from labctl.routes.parse import parse_ip_json

        def b(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, dict) and "later" in v:
                return Later(v["later"])
            return v.encode() if isinstance(v, str) else v

        def val(v: Any) -> Any:
            return Later(v["later"]) if isinstance(v, dict) and "later" in v else v

        machines = {}
        for name, m in (data.get("machines") or {}).items():
            nets = m.get("networks")
            machines[name] = MachineView(
                name=name, exists=m.get("exists", True), state=m.get("state", ""),
                driver=m.get("driver", ""), ip=val(m.get("ip")),
                engine_flags=tuple(m.get("engine_flags", ())),
                machine_dir=m.get("machine_dir", f"{data.get('store', '/store')}/machines/{name}"),
                vmx_path=m.get("vmx_path", f"{data.get('store', '/store')}/machines/{name}/{name}.vmx"),
                vmx=b(m.get("vmx")), vmx_error=m.get("vmx_error", ""),
                guest=None if m.get("guest") is None else tuple(val(g) for g in m["guest"]),
                cert_ips=None if m.get("cert_ips") is None else tuple(val(g) for g in m["cert_ips"]),
                networks=None if nets is None else tuple(
                    Net(n, tuple(ipaddress.IPv4Network(s) for s in subs)) for n, subs in nets.items()),
                engine_error=m.get("engine_error", ""), context=m.get("context"),
                vm=_vm_facts(m.get("vm")), adopt_vmx=m.get("adopt_vmx", ""),
                vm_running=m.get("vm_running"), ssh_ok=m.get("ssh_ok"),
                power_before=m.get("power_before", ""), login=_login(m.get("login")),
                engine_conf=_engine_facts(m.get("engine_conf")),
                config_json=_config_json(m.get("engine_options"), name, data.get("store", "/store")))
            vm = machines[name].vm
            if machines[name].guest is None and vm is not None and not isinstance(vm, Later):
                addrs = tuple(str(a.ip) for v in vm.addresses.values() for a in v)
                machines[name] = replace(machines[name], guest=addrs)
        import json

        return cls(
            paths=paths, dm_binary=data.get("dm_binary", "docker-machine"),
            store=data.get("store", "/store"),
            state={"version": 1, "vmnets": {}, "routes": [], "machines": {}, "units": {},
                   **copy.deepcopy(dict(data.get("state") or {}))},
            networking=b(data.get("networking")),
            dhcpd={int(k): b(v) for k, v in (data.get("dhcpd") or {}).items()},
            host_networks=tuple((i, ipaddress.IPv4Network(n)) for i, n in data.get("host_networks", [])),
            table=tuple(parse_ip_json(json.dumps(data.get("table", [])))),
            machines=machines,
            engines={k: tuple(v) for k, v in (data.get("engines") or {}).items()},
            docker_cli=data.get("docker_cli", True),
            units={k: b(v) for k, v in (data.get("units") or {}).items()},
            adapters={int(k): v for k, v in (data.get("adapters") or {}).items()},
            vmx_users={k: tuple(v) for k, v in (data.get("vmx_users") or {}).items()},
        )


def _login(data: Any) -> Any:
    if not data:
        return None
    from labctl.adopt import Login

    return Login(data["user"], Path(data["key"]))


def _engine_facts(data: Any) -> Any:
    """EngineFacts from test data: {"profile": "…"} (boot2docker) or {"os": "debian",
    "machine_conf": "…", "dropin": "…"}, or {"later": "…"}."""
    if data is None:
        return None
    if "later" in data:
        return Later(data["later"])
    from labctl.engineconf import EngineFacts

    os_id = data.get("os", "boot2docker")
    return EngineFacts(os_id=os_id, boot2docker=os_id == "boot2docker", profile=data.get("profile"),
                       machine_conf=data.get("machine_conf"), dropin=data.get("dropin"), complete=True)


def _config_json(options: Any, name: str, store: str) -> bytes | None:
    """A config.json as docker-machine writes it, with these EngineOptions (test data)."""
    if options is None:
        return None
    import json

    eo = {"ArbitraryFlags": [], "Dns": None, "GraphDir": "", "Env": [], "Ipv6": False, "InsecureRegistry": [],
          "Labels": [], "LogLevel": "", "StorageDriver": "", "SelinuxEnabled": False, "TlsVerify": True,
          "RegistryMirror": [], "InstallURL": "https://get.docker.com", **options}
    doc = {"ConfigVersion": 3, "Driver": {"MachineName": name, "StorePath": store}, "DriverName": "vmware",
           "HostOptions": {"Driver": "", "Memory": 0, "Disk": 0, "EngineOptions": eo}, "Name": name}
    return json.dumps(doc, indent=4).encode()


def _vm_facts(data: Any) -> Any:
    """VmFacts from test data: {"addresses": {"eth1": ["192.168.99.3/24"]}, "forward_policy":
    "DROP", "user_rules": [{"-i": …, "-s": …, "-j": "ACCEPT"}], "bootsync": "…", "boot2docker": true}"""
    if data is None:
        return None
    if "later" in data:
        return Later(data["later"])
    from labctl.vmpath import VmFacts

    vm = VmFacts(forward_policy=data.get("forward_policy", "DROP"), iptables_ok=True,
                 user_chain=True, user_rules=list(data.get("user_rules", [])),
                 bootsync=data.get("bootsync"), dropin=data.get("dropin"),
                 boot2docker=data.get("boot2docker", True), os_id=data.get("os", "boot2docker"))
    for iface, addrs in (data.get("addresses") or {}).items():
        vm.addresses[iface] = [ipaddress.IPv4Interface(a) for a in addrs]
    return vm


@functools.lru_cache(maxsize=16)
def parse_networking(data: bytes) -> Any:
    from labctl import hypervisor

    return hypervisor.driver().parse_networks(data)


@functools.lru_cache(maxsize=32)
def parse_dhcpd(data: bytes) -> Any:
    from labctl import hypervisor

    return hypervisor.driver().parse_reservations(data)


@functools.lru_cache(maxsize=32)
def parse_vmx(data: bytes) -> Any:
    from labctl import hypervisor

    return hypervisor.driver().parse_vm_config(data)


# ---- observing -----------------------------------------------------------------------------------
def _try(fn: Callable[[], Any]) -> tuple[Any, str]:
    try:
        return fn(), ""
    except LabctlError as exc:
        return None, exc.message
    except OSError as exc:
        return None, str(exc)


def observe_machine(facts: Any, name: str, *, engine: bool = True, deep: bool = True,
                    cas: bool = False, settings: bool = False) -> MachineView:
    """One machine through the facts layer (only what its state makes meaningful; without
    ``deep``, nothing that needs the VM or its engine to answer)."""
    path = str(facts.vmx_path(name))
    if not facts.machine_exists(name):
        vmx, vmx_error = _try(lambda: facts.vmx_file(name).data)
        return MachineView(name, vmx_path=path, vmx=vmx, vmx_error=vmx_error,
                           context=_context(facts, name))
    config, _ = _try(lambda: facts.machine_config(name))
    vmx, vmx_error = _try(lambda: facts.vmx_file(name).data)
    state, err = _try(lambda: facts.machine_status(name))
    view = MachineView(
        name, exists=True, state=state or ("Error" if err else ""),
        driver=config.driver if config else "", ip=(config.ip_address or None) if config else None,
        engine_flags=tuple(config.engine_flags) if config else (),
        machine_dir=str(facts.dm().machine_dir(name)), vmx_path=path, vmx=vmx, vmx_error=vmx_error,
        context=_context(facts, name))
    if view.running and deep:
        vm, _ = _try(lambda: facts.vm_probe(name))
        guest = tuple(str(a.ip) for addrs in vm.addresses.values() for a in addrs) if vm else None
        view = replace(view, guest=guest, vm=vm)
        if cas:
            certs, _ = _try(lambda: facts.ca_probe(name))
            view = replace(view, certs=certs)
        if settings:
            conf, _ = _try(lambda: facts.engine_probe(name))
            view = replace(view, engine_conf=conf)
        if engine:
            found, engine_error = _try(lambda: _networks(facts, name))
            if found is None and not engine_error:
                engine_error = f"{name}'s engine did not answer"
            nets, warnings = found or (None, ())
            view = replace(view, networks=nets, engine_error=engine_error, engine_warnings=warnings)
    if settings:
        raw, _ = _try(lambda: (Path(view.machine_dir) / "config.json").read_bytes())
        view = replace(view, config_json=raw)
    certs, _ = _try(lambda: facts.cert_addresses(name))
    return replace(view, cert_ips=certs)


def _networks(facts: Any, name: str) -> tuple[tuple[Net, ...], tuple[str, ...]]:
    from labctl.routes.service import reachability_warnings

    try:
        found = facts.engine_networks(name)
        version = facts.engine(name)[1]
    except LabctlError:
        raise
    except Exception as exc:  # the SDK's own errors: the engine did not answer as it should
        raise LabctlError(f"cannot read {name}'s Docker networks: {exc}") from exc
    return (tuple(Net(n.name, tuple(n.subnets)) for n in found),
            tuple(reachability_warnings(version, found).values()))


def _context(facts: Any, name: str) -> str | None:
    try:
        return facts.docker_context(name)
    except LabctlError:
        return None


def _prefetch(facts: Any, names: Iterable[str], engine: bool, deep: bool) -> None:
    """Start the slow probes (docker-machine, ssh, the engine, the docker CLI, the routing
    table) side by side in daemon threads; the facts layer memoises each, so the reads below
    wait for the answer instead of asking again.  A probe nobody waits for (the engine of a
    stopped VM) is left to time out on its own."""
    import threading

    def bg(fn: Callable[[], Any]) -> None:
        threading.Thread(target=_try, args=(fn,), daemon=True).start()

    bg(facts.route_table)
    for name in names:
        bg(functools.partial(facts.docker_context, name))
        if not facts.machine_exists(name):
            continue
        bg(functools.partial(facts.machine_status, name))
        if not deep:
            continue
        bg(functools.partial(facts.vm_probe, name))
        if engine:
            bg(functools.partial(_networks, facts, name))


def observe_adopted(facts: Any, view: MachineView, vmx: Path, login: Any,
                    power_before: str = "", deep: bool = True) -> MachineView:
    """A VM labctl adopts: its own .vmx, whether it runs, whether SSH answers on its fixed IP."""
    data, error = _try(lambda: Path(vmx).read_bytes())
    running = facts.vm_running(Path(vmx))
    rec = facts.machine_record(view.name)
    fixed = rec.ip if rec is not None and rec.extra.get("adopted") else None
    ssh_ok = None
    if login is not None and fixed and deep:
        ssh_ok = bool(running) and facts.ssh_answers(login.user, login.key, fixed)
    power = str(rec.extra.get("power_before") or "") if rec is not None else ""
    return replace(view, adopt_vmx=str(vmx), vmx_path=str(vmx), vmx=data, vmx_error=error,
                   vm_running=running, ssh_ok=ssh_ok, power_before=power or power_before, login=login)


def observe(facts: Any, names: Iterable[str], *, units: Iterable[Path] = (),
            vmx_scan: bool = False, engine: bool = True,
            adopted: Mapping[str, tuple[Path, Any]] | None = None,
            power: Mapping[str, str] | None = None, deep: bool = True,
            cas: Iterable[str] = (), settings: Iterable[str] = ()) -> World:
    """A World of the machines ``names`` (and labctl's records), read through ``facts``.
    ``adopted``: the VMs labctl adopts, name -> (.vmx, SSH login); ``power``: how each was
    powered before labctl's first look (preflight); without ``deep``, nothing that needs a VM
    or its engine to answer (the planner's first phases need none of it)."""
    names = list(dict.fromkeys(names))
    _prefetch(facts, names, engine, deep)
    paths: Paths = facts.paths
    state = facts.state()
    networking: bytes | None = None
    net_error: LabctlError | None = None
    try:
        networking = facts.networking_file()[0]
    except LabctlError as exc:
        net_error = exc
    dhcpd: dict[int, bytes] = {}
    numbers: set[int] = set()
    if networking is not None:
        numbers |= set(parse_networking(networking).vmnets)
    numbers |= {int(k) for k in (state.get("vmnets") or {}) if str(k).isdigit()}
    for n in sorted(numbers):
        data, _ = _try(functools.partial(lambda k: facts.dhcpd_file(k)[0], n))
        if data is not None:
            dhcpd[n] = data
    table, _ = _try(lambda: facts.route_table())
    with_cas = set(cas)
    with_settings = set(settings)
    machines = {n: observe_machine(facts, n, engine=engine, deep=deep, cas=n in with_cas,
                                   settings=n in with_settings) for n in names}
    for name, (vmx, login) in (adopted or {}).items():
        machines[name] = observe_adopted(facts, machines[name], vmx, login, (power or {}).get(name, ""),
                                         deep=deep)
    engines = {}
    for other in facts.store_machines():
        cfg, _ = _try(functools.partial(facts.machine_config, other))
        if cfg is not None:
            engines[other] = tuple(cfg.engine_flags)
    docker_cli = _docker_cli(facts)
    unit_bytes = {str(p): (p.read_bytes() if p.exists() else None) for p in units}
    adapters: dict[int, str | None] = {}
    if networking is not None:
        from labctl.hostinfo import adapter_name

        nf = parse_networking(networking)
        for n in numbers:
            with contextlib.suppress(Exception):
                adapters[n] = adapter_name(paths, nf.get(n), n)
    return World(
        paths=paths, dm_binary=str(facts.dm().binary), store=str(facts.dm().store), state=state,
        networking=networking, networking_error=net_error, dhcpd=dhcpd,
        host_networks=tuple(facts.host_networks()), table=tuple(table or ()), machines=machines,
        engines=engines, docker_cli=docker_cli, units=unit_bytes, adapters=adapters,
        vmx_users=vmx_users(facts) if vmx_scan else {})


def _docker_cli(facts: Any) -> bool:
    import shutil

    return shutil.which("docker", path=facts.env.get("PATH")) is not None


def vmx_users(facts: Any) -> dict[str, tuple[int, ...]]:
    """Every .vmx labctl can find (docker-machine's store, ``vmrun list``, the user's VM
    folders and VMware's VM inventory) and the vmnets its NICs are on."""
    from labctl import hypervisor

    nic_vmnet = hypervisor.driver().nic_network
    out: dict[str, tuple[int, ...]] = {}
    for path in facts.vmx_files():
        try:
            vmx = parse_vmx(Path(path).read_bytes())
        except (OSError, LabctlError):
            continue
        nets = {nic_vmnet(n) for n in vmx.nics() if n.present}
        out[str(path)] = tuple(sorted(n for n in nets if n is not None))
    return out
