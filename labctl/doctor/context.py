"""The probe context shared by every doctor check: labctl's facts layer (:mod:`labctl.facts`,
the same probes ``up``, ``down``, ``status`` and ``route`` read) with doctor's target (which
machine and vmnet to examine) and a few host probes only doctor needs.

Probes are memoised per doctor run and capped at doctor's short command timeout.  Probes
about "the" machine (``record()``, ``vmx()``, ``machine_status()``, ...) are about the target
machine.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import MalformedFile
from labctl.facts import BoundedRunner, Facts, MachineRecord, ServerCert, probe
from labctl.paths import Paths

__all__ = ["BoundedRunner", "CommandAnswer", "Context", "MachineRecord", "Target"]



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


class Context(Facts):
    """Probes for one doctor run.  ``machine``/``vmnet`` come from the command line."""

    def __init__(self, paths: Paths, *, machine: str | None = None, vmnet: str | None = None,
                 command_timeout: float = 1.5, env: dict[str, str] | None = None) -> None:
        super().__init__(paths, machine=machine, command_timeout=command_timeout, env=env)
        self.vmnet_arg = vmnet
        self.command_timeout: float = command_timeout
        self.probe_image = "busybox:latest"  # doctor --probe's throw-away container
        self.registry_ref = "docker.io/library/busybox:latest"  # doctor --registry

    # ---- the host -----------------------------------------------------------------------------
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
    def hypervisor_install(self) -> Path | None:
        """The Fusion app bundle, or Workstation's install dir/binary; None when absent."""
        return self.paths.hypervisor.install_location()

    @probe
    def hypervisor_version(self) -> str | None:
        """Fusion: Info.plist CFBundleShortVersionString; Workstation: /etc/vmware/config."""
        return self.paths.hypervisor.version()

    @probe
    def executable(self, path: str) -> bool:
        import os

        p = Path(path)
        return p.is_file() and os.access(p, os.X_OK)

    @probe
    def which(self, name: str) -> str | None:
        import os

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
    def target(self) -> Target:
        from labctl.paths import parse_vmnet

        machines = self.recorded_machines()
        name = self.machine_arg
        if name is None and len(machines) == 1:
            name = machines[0]
        record = self.machine_record(name) if name is not None else None
        vmnet: int | None = None
        error: Exception | None = None
        try:
            if self.vmnet_arg:
                vmnet = parse_vmnet(self.vmnet_arg)
            elif record is not None and self.machine_vmnet(record.name) is not None:
                vmnet = self.machine_vmnet(record.name)
            else:
                vmnet = self.paths.hypervisor.resolve_network(None)
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

    # ---- VMware files of the target ----------------------------------------------------------------
    def networking(self) -> Any:
        return self.networking_file()[1]

    def vmnet(self) -> Any:
        """The lab vmnet's entry in the networking file, or None."""
        return self.networking().get(self.vmnet_number())

    def dhcpd(self) -> Any:
        return self.dhcpd_file(self.vmnet_number())[1]

    @probe
    def leases(self, path: Path) -> Any:
        from labctl.text import read

        return self.paths.hypervisor.parse_leases(read(path, "DHCP leases file"))

    def vmx(self) -> Any:
        return self.vmx_file(self.record().name).vmx

    @probe
    def reservation(self) -> Any:
        """The lab machine's host block: by its name, else by its MAC; None when absent."""
        rec = self.record()
        conf = self.dhcpd()
        host = conf.host(rec.name)
        if host is None and rec.mac:
            host = next((h for h in conf.hosts if rec.mac in h.macs), None)
        return host

    # ---- VMware tools ------------------------------------------------------------------------
    @probe
    def network_status(self) -> Any:
        """``vmnet-cli --status`` / ``vmware-networks --status``, parsed."""
        cmd = self.paths.hypervisor.status_command()
        answer = self.run(*cmd.argv)
        return answer, self.paths.hypervisor.parse_status(answer.stdout)

    @probe
    def host_adapter(self) -> Any:
        """The host side of the lab vmnet, found by its subnet (vmnetN, or bridge10x on macOS
        11+); None when no interface is on it now."""
        from labctl.hostinfo import host_adapter

        v = self.vmnet()
        return host_adapter(v) if v is not None else None

    # ---- docker-machine, about the target machine ----------------------------------------------
    @probe
    def docker_machine(self) -> str | None:
        """The docker-machine labctl runs (paths.docker_machine), if it is there."""
        exe = str(self.paths.docker_machine)
        return exe if self.executable(exe) else None

    @probe
    def docker_machine_version(self) -> str:
        return str(self.dm().version())

    def machine_status(self, name: str | None = None) -> str:
        return super().machine_status(name or self.record().name)

    @probe
    def ssh(self, command: str) -> Any:
        """``docker-machine ssh NAME COMMAND`` (read-only commands only)."""
        return self.dm().ssh(self.record().name, command, timeout=self.command_timeout)

    # ---- the Docker Engine of the target machine ----------------------------------------------
    def engine_target(self, name: str | None = None) -> Any:
        return super().engine_target(name or self.record().name)

    def prefetch(self, check_ids: set[str]) -> None:
        """Start, in the background, the slow probes that checks further down the graph will
        ask for: docker-machine's status and the VM's one-ssh probe need only the machine's
        name, so the graph's chain (installed, exists, running, then the VM's own checks)
        need not be a chain of tool calls.  Both are read-only; an answer nobody asks for
        (the machine turned out to be stopped) is ignored, and an error is kept for the check
        that asks."""
        wanted: list[Callable[[], Any]] = []
        if "machine.running" in check_ids:
            wanted.append(self.machine_status)
        if check_ids & {"machine.address", "forwarding.ip_forward", "forwarding.firewall"}:
            wanted.append(self.vm_firewall)
        for fn in wanted:
            threading.Thread(target=_quietly, args=(fn,), daemon=True,
                             name=f"doctor:prefetch:{fn.__name__}").start()

    @probe
    def vm_firewall(self) -> Any:
        """The VM's firewall and boot files (labctl.vmpath's one-ssh probe, parsed)."""
        from labctl import vmpath

        return vmpath.parse_probe(self.ssh(vmpath.probe_script()).stdout)

    def engine(self, name: str | None = None) -> Any:
        return super().engine(name or self.record().name)

    def engine_networks(self, name: str | None = None) -> list[Any]:
        return super().engine_networks(name or self.record().name)

    @probe
    def containers(self) -> list[dict[str, Any]]:
        """Running containers (one request, no inspect per container)."""
        return self.engine()[0].containers()

    def server_cert(self, name: str | None = None) -> ServerCert:
        return super().server_cert(name or self.record().name)

    # ---- routes --------------------------------------------------------------------------------
    def route_records(self) -> list[Any]:
        return self.routes_of(self.target().machine)

    def driver(self) -> str:
        rec = self.target().record
        if rec is not None and rec.driver:
            return rec.driver
        from labctl.machine import default_driver

        return default_driver(self.platform)


def _quietly(fn: Callable[[], Any]) -> None:
    """Run a prefetch: what it raises is the business of the check that asks (kept by the
    probe's memo when it is one), never of the background thread."""
    with contextlib.suppress(BaseException):
        fn()
