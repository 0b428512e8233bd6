"""The typed Changes of a lab plan (``up`` and ``down``).

Each describes itself in a sentence, shows its exact commands (and a diff for a file edit)
and applies through the executor (:func:`labctl.plan.execute`).  Changes that drive
docker-machine find the adapter in the execution context (``ctx.data["dm"]``, set by the
loop in :mod:`labctl.converge`).  A Change built against values a dry run only knows as
:class:`~labctl.world.Later` prints fine but cannot be applied (real runs never build one).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import CommandFailed, LabctlError
from labctl.plan import Change, Command, ExecContext, Step, WriteFile, unified_diff

IP_TIMEOUT = float(os.environ.get("LABCTL_IP_TIMEOUT", "180"))


def _dm(ctx: ExecContext) -> Any:
    dm = ctx.data.get("dm")
    if dm is None:  # pragma: no cover - the loop always sets it
        raise LabctlError("internal: no docker-machine adapter for this plan")
    return dm


def _known(value: Any) -> bool:
    from labctl.world import Later

    return not isinstance(value, Later)


def _dm_cmd(binary: str, *args: str) -> Command:
    return Command([binary, *args])


# ---- files ---------------------------------------------------------------------------------------
@dataclass
class FileEdit(Change):
    """Replace a file (atomically, backup first) with new bytes; shown as a diff.  Either side
    may be a Later in a dry run (the file does not exist yet, or its content depends on a
    value learnt later): then no diff is shown."""

    path: Path
    old: Any  # bytes | None | Later
    new: Any  # bytes | Later
    description: str = ""
    privileged: bool = True
    validate: Callable[[bytes], None] | None = None

    def diff(self) -> str:
        if _known(self.old) and _known(self.new):
            return unified_diff(self.path, self.old, self.new)
        return ""

    def apply(self, ctx: ExecContext) -> None:
        if not (_known(self.old) and _known(self.new)):
            raise LabctlError(f"internal: {self.description} was planned without the file's content")
        WriteFile(self.path, self.old, self.new, self.description, self.privileged,
                  self.validate).apply(ctx)


@dataclass
class EditVmx(FileEdit):
    """Add or remove labctl's NIC in a VM's .vmx (the VM is stopped)."""

    privileged: bool = False


@dataclass
class Reserve(FileEdit):
    """Add (or update) labctl's host block for a machine in a vmnet's dhcpd.conf."""


@dataclass
class Release(FileEdit):
    """Remove labctl's host block for a machine from a vmnet's dhcpd.conf."""


class Record(Step):
    """An update of labctl's own records (state.json)."""


def record(paths: Any, description: str, mutate: Callable[[dict[str, Any]], None]) -> Record:
    from labctl import state as labstate

    step = labstate.update_step(paths, description, mutate)
    return Record(description=step.description, fn=step.fn, privileged=step.privileged, quiet=True)


# ---- VMware networking ----------------------------------------------------------------------------
@dataclass
class RestartNetworking(Change):
    """Restart the hypervisor's virtual networking (running VMs lose their network for a few
    seconds); the lease files of the vmnets involved are backed up first."""

    paths: Any
    vmnets: tuple[int, ...]
    cmds: list[Command]
    description: str = ""
    privileged: bool = True

    def default_description(self) -> str:
        return (f"restart {self.paths.hypervisor.product} networking (running VMs lose their "
                "network for a few seconds)")

    def commands(self) -> list[Command]:
        return self.cmds

    def apply(self, ctx: ExecContext) -> None:
        for n in self.vmnets:
            self.paths.hypervisor.lease_backup_step(n).apply(ctx)
        for c in self.cmds:
            ctx.runner.run(c.argv, sudo=c.sudo, timeout=c.timeout)


# ---- docker-machine ---------------------------------------------------------------------------------
@dataclass
class CreateMachine(Change):
    """``docker-machine create``; a create that fails half-way is removed again, so the next
    ``up`` starts clean."""

    name: str
    driver: str
    argv: list[str]
    cpus: int | None = None
    memory: int | None = None
    disk: int | None = None
    engine_opts: list[str] = field(default_factory=list)
    description: str = ""
    privileged: bool = False
    # --engine-env / --engine-registry-mirror / --engine-insecure-registry (labctl.engineconf)
    engine_flags: list[str] = field(default_factory=list)

    def commands(self) -> list[Command]:
        return [Command(self.argv)]

    def apply(self, ctx: ExecContext) -> None:
        import contextlib

        dm = _dm(ctx)
        try:
            dm.create(self.name, self.driver, cpus=self.cpus, memory=self.memory, disk=self.disk,
                      engine_opts=self.engine_opts, extra=self.engine_flags)
        except LabctlError:
            if dm.exists(self.name):
                with contextlib.suppress(LabctlError):
                    dm.rm(self.name, force=True, missing_ok=True)
            raise


@dataclass
class RemoveMachine(Change):
    name: str
    binary: str
    description: str = ""
    privileged: bool = False

    def default_description(self) -> str:
        return f"remove the docker-machine {self.name} and its VM"

    def commands(self) -> list[Command]:
        return [_dm_cmd(self.binary, "rm", "-y", "-f", self.name)]

    def apply(self, ctx: ExecContext) -> None:
        _dm(ctx).rm(self.name, force=True, missing_ok=True)


@dataclass
class StopVM(Change):
    name: str
    binary: str
    description: str = ""
    privileged: bool = False

    def default_description(self) -> str:
        return f"stop {self.name}"

    def commands(self) -> list[Command]:
        return [_dm_cmd(self.binary, "stop", self.name)]

    def apply(self, ctx: ExecContext) -> None:
        _dm(ctx).stop(self.name)


def guest_holds(dm: Any, name: str, ip: str) -> bool:
    """Whether the guest holds ``ip`` on some interface (``docker-machine ssh``)."""
    try:
        out = dm.ssh(name, ["ip", "-4", "-o", "addr", "show"], timeout=20).stdout
    except LabctlError:
        return False
    return any(f" {ip}/" in line for line in out.splitlines())


@dataclass
class StartVM(Change):
    """Start the VM (``restart``: stop it first, so DHCP hands out the reservation) and, with
    ``wait_ip``, wait until the guest holds that address."""

    name: str
    binary: str
    wait_ip: Any = None  # str | Later | None
    restart: bool = False
    timeout: float = field(default_factory=lambda: IP_TIMEOUT)
    description: str = ""
    privileged: bool = False

    def default_description(self) -> str:
        verb = "restart" if self.restart else "start"
        wait = f" and wait until it holds {self.wait_ip}" if self.wait_ip is not None else ""
        return f"{verb} {self.name}{wait}"

    def commands(self) -> list[Command]:
        cmds = [_dm_cmd(self.binary, "stop", self.name)] if self.restart else []
        return [*cmds, _dm_cmd(self.binary, "start", self.name)]

    def apply(self, ctx: ExecContext) -> None:
        dm = _dm(ctx)
        if self.restart:
            dm.stop(self.name)
        dm.start(self.name)
        if self.wait_ip is None:
            return
        deadline = time.monotonic() + self.timeout
        while not guest_holds(dm, self.name, str(self.wait_ip)):
            if time.monotonic() > deadline:
                raise CommandFailed(
                    f"{self.name} did not take its fixed address {self.wait_ip} within {self.timeout:g} s",
                    f"run labctl doctor {self.name}; then labctl up {self.name} again (it resumes)")
            time.sleep(1.0)


@dataclass
class RegenerateCerts(Change):
    """New TLS certificates for the engine's address (docker-machine restarts dockerd)."""

    name: str
    binary: str
    ip: Any
    description: str = ""
    privileged: bool = False

    def default_description(self) -> str:
        return f"regenerate {self.name}'s TLS certificates for {self.ip}"

    def commands(self) -> list[Command]:
        return [_dm_cmd(self.binary, "regenerate-certs", "--force", self.name)]

    def apply(self, ctx: ExecContext) -> None:
        _dm(ctx).regenerate_certs(self.name, force=True)


# ---- the docker CLI -----------------------------------------------------------------------------------
@dataclass
class DockerContext(Change):
    """``docker context create|update NAME`` pointing at the machine's engine with its TLS files."""

    name: str
    verb: str  # create | update
    host: Any  # tcp://IP:2376 (str | Later)
    ca: str
    cert: str
    key: str
    description: str = ""
    privileged: bool = False

    def default_description(self) -> str:
        return f"{self.verb} docker context {self.name} ({self.host})"

    def argv(self) -> list[str]:
        return ["docker", "context", self.verb, self.name, "--description", f"labctl machine {self.name}",
                "--docker", f"host={self.host},ca={self.ca},cert={self.cert},key={self.key}"]

    def commands(self) -> list[Command]:
        return [Command(self.argv(), timeout=30)]

    def apply(self, ctx: ExecContext) -> None:
        if not _known(self.host):
            raise LabctlError(f"internal: {self.description} was planned without the engine's address")
        ctx.runner.run(self.argv(), timeout=30)


@dataclass
class RemoveContext(Change):
    name: str
    description: str = ""
    privileged: bool = False

    def default_description(self) -> str:
        return f"remove docker context {self.name}"

    def commands(self) -> list[Command]:
        return [Command(["docker", "context", "rm", "-f", self.name], timeout=30)]

    def apply(self, ctx: ExecContext) -> None:
        ctx.runner.run(self.commands()[0].argv, timeout=30)


# ---- routes (dry run: a machine whose engine is not there yet) -----------------------------------------
@dataclass
class RouteBatchLater(Change):
    """Routes to an engine's networks that a dry run cannot list yet (the engine does not run)."""

    description: str
    privileged: bool = True

    def apply(self, ctx: ExecContext) -> None:
        raise LabctlError(f"internal: {self.description} was planned without the engine's networks")


# ---- the VM's firewall (labctl.vmpath) ------------------------------------------------------------
@dataclass
class VmPath(Change):
    """A command line run in the VM through ``docker-machine ssh`` (labctl's DOCKER-USER rule
    and its boot-time copy), shown exactly, with the diff of the VM file it edits."""

    name: str
    command: str
    binary: str
    description: str = ""
    vm_path: str = ""
    vm_old: str | None = None
    vm_new: str | None = None
    privileged: bool = False  # root in the VM, not on the desktop

    @classmethod
    def of(cls, name: str, change: Any, binary: str) -> VmPath:
        """From labctl.vmpath's planned change."""
        return cls(name, change.command, binary, change.description, change.vm_path, change.vm_old,
                   change.vm_new)

    def commands(self) -> list[Command]:
        return [Command([self.binary, "ssh", self.name, self.command])]

    def diff(self) -> str:
        from pathlib import PurePosixPath

        if not self.vm_path or self.vm_old == self.vm_new:
            return ""
        return unified_diff(PurePosixPath(self.vm_path),  # type: ignore[arg-type]
                            None if self.vm_old is None else self.vm_old.encode(),
                            None if self.vm_new is None else self.vm_new.encode())

    def apply(self, ctx: ExecContext) -> None:
        _dm(ctx).ssh(self.name, self.command, timeout=60)


class VmEngineRestart(VmPath):
    """A command in the VM that ends by restarting its engine: done once the engine answers
    again (boot2docker's init script returns before dockerd listens)."""

    def apply(self, ctx: ExecContext) -> None:
        super().apply(ctx)
        wait_for_engine(_dm(ctx), self.name)


def wait_for_engine(dm: Any, name: str, timeout: float = 90.0) -> None:
    from labctl import engine

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            engine.read(engine.target_from_store(name, dm.store), timeout=5).close()
            return
        except LabctlError as exc:
            last = exc.message
        time.sleep(0.5)
    raise LabctlError(f"{name}'s engine did not answer within {timeout:g} s after its restart: {last}",
                      f"docker-machine ssh {name} to look, then run labctl up again")


@dataclass
class VmPathLater(Change):
    """The VM-side rule, for a VM whose firewall a dry run cannot read yet (it does not run)."""

    description: str
    privileged: bool = False

    def apply(self, ctx: ExecContext) -> None:
        raise LabctlError(f"internal: {self.description} was planned without the VM's firewall")


@dataclass
class VmCaLater(Change):
    """CA certificates for a VM whose CA store a dry run cannot read yet (it does not run)."""

    description: str
    privileged: bool = False

    def apply(self, ctx: ExecContext) -> None:
        raise LabctlError(f"internal: {self.description} was planned without the VM's CA store")


@dataclass
class VmEngineLater(Change):
    """The engine's settings for a VM a dry run cannot read yet (it does not run)."""

    description: str
    privileged: bool = False

    def apply(self, ctx: ExecContext) -> None:
        raise LabctlError(f"internal: {self.description} was planned without the VM's engine settings")


# ---- a VM labctl adopts (labctl.adopt): vmrun and docker-machine's generic driver ---------------
def _vmrun_run(paths: Any, cmd: Command, ctx: ExecContext, what: str) -> None:
    r = ctx.runner.run(cmd.argv, timeout=cmd.timeout, check=False)
    if not r.ok:
        said = (r.stdout or r.stderr).strip().splitlines()
        raise CommandFailed(f"vmrun could not {what}: {said[-1] if said else r.returncode}",
                            "do it in VMware and look at the VM's console, then run labctl again",
                            argv=cmd.argv)


@dataclass
class VmrunStop(Change):
    """``vmrun stop VMX soft``: the guest shuts down cleanly."""

    paths: Any
    vmx: Path
    description: str = ""
    privileged: bool = False

    def commands(self) -> list[Command]:
        return [self.paths.hypervisor.stop_command(self.vmx)]

    def apply(self, ctx: ExecContext) -> None:
        cmd = self.commands()[0]
        r = ctx.runner.run(cmd.argv, timeout=cmd.timeout, check=False)
        if not r.ok and self.paths.hypervisor.is_running(self.vmx, ctx.runner):
            said = (r.stdout or r.stderr).strip().splitlines()
            raise CommandFailed(f"vmrun could not shut {self.vmx} down: {said[-1] if said else r.returncode}",
                                "shut it down in VMware, then run labctl again", argv=cmd.argv)


@dataclass
class VmrunStart(Change):
    """``vmrun start VMX nogui`` (``restart``: stop it first) and, with ``login``, wait until
    SSH answers on ``wait_ip``."""

    paths: Any
    vmx: Path
    name: str = ""
    wait_ip: str | None = None
    login: Any = None  # labctl.adopt.Login
    restart: bool = False
    timeout: float = field(default_factory=lambda: IP_TIMEOUT)
    description: str = ""
    privileged: bool = False

    def commands(self) -> list[Command]:
        hv = self.paths.hypervisor
        start = hv.start_command(self.vmx, gui=False)
        return [hv.stop_command(self.vmx), start] if self.restart else [start]

    def apply(self, ctx: ExecContext) -> None:
        from labctl import adopt

        hv = self.paths.hypervisor

        if self.restart:
            VmrunStop(self.paths, self.vmx).apply(ctx)
        _vmrun_run(self.paths, hv.start_command(self.vmx, gui=False), ctx,
                   f"start {self.vmx}")
        if self.wait_ip is None or self.login is None:
            return
        answer = adopt.probe_ssh(ctx.runner, self.login, self.wait_ip, self.timeout)
        if not answer.ok:
            _, said = hv.guest_ip(self.vmx, ctx.runner)
            raise CommandFailed(
                f"SSH to {self.login.user}@{self.wait_ip} (the fixed IP) did not answer within "
                f"{self.timeout:g} s (vmrun getGuestIPAddress sees {said}): {answer.detail or 'no answer'}",
                f"run labctl doctor {self.name}; then labctl up {self.name} again (it resumes)")


@dataclass
class GenericCreate(Change):
    """``docker-machine create --driver generic``: docker-machine's record of a VM labctl
    adopts, provisioned over SSH for its fixed IP (its TLS certificate names that address).
    A create that fails half-way leaves no record."""

    name: str
    argv: list[str]  # after the binary
    binary: str
    description: str = ""
    privileged: bool = False

    def commands(self) -> list[Command]:
        return [Command([self.binary, *self.argv])]

    def apply(self, ctx: ExecContext) -> None:
        import contextlib

        dm = _dm(ctx)
        try:
            dm.run(*self.argv, name=self.name, timeout=900)
        except LabctlError:
            if dm.exists(self.name):  # the generic driver's rm removes only the record
                with contextlib.suppress(LabctlError):
                    dm.rm(self.name, force=True, missing_ok=True)
            raise
