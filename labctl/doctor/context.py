"""The probe context shared by every doctor check.

Each probe reads or runs something once per doctor run and caches the answer (or the error,
re-raised to every check that asks), so checks never re-read a file or re-run a command, and
two checks asking at the same moment wait for one probe.  Probes only read; every parse goes
through labctl's own parsers (``labctl.vmware.*``).

**The machine record** doctor reads from labctl's state (``state["machines"][NAME]``; the
``up`` command writes it)::

    {
      "vmnet": 2,                          # the lab vmnet (number)
      "mac": "00:50:56:2a:bb:cc",          # the MAC of the VM's NIC on that vmnet
      "ip": "192.168.99.10",               # the reserved (fixed) address
      "vmx": "/Users/me/.docker/machine/machines/lab/lab.vmwarevm/lab.vmx",
      "nic": "dedicated",                  # "existing" (ethernet0, generated MAC) or
                                           # "dedicated" (an added host-only NIC, static MAC)
      "nic_index": 1,                      # optional: 0 for "existing", 1 for "dedicated"
      "driver": "vmwarefusion"             # optional: docker-machine driver ("vmware" plugin)
    }
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from labctl.errors import MalformedFile
from labctl.paths import Paths
from labctl.runner import Runner

T = TypeVar("T")

FUSION_APP = "/Applications/VMware Fusion.app"
WORKSTATION_DIRS = ("/usr/lib/vmware", "/usr/bin/vmware")
WORKSTATION_CONFIG = "/etc/vmware/config"
NIC_STRATEGIES = ("existing", "dedicated")


class BoundedRunner(Runner):
    """A Runner whose every call ends within ``cap`` seconds, whatever timeout the adapter
    asks for: doctor hands it to labctl's adapters (docker-machine, route tables, ...) so a
    hung tool is killed in time and doctor stays quick."""

    def __init__(self, cap: float) -> None:
        super().__init__(default_timeout=cap)
        self.cap = cap

    def run(self, argv, *, sudo=False, timeout=None, check=True, input=None, env=None, cwd=None,
            clean_env=False):
        limit = self.cap if timeout is None else min(timeout, self.cap)
        return super().run(argv, sudo=sudo, timeout=limit, check=check, input=input, env=env,
                           cwd=cwd, clean_env=clean_env)


class _Entry:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def probe(fn: Callable[..., T]) -> Callable[..., T]:
    """Cache a Context method per arguments for the life of the Context."""

    @functools.wraps(fn)
    def wrapper(self: Context, *args: Any) -> T:
        return self.memo((fn.__name__, *args), lambda: fn(self, *args))

    return wrapper


@dataclass(frozen=True)
class MachineRecord:
    name: str
    vmnet: int | None
    mac: str | None
    ip: str | None
    vmx: str | None
    nic: str | None
    nic_index: int | None
    driver: str | None

    @classmethod
    def from_state(cls, name: str, data: dict[str, Any]) -> MachineRecord:
        def text(key: str) -> str | None:
            v = data.get(key)
            return str(v) if v not in (None, "") else None

        vmnet = data.get("vmnet")
        if isinstance(vmnet, str):
            vmnet = int(vmnet[5:]) if vmnet.startswith("vmnet") and vmnet[5:].isdigit() else \
                (int(vmnet) if vmnet.isdigit() else None)
        index = data.get("nic_index")
        nic = text("nic")
        if index is None and nic in NIC_STRATEGIES:
            index = 0 if nic == "existing" else 1
        mac = text("mac")
        return cls(name, vmnet if isinstance(vmnet, int) else None, mac.lower() if mac else None,
                   text("ip"), text("vmx"), nic, int(index) if index is not None else None,
                   text("driver"))

    @property
    def missing(self) -> list[str]:
        return [k for k in ("vmnet", "mac", "ip") if getattr(self, k) is None]


@dataclass(frozen=True)
class Target:
    """What doctor examines: a machine (when labctl knows one) and its vmnet."""

    machine: str | None
    record: MachineRecord | None
    vmnet: int | None  # None: could not be determined (vmnet_error says why)
    vmnet_error: Exception | None = None
    machines: tuple[str, ...] = ()  # every machine labctl recorded


@dataclass
class CommandAnswer:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class Context:
    """Probes for one doctor run.  ``machine``/``vmnet`` come from the command line."""

    def __init__(self, paths: Paths, *, machine: str | None = None, vmnet: str | None = None,
                 command_timeout: float = 1.5, env: dict[str, str] | None = None) -> None:
        self.paths = paths
        self.machine_arg = machine
        self.vmnet_arg = vmnet
        self.command_timeout = command_timeout
        self.env = dict(os.environ if env is None else env)
        self._lock = threading.Lock()
        self._memo: dict[tuple[Any, ...], _Entry] = {}
        self.runner = BoundedRunner(command_timeout)

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

    # ---- the host -----------------------------------------------------------------------------
    @property
    def platform(self) -> str:
        return self.paths.platform

    @probe
    def arch(self) -> str:
        from labctl.hostinfo import machine_arch

        return machine_arch(self.env)

    @probe
    def macos_version(self) -> str | None:
        """``LABCTL_MACOS_VERSION`` (say what doctor would tell on that release), else the OS's."""
        from labctl.hostinfo import macos_version

        return macos_version(self.paths, self.env)

    def bridge_adapters(self) -> bool:
        """Fusion on macOS 11+: a vmnet's host side is a bridge10x that exists while a VM runs."""
        from labctl.hostinfo import bridge_adapters

        return bridge_adapters(self.paths, self.env)

    @probe
    def os_description(self) -> str:
        if self.platform == "darwin":
            v = self.macos_version()
            return f"macOS {v}" if v else "macOS (version unknown)"
        release = ""
        try:
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    release = line.split("=", 1)[1].strip().strip('"')
        except OSError:
            pass
        return f"Linux {platform.release()}" + (f" ({release})" if release else "")

    @probe
    def vmware_install(self) -> Path | None:
        """The Fusion app bundle, or Workstation's install dir/binary; None when absent."""
        candidates = [FUSION_APP] if self.platform == "darwin" else list(WORKSTATION_DIRS)
        for c in candidates:
            p = self.paths.host(c)
            if p.exists():
                return p
        return None

    @probe
    def vmware_version(self) -> str | None:
        """Fusion: Info.plist CFBundleShortVersionString; Workstation: /etc/vmware/config."""
        from labctl.hostinfo import vmware_version

        return vmware_version(self.paths)

    @probe
    def executable(self, path: str) -> bool:
        p = Path(path)
        return p.is_file() and os.access(p, os.X_OK)

    @probe
    def which(self, name: str) -> str | None:
        found = shutil.which(name, path=self.env.get("PATH"))
        if found is None and self.paths.rooted:  # under LABCTL_ROOT: where installers put it
            for d in ("/usr/local/bin", "/usr/bin"):
                cand = self.paths.host(d) / name
                if os.access(cand, os.X_OK):
                    return str(cand)
        return found

    @probe
    def run(self, *argv: str) -> CommandAnswer:
        """Run a read-only command once (through the Runner, with doctor's short timeout)."""
        r = self.runner.run(list(argv), check=False)
        return CommandAnswer(r.argv, r.returncode, r.stdout, r.stderr)

    # ---- what to examine --------------------------------------------------------------------------
    @probe
    def state(self) -> dict[str, Any]:
        from labctl import state

        return state.load(self.paths)

    @probe
    def target(self) -> Target:
        from labctl.paths import parse_vmnet
        from labctl.vmware import lab

        machines_raw = self.state().get("machines") or {}
        machines = tuple(sorted(machines_raw))
        name = self.machine_arg
        if name is None and len(machines) == 1:
            name = machines[0]
        record = None
        if name is not None and isinstance(machines_raw.get(name), dict):
            record = MachineRecord.from_state(name, machines_raw[name])
        vmnet: int | None = None
        error: Exception | None = None
        try:
            if self.vmnet_arg:
                vmnet = parse_vmnet(self.vmnet_arg)
            elif record is not None and record.vmnet is not None:
                vmnet = record.vmnet
            else:
                vmnet = lab.resolve_vmnet(self.paths, None)
        except Exception as exc:  # reported by the checks that need the vmnet
            error = exc
        return Target(name, record, vmnet, error, machines)

    def vmnet_number(self) -> int:
        t = self.target()
        if t.vmnet is None:
            assert t.vmnet_error is not None
            raise t.vmnet_error
        return t.vmnet

    def record(self) -> MachineRecord:
        r = self.target().record
        if r is None:
            raise MalformedFile("labctl has no record of the lab machine", "labctl up NAME")
        return r

    # ---- VMware files ----------------------------------------------------------------------------
    @probe
    def networking(self):
        from labctl.vmware import lab

        return lab.read_networking(self.paths)[1]

    @probe
    def vmnet(self):
        """The lab vmnet's entry in the networking file, or None."""
        return self.networking().get(self.vmnet_number())

    @probe
    def dhcpd(self):
        from labctl.vmware import lab

        return lab.read_dhcpd(self.paths, self.vmnet_number())[1]

    @probe
    def leases(self, path: Path):
        from labctl.vmware import leases
        from labctl.vmware.text import read

        return leases.parse(read(path, "DHCP leases file"))

    @probe
    def vmx(self):
        from labctl.vmware.text import read
        from labctl.vmware.vmx import Vmx

        rec = self.record()
        if not rec.vmx:
            raise MalformedFile(f"labctl's record of {rec.name} names no .vmx file",
                                f"labctl up {rec.name}")
        return Vmx.parse(read(Path(rec.vmx), f"{rec.name}'s .vmx file"))

    @probe
    def reservation(self):
        """The lab machine's host block: by its name, else by its MAC; None when absent."""
        rec = self.record()
        conf = self.dhcpd()
        host = conf.host(rec.name)
        if host is None and rec.mac:
            host = next((h for h in conf.hosts if rec.mac in h.macs), None)
        return host

    # ---- VMware tools ------------------------------------------------------------------------
    @probe
    def network_status(self):
        """``vmnet-cli --status`` / ``vmware-networks --status``, parsed."""
        from labctl.vmware import tools

        cmd = tools.status_command(self.paths)
        answer = self.run(*cmd.argv)
        return answer, tools.parse_status(answer.stdout)

    @probe
    def host_adapter(self):
        """The host side of the lab vmnet, found by its subnet (vmnetN, or bridge10x on macOS
        11+); None when no interface is on it now."""
        from labctl.hostinfo import host_adapter

        v = self.vmnet()
        return host_adapter(v) if v is not None else None

    # ---- docker-machine (labctl.machine's adapter) ---------------------------------------------
    @probe
    def dm(self):
        from labctl.machine import DockerMachine, storage_path

        return DockerMachine(runner=self.runner, binary=str(self.paths.docker_machine),
                             store=storage_path(self.env), platform=self.platform)

    @probe
    def docker_machine(self) -> str | None:
        """The docker-machine labctl runs (paths.docker_machine), if it is there."""
        exe = str(self.paths.docker_machine)
        return exe if self.executable(exe) else None

    @probe
    def docker_machine_version(self) -> str:
        return self.dm().version()

    @probe
    def machine_status(self) -> str:
        return self.dm().status(self.record().name)

    @probe
    def ssh(self, command: str):
        """``docker-machine ssh NAME COMMAND`` (read-only commands only)."""
        return self.dm().ssh(self.record().name, command, timeout=self.command_timeout)

    # ---- the Docker Engine (labctl.engine) ------------------------------------------------------
    @probe
    def engine_target(self):
        """How to reach the lab machine's engine: docker-machine's store (no subprocess)."""
        from labctl import engine

        return engine.target_from_store(self.record().name, self.dm().store)

    @probe
    def engine(self):
        """(client, version) for the lab engine, TLS verified, with doctor's short timeout."""
        from labctl import engine

        client = engine.connect(self.engine_target(), timeout=self.command_timeout)
        return client, engine.engine_version(client)

    @probe
    def engine_networks(self):
        from labctl import engine

        return engine.list_networks(self.engine()[0])

    @probe
    def containers(self) -> list[dict[str, Any]]:
        """Running containers (the SDK's low-level list: one request, no inspect per container)."""
        from labctl.errors import CommandFailed

        try:
            return list(self.engine()[0].api.containers())
        except Exception as exc:
            raise CommandFailed(f"cannot list the engine's containers: {exc}") from exc

    @probe
    def server_cert(self) -> dict[str, Any]:
        """The engine's server certificate from docker-machine's store, decoded by the ssl
        module: notAfter and subjectAltName."""
        import ssl

        rec = self.record()
        dm = self.dm()
        path = Path(dm.read_config(rec.name).server_cert or dm.machine_dir(rec.name) / "server.pem")
        if not path.is_file():
            path = dm.machine_dir(rec.name) / "server.pem"
        decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
        if decode is None:
            raise MalformedFile("this Python cannot decode certificates (ssl._test_decode_cert)")
        try:
            info = decode(str(path))
        except (OSError, ssl.SSLError) as exc:
            raise MalformedFile(f"cannot read the engine's certificate {path}: {exc}",
                                f"docker-machine regenerate-certs -f {rec.name}") from exc
        return {"path": str(path), **info}

    # ---- routes (labctl.routes' readers) ---------------------------------------------------------
    @probe
    def route_table(self):
        from labctl.routes.tables import read_table

        return read_table(self.paths, self.runner)

    @probe
    def route_records(self):
        from labctl.routes import records

        return records.for_machine(records.from_state(self.state()), self.target().machine)

    def driver(self) -> str:
        rec = self.target().record
        if rec is not None and rec.driver:
            return rec.driver
        from labctl.machine import default_driver

        return default_driver(self.platform)
