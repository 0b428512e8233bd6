"""Facts: the one place labctl reads what is there.

A :class:`Facts` object is a set of read-only probes for one look at the desktop: labctl's
records, the hypervisor's network files, docker-machine's store and its machines, the VM's
addresses and certificate, the engine's networks, the routing table and docker contexts.
Every probe runs once per Facts object and caches its answer (or its error, re-raised to
every caller), so nothing is read or run twice; two threads asking at the same moment wait
for one probe.  ``command_timeout`` caps every command a probe runs (doctor's short bound);
without it each adapter's own timeout applies.  After a change, :meth:`Facts.fresh` gives an
empty cache for the next look (facts are never trusted across a change).

``up``, ``down``, ``status``, ``route`` and ``doctor`` all read through this module, so each
fact has one definition:

* the typed machine record (:class:`MachineRecord`, from labctl's state),
* the machine's vmnet (:meth:`Facts.machine_vmnet`) and fixed IP (:meth:`Facts.fixed_ip`),
* the machine's ``.vmx`` (:meth:`Facts.vmx_file`) and docker-machine's ``config.json``
  (:meth:`Facts.machine_config`, parsed by :func:`labctl.machine.read_config`).

**The machine record** (``state["machines"][NAME]``, written by ``up``)::

    {
      "vmnet": 2,                          # the lab vmnet (number)
      "mac": "00:50:56:2a:bb:cc",          # the MAC of the VM's NIC on that vmnet
      "ip": "192.168.99.10",               # the reserved (fixed) address
      "vmx": "/Users/me/.docker/machine/machines/lab/lab.vmwarevm/lab.vmx",
      "nic": "dedicated",                  # "existing" (ethernet0, generated MAC) or
                                           # "dedicated" (an added host-only NIC, static MAC)
      "nic_index": 1,                      # optional: 0 for "existing", 1 for "dedicated"
      "driver": "vmwarefusion",            # optional: docker-machine driver ("vmware" plugin)
      "created_by_labctl": true,           # labctl ran docker-machine create (down removes it)
      "context": "lab",                    # the docker context labctl created (down removes it)
      "engine": {"bip": "172.17.0.1/16", "pool": "172.18.0.0/16"}
    }
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import ipaddress
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from labctl.errors import LabctlError, MalformedFile, PreconditionMissing
from labctl.paths import Paths
from labctl.runner import Runner

T = TypeVar("T")

NIC_STRATEGIES = ("existing", "dedicated")


class BoundedRunner(Runner):
    """A Runner whose every call ends within ``cap`` seconds, whatever timeout the adapter
    asks for: doctor hands it to labctl's adapters (docker-machine, route tables, ...) so a
    hung tool is killed in time and doctor stays quick."""

    def __init__(self, cap: float) -> None:
        super().__init__(default_timeout=cap)
        self.cap = cap

    def run(self, argv, *, sudo=False, timeout=None, check=True, input=None, env=None, cwd=None,
            clean_env=False, show=True):
        limit = self.cap if timeout is None else min(timeout, self.cap)
        return super().run(argv, sudo=sudo, timeout=limit, check=check, input=input, env=env,
                           cwd=cwd, clean_env=clean_env, show=show)


class _Entry:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def probe(fn: Callable[..., T]) -> Callable[..., T]:
    """Cache a Facts method per arguments for the life of the Facts object."""

    @functools.wraps(fn)
    def wrapper(self: Facts, *args: Any) -> T:
        return self.memo((fn.__name__, *args), lambda: fn(self, *args))

    return wrapper


# ---- labctl's record of a machine ------------------------------------------------------------------
def _vmnet_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 255 else None
    if isinstance(value, str):
        digits = value[5:] if value.startswith("vmnet") else value
        if digits.isdigit() and int(digits) <= 255:
            return int(digits)
    return None


@dataclass(frozen=True)
class MachineRecord:
    """What labctl recorded about one machine (tolerant: a wrong type reads as absent)."""

    name: str
    vmnet: int | None = None
    mac: str | None = None
    ip: str | None = None
    vmx: str | None = None
    nic: str | None = None
    nic_index: int | None = None
    driver: str | None = None
    created: bool = False  # labctl ran docker-machine create for it
    context: str | None = None  # the docker context labctl made for it
    bip: str | None = None
    pool: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_state(cls, name: str, data: Any) -> MachineRecord:
        if not isinstance(data, dict):
            data = {}

        def text(key: str) -> str | None:
            v = data.get(key)
            return str(v) if isinstance(v, str | int) and not isinstance(v, bool) and v != "" else None

        index = data.get("nic_index")
        nic = text("nic")
        if not isinstance(index, int) or isinstance(index, bool):
            index = None
        if index is None and nic in NIC_STRATEGIES:
            index = 0 if nic == "existing" else 1
        mac = text("mac")
        engine = data.get("engine") if isinstance(data.get("engine"), dict) else {}
        return cls(name, _vmnet_number(data.get("vmnet")), mac.lower() if mac else None,
                   text("ip"), text("vmx"), nic, index, text("driver"),
                   data.get("created_by_labctl") is True, text("context"),
                   str(engine["bip"]) if engine.get("bip") else None,
                   str(engine["pool"]) if engine.get("pool") else None, dict(data))

    @property
    def missing(self) -> list[str]:
        return [k for k in ("vmnet", "mac", "ip") if getattr(self, k) is None]


@dataclass(frozen=True)
class VmxFile:
    path: Path
    data: bytes

    @functools.cached_property
    def vmx(self) -> Any:
        from labctl import hypervisor

        return hypervisor.driver().parse_vm_config(self.data)


class Facts:
    """Read-only, memoised probes for one look at the lab.  ``machine`` is the machine in
    focus (doctor's target): probes about a machine default to it."""

    def __init__(self, paths: Paths, *, machine: str | None = None, runner: Runner | None = None,
                 command_timeout: float | None = None, env: dict[str, str] | None = None) -> None:
        self.paths = paths
        self.machine_arg = machine
        self.command_timeout = command_timeout
        self.env = dict(os.environ if env is None else env)
        self._lock = threading.Lock()
        self._memo: dict[tuple[Any, ...], _Entry] = {}
        self.runner: Runner = BoundedRunner(command_timeout) if command_timeout else (runner or Runner())
        self._base_runner = runner

    def fresh(self) -> Facts:
        """The same probes with nothing cached (the next look, after a change)."""
        return type(self)(self.paths, machine=self.machine_arg, runner=self._base_runner,
                          command_timeout=self.command_timeout, env=self.env)

    def memo(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        with self._lock:
            entry = self._memo.get(key)
            owner = entry is None
            if entry is None:
                entry = self._memo[key] = _Entry()
        if owner:
            try:
                entry.value = compute()
            except BaseException as exc:
                entry.error = exc
            finally:
                entry.done.set()
        else:
            entry.done.wait()
        if entry.error is not None:
            raise entry.error
        return entry.value

    @property
    def platform(self) -> str:
        return self.paths.platform

    def focus(self, name: str | None) -> str:
        """``name``, else the machine in focus (the only recorded one when none was named)."""
        if name:
            return name
        if self.machine_arg:
            return self.machine_arg
        names = self.recorded_machines()
        if len(names) == 1:
            return names[0]
        raise MalformedFile("labctl has no record of the lab machine", "labctl up NAME")

    # ---- labctl's own records ----------------------------------------------------------------------
    @probe
    def state(self) -> dict[str, Any]:
        from labctl import state

        return state.load(self.paths)

    def recorded_machines(self) -> tuple[str, ...]:
        machines = self.state().get("machines")
        return tuple(sorted(machines)) if isinstance(machines, dict) else ()

    def machine_record(self, name: str) -> MachineRecord | None:
        """labctl's record of ``name``; None when it has none."""
        machines = self.state().get("machines")
        if not isinstance(machines, dict) or not isinstance(machines.get(name), dict):
            return None
        return MachineRecord.from_state(name, machines[name])

    @probe
    def all_route_records(self) -> list[Any]:
        from labctl.routes import records

        return records.from_state(self.state())

    def routes_of(self, machine: str | None) -> list[Any]:
        """labctl's route records for ``machine`` (all of them for None)."""
        from labctl.routes import records

        return records.for_machine(self.all_route_records(), machine)

    # ---- the hypervisor's network files -----------------------------------------------------------
    @probe
    def networking_file(self) -> tuple[bytes, Any]:
        """(bytes, NetworkingFile) of VMware's networking file."""
        return self.paths.hypervisor.read_networks()

    @probe
    def dhcpd_file(self, vmnet: int) -> tuple[bytes, Any]:
        """(bytes, DhcpdConf) of a vmnet's dhcpd.conf."""
        return self.paths.hypervisor.read_reservations(vmnet)

    @probe
    def host_networks(self) -> list[tuple[str, ipaddress.IPv4Network]]:
        from labctl.hostinfo import host_networks

        return host_networks()

    # ---- docker-machine (labctl.machine's adapter) and its store -----------------------------------
    @probe
    def dm(self) -> Any:
        from labctl.machine import DockerMachine, storage_path

        return DockerMachine(runner=self.runner, binary=str(self.paths.docker_machine),
                             store=storage_path(self.env), platform=self.platform)

    @probe
    def machine_exists(self, name: str) -> bool:
        return bool(self.dm().exists(name))

    @probe
    def store_machines(self) -> list[str]:
        """Every machine in docker-machine's store (labctl's or not)."""
        return list(self.dm().names())

    @probe
    def machine_config(self, name: str) -> Any:
        """docker-machine's config.json of ``name`` (labctl.machine.MachineDetails)."""
        return self.dm().read_config(name)

    def vmx_path(self, name: str) -> Path:
        """Where the machine's .vmx is: where labctl recorded it, else where both VMware
        drivers put it in docker-machine's store."""
        rec = self.machine_record(name)
        if rec is not None and rec.vmx:
            return Path(rec.vmx)
        return Path(self.dm().vmx_path(name))

    @probe
    def vmx_file(self, name: str) -> VmxFile:
        """The machine's .vmx (path, bytes; ``.vmx`` parses it)."""
        path = self.vmx_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise PreconditionMissing(f"{name}'s .vmx file {path} was not found",
                                      "is it a VMware machine (driver vmwarefusion or vmware)?") from exc
        except OSError as exc:
            raise PreconditionMissing(f"cannot read {name}'s .vmx file {path}: {exc.strerror}",
                                      "is it a VMware machine (driver vmwarefusion or vmware)?") from exc
        return VmxFile(path, data)

    @probe
    def running_vmx(self) -> tuple[Path, ...]:
        """``vmrun list``: the .vmx of every running VM (none when vmrun is not there)."""
        try:
            return tuple(Path(p) for p in self.paths.hypervisor.running_vms(self.runner))
        except LabctlError:
            return ()

    def vm_running(self, vmx: Path) -> bool:
        """Whether the VM of ``vmx`` runs (``vmrun list``; names compared as people read them)."""
        normalize = self.paths.hypervisor.same_vm_path
        want = normalize(str(vmx))
        return any(normalize(str(p)) == want for p in self.running_vmx())

    @probe
    def vmx_files(self) -> tuple[Path, ...]:
        """Every .vmx labctl can find: docker-machine's store, ``vmrun list``, VMware's VM
        inventory and the user's VM folders."""
        found: dict[str, Path] = {}
        for name in self.store_machines():
            found.setdefault(str(self.vmx_path(name)), self.vmx_path(name))
        for path in self.running_vmx():
            found.setdefault(str(path), path)
        home = Path(self.env.get("HOME") or Path.home())
        inventories, folders = self.paths.hypervisor.vm_locations(home)
        for inv in inventories:
            try:
                text = inv.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition("=")
                value = value.strip().strip('"')
                if key.strip().endswith(".config") and value.endswith(".vmx"):
                    found.setdefault(value, Path(value))
        for folder in folders:
            with contextlib.suppress(OSError):
                for path in sorted(folder.glob("*/*.vmx")):
                    found.setdefault(str(path), path)
        return tuple(found.values())

    @probe
    def machine_status(self, name: str) -> str:
        """``docker-machine status``: Running, Stopped, Error, ..."""
        return str(self.dm().status(name))

    @probe
    def vm_probe(self, name: str) -> Any:
        """What the VM says about its addresses, firewall and boot files (one
        ``docker-machine ssh``; labctl.vmpath's probe, parsed)."""
        from labctl import vmpath

        out = self.dm().ssh(name, vmpath.probe_script(), timeout=30).stdout
        return vmpath.parse_probe(out)

    @probe
    def ca_probe(self, name: str) -> Any:
        """labctl's CA files in the VM and how its host loads them (one ``docker-machine ssh``;
        labctl.vmcerts's probe, parsed)."""
        from labctl import vmcerts

        return vmcerts.parse_probe(self.dm().ssh(name, vmcerts.probe_script(), timeout=30).stdout)

    @probe
    def engine_probe(self, name: str) -> Any:
        """What the VM starts its engine with: the boot2docker profile or the systemd drop-ins
        (one ``docker-machine ssh``; labctl.engineconf's probe, parsed)."""
        from labctl import engineconf

        return engineconf.parse_probe(self.dm().ssh(name, engineconf.probe_script(), timeout=30).stdout)

    def guest_addresses(self, name: str) -> tuple[str, ...]:
        """IPv4 addresses the guest holds (from the VM probe)."""
        return tuple(str(a.ip) for addrs in self.vm_probe(name).addresses.values() for a in addrs)

    @probe
    def ssh_answers(self, user: str, key: Path, ip: str) -> bool:
        """Whether ``ssh USER@IP`` logs in with the key now (a VM labctl adopts; one try)."""
        from labctl import adopt

        return adopt.probe_ssh(self.runner, adopt.Login(user, key), ip, 0).ok

    @probe
    def server_cert(self, name: str) -> ServerCert:
        """The engine's server certificate from docker-machine's store: its dates and the
        addresses it is valid for (read with ``cryptography``)."""
        dm = self.dm()
        try:
            configured = self.machine_config(name).server_cert
        except LabctlError:
            configured = ""
        path = Path(configured or dm.machine_dir(name) / "server.pem")
        if not path.is_file():
            path = dm.machine_dir(name) / "server.pem"
        try:
            return read_server_cert(path)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise MalformedFile(f"cannot read the engine's certificate {path}: {why}",
                                f"docker-machine regenerate-certs -f {name}") from exc

    def cert_addresses(self, name: str) -> tuple[str, ...]:
        """The IP addresses the engine's server certificate is valid for."""
        return self.server_cert(name).ips

    # ---- facts derived from the above, each defined here only ----------------------------------------
    def machine_vmnet(self, name: str) -> int | None:
        """The vmnet the machine's lab NIC is on: labctl's record, else (a machine labctl has
        not set up) the vmnet of the .vmx's ethernet0."""
        rec = self.machine_record(name)
        if rec is not None and rec.vmnet is not None:
            return rec.vmnet
        try:
            nic = self.vmx_file(name).vmx.nic(0)
        except LabctlError:
            return None
        return self.paths.hypervisor.nic_network(nic) if nic is not None else None

    def fixed_ip(self, name: str) -> str | None:
        """The machine's fixed address: labctl's record, else labctl's reservation named
        after it on its vmnet."""
        rec = self.machine_record(name)
        if rec is not None and rec.ip:
            return rec.ip
        candidates = [self.machine_vmnet(name), self.lab_vmnet()]
        for vmnet in dict.fromkeys(n for n in candidates if n is not None):
            try:
                host = self.dhcpd_file(vmnet)[1].host(name)
            except LabctlError:
                continue
            if host is not None and host.managed and host.ip:
                return str(host.ip)
        return None

    def lab_vmnet(self) -> int | None:
        """The vmnet labctl set up for the lab, else the only host-only vmnet with DHCP."""
        default = _vmnet_number(self.state().get("default_vmnet"))
        if default is not None:
            return default
        try:
            nf = self.networking_file()[1]
        except LabctlError:
            return None
        candidates = [v.number for v in nf.vmnets.values() if v.kind == "host-only" and v.dhcp]
        return candidates[0] if len(candidates) == 1 else None

    # ---- the routing table --------------------------------------------------------------------------
    @probe
    def route_table(self, quick: bool = False) -> list[Any]:
        from labctl.routes.tables import read_table

        return read_table(self.paths, self.runner, quick=quick)

    # ---- the Docker Engine ------------------------------------------------------------------------
    @probe
    def engine_target(self, name: str) -> Any:
        """How to reach a machine's engine: docker-machine's store (no subprocess)."""
        from labctl import engine

        return engine.target_from_store(name, self.dm().store)

    @probe
    def engine(self, name: str) -> Any:
        """(reader, version) for a machine's engine, TLS verified (an engine.EngineReader:
        reads only, no SDK)."""
        from labctl import engine

        timeout = self.command_timeout or engine.CONNECT_TIMEOUT
        reader = engine.read(self.engine_target(name), timeout=timeout)
        return reader, engine.engine_version(reader)

    @probe
    def engine_networks(self, name: str) -> list[Any]:
        from labctl import engine

        return engine.list_networks(self.engine(name)[0])

    # ---- the docker CLI --------------------------------------------------------------------------
    @probe
    def docker_context(self, name: str) -> str | None:
        """The Docker endpoint of the docker context ``name``; None when there is none.
        PreconditionMissing when the docker CLI is not installed."""
        r = self.runner.run(["docker", "context", "inspect", name, "--format",
                             "{{.Endpoints.docker.Host}}"], timeout=20, check=False)
        return r.stdout.strip() if r.returncode == 0 else None


@dataclass(frozen=True)
class ServerCert:
    path: Path
    not_before: datetime.datetime
    not_after: datetime.datetime  # timezone-aware (UTC)
    ips: tuple[str, ...]  # subjectAltName IP addresses
    dns: tuple[str, ...] = ()  # subjectAltName DNS names

    @property
    def names(self) -> tuple[str, ...]:
        return self.ips + self.dns

    @property
    def expires(self) -> str:
        return self.not_after.strftime("%Y-%m-%d %H:%M UTC")


def read_server_cert(path: Path) -> ServerCert:
    """A PEM certificate's validity and subjectAltName (ValueError if it does not parse)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        ips: tuple[str, ...] = ()
        dns: tuple[str, ...] = ()
    else:
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    return ServerCert(path, cert.not_valid_before_utc, cert.not_valid_after_utc, ips, dns)
