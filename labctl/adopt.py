"""Adopt a Linux VM the user installed: ``labctl up NAME --adopt PATH/TO/VM.vmx``.

On Apple Silicon (and anywhere boot2docker cannot run) the Docker host is a Ubuntu or Debian
VM the user installed in Fusion or Workstation.  docker-machine's ``generic`` driver
provisions such a host over SSH (facts in ``../shared/fixtures/docker-machine/
NOTES-generic-driver.md``); labctl gives it the lab around it:

  preflight (read-only) -> vmnet -> NIC (dedicated: ethernet1 in the user's .vmx, the VM
  shut down for the edit; existing: ethernet0's MAC) -> DHCP reservation -> ``vmrun start
  VMX nogui`` -> SSH answers on the fixed IP -> ``docker-machine create --driver generic
  --generic-ip-address FIXED …`` (so TLS names the fixed IP) -> the VM-side firewall rule ->
  routes -> docker context.

``down`` removes docker-machine's record (the generic driver's ``rm`` never touches the
host), labctl's NIC, reservation, routes and context, and leaves the VM powered as it found
it.  It never deletes the VM: the .vmx ends byte for byte as it was before ``up``.

The module keeps facts, plans and applying apart: :func:`read_vmx`, :func:`login_for`,
:func:`probe_ssh` and :func:`guest_os_problem` only read; :func:`plan_nic`,
:func:`plan_nic_removal` and :func:`create_argv` are pure; :class:`Adopter` runs the phases
on a :class:`labctl.converge.Converger` (its ``do`` prints a plan for ``--dry-run`` or applies
it) and is the only part that changes anything.
"""

from __future__ import annotations

import getpass
import os
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.errors import CommandFailed, CommandTimeout, Conflict, LabctlError, PreconditionMissing
from labctl.plan import Command, Plan, Step, WriteFile

if TYPE_CHECKING:
    from labctl.converge import Converger, Report
    from labctl.labspec import EngineNets, MachineSpec
    from labctl.runner import Runner
    from labctl.vmware.vmx import Vmx

GENERIC = "generic"
SSH_TIMEOUT = float(os.environ.get("LABCTL_SSH_TIMEOUT", "120"))
#: /etc/os-release IDs docker-machine 0.16.2 has a provisioner for (it matches ID only)
PROVISIONED = ("ubuntu", "debian", "centos", "fedora", "rhel", "ol", "opensuse", "opensuse-leap",
               "opensuse-tumbleweed", "sles", "arch", "coreos", "rancheros", "boot2docker")
DEFAULT_KEYS = ("id_ed25519", "id_rsa")
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]


# ---- facts (read-only) ------------------------------------------------------------------------
def read_vmx(path: Path) -> tuple[bytes, Vmx]:
    from labctl.vmware.vmx import Vmx

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise PreconditionMissing(
            f"no such .vmx: {path}; nothing was changed",
            "give the VM's configuration file, e.g. ~/Virtual Machines.localized/NAME.vmwarevm/"
            "NAME.vmx (Fusion) or ~/vmware/NAME/NAME.vmx (Workstation)") from exc
    except OSError as exc:
        raise PreconditionMissing(f"cannot read {path}: {exc.strerror}; nothing was changed",
                                  f"make it readable for {getpass.getuser()}") from exc
    return data, Vmx.parse(data)


@dataclass(frozen=True)
class Login:
    user: str
    key: Path


def login_for(m: MachineSpec, env: Mapping[str, str] | None = None) -> Login:
    """The SSH user and private key for the VM: ``ssh_user``/``ssh_key``, else the login name
    and ``~/.ssh/id_ed25519`` or ``~/.ssh/id_rsa``.  No key: PreconditionMissing."""
    env = os.environ if env is None else env
    user = m.ssh_user or getpass.getuser()
    home = Path(env.get("HOME") or Path.home())
    if m.ssh_key is not None:
        if not m.ssh_key.is_file():
            raise PreconditionMissing(
                f"no SSH key: {m.ssh_key} does not exist; nothing was changed",
                f"make one and put it on the VM: ssh-keygen -t ed25519 -f {shlex.quote(str(m.ssh_key))} "
                f"&& ssh-copy-id -i {shlex.quote(str(m.ssh_key))} {user}@VM-ADDRESS")
        return Login(user, m.ssh_key)
    for name in DEFAULT_KEYS:
        if (home / ".ssh" / name).is_file():
            return Login(user, home / ".ssh" / name)
    tried = " nor ".join(f"~/.ssh/{n}" for n in DEFAULT_KEYS)
    raise PreconditionMissing(
        f"no SSH key: neither {tried} exists and --ssh-key was not given; nothing was changed",
        f"ssh-keygen -t ed25519 && ssh-copy-id {user}@VM-ADDRESS, or pass --ssh-key PATH")


def ssh_argv(login: Login, ip: str, command: str, port: int = 22) -> list[str]:
    return ["ssh", *SSH_OPTIONS, "-i", str(login.key), "-p", str(port), f"{login.user}@{ip}", command]


def parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def photon_fix(vmx: Path) -> str:
    return ("adopt an Ubuntu or Debian VM instead; to get into this one as root, see "
            f"labctl photon reset-password {shlex.quote(str(vmx))}")


def guest_os_problem(vmx_path: Path, vmx: Vmx | None,
                     os_release: dict[str, str] | None) -> PreconditionMissing | None:
    """Why docker-machine 0.16.2 cannot provision this guest (its .vmx ``guestOS``, or its
    /etc/os-release once SSH answers), or None."""
    where = vmx_path.name
    guest = ((vmx.guest_os if vmx is not None else None) or "").lower()
    osid = (os_release or {}).get("ID", "").lower()
    if "photon" in guest or osid == "photon":
        return PreconditionMissing(
            f"{where} runs Photon OS, which docker-machine 0.16.2 cannot provision (it has no "
            "Photon OS provisioner); nothing was changed", photon_fix(vmx_path))
    if os_release is not None and osid not in PROVISIONED:
        pretty = os_release.get("PRETTY_NAME") or osid or "an unknown OS"
        return PreconditionMissing(
            f"{where} runs {pretty} (ID={osid or '?'}), which docker-machine 0.16.2 cannot "
            "provision; nothing was changed", "adopt an Ubuntu or Debian VM (arm64 or x86)")
    return None


@dataclass(frozen=True)
class SshAnswer:
    ok: bool
    os_release: dict[str, str] | None = None
    detail: str = ""  # why not (the last thing ssh said)
    refused_key: bool = False


def probe_ssh(runner: Runner, login: Login, ip: str, timeout: float) -> SshAnswer:
    """Until ``timeout``: does ``ssh USER@IP`` log in with the key?  Its /etc/os-release if so."""
    deadline = time.monotonic() + timeout
    detail = ""
    while True:
        try:
            r = runner.run(ssh_argv(login, ip, "cat /etc/os-release"), timeout=20, check=False)
        except CommandTimeout:
            r = None
            detail = "no answer"
        if r is not None:
            if r.ok:
                return SshAnswer(True, parse_os_release(r.stdout))
            lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
            detail = lines[-1] if lines else f"exit status {r.returncode}"
            if "Permission denied" in detail:
                return SshAnswer(False, None, detail, refused_key=True)
        if time.monotonic() >= deadline:
            return SshAnswer(False, None, detail)
        time.sleep(1.0)


def nic_of(vmx: Vmx, name: str) -> tuple[str, int]:
    """ethernet0's MAC and the vmnet it is on (--nic existing)."""
    from labctl.paths import parse_vmnet

    n0 = vmx.nic(0)
    if n0 is None or not n0.address:
        raise PreconditionMissing(f"{name}'s ethernet0 has no MAC yet (VMware writes one at first boot)",
                                  "start the VM once in VMware, then run labctl up again")
    kind = n0.connection_type or "nat"
    if kind == "nat":
        return n0.address, 8
    if kind == "hostonly":
        return n0.address, 1
    if kind == "custom" and n0.vnet:
        return n0.address, parse_vmnet(n0.vnet)
    raise Conflict(f"{name}'s ethernet0 is {kind}: VMware's DHCP does not serve it", "use --nic dedicated")


# ---- pure plans -------------------------------------------------------------------------------
def create_argv(name: str, ip: str, login: Login, engine_opts: list[str], port: int = 22) -> list[str]:
    """``docker-machine create --driver generic …`` (after the binary)."""
    from labctl.machine import create_argv as dm_create

    return dm_create(name, GENERIC, engine_opts=engine_opts,
                     extra=["--generic-ip-address", ip, "--generic-ssh-user", login.user,
                            "--generic-ssh-key", str(login.key), "--generic-ssh-port", str(port)])


# ---- applying: the phases on a Converger --------------------------------------------------------
class Adopter:
    """The adopt phases of ``up`` and ``down`` for one Converger run."""

    def __init__(self, conv: Converger) -> None:
        self.conv = conv
        self.paths = conv.paths
        self.runner = conv.runner
        self.ssh_timeout = SSH_TIMEOUT

    # -- vmrun --
    def running(self, vmx: Path) -> bool:
        from labctl.vmware import vmrun

        return vmrun.is_running(self.paths, vmx, self.runner)

    def guest_ip(self, vmx: Path, wait: float = 0.0) -> tuple[str | None, str]:
        from labctl.vmware import vmrun

        return vmrun.guest_ip(self.paths, vmx, self.runner, wait=wait)

    def _start(self, vmx: Path) -> None:
        from labctl.vmware import vmrun

        cmd = vmrun.start_command(self.paths, vmx, gui=False)
        r = self.runner.run(cmd.argv, timeout=cmd.timeout, check=False)
        if not r.ok:
            said = (r.stdout or r.stderr).strip().splitlines()
            raise CommandFailed(f"vmrun could not start {vmx}: {said[-1] if said else r.returncode}",
                                "start it in VMware and look at its console", argv=cmd.argv)

    def _stop(self, vmx: Path) -> None:
        from labctl.vmware import vmrun

        cmd = vmrun.stop_command(self.paths, vmx)
        r = self.runner.run(cmd.argv, timeout=cmd.timeout, check=False)
        if not r.ok and self.running(vmx):
            said = (r.stdout or r.stderr).strip().splitlines()
            raise CommandFailed(f"vmrun could not shut {vmx} down: {said[-1] if said else r.returncode}",
                                "shut it down in VMware, then run labctl again", argv=cmd.argv)

    def _vmrun_shown(self, verb: str, vmx: Path) -> Command:
        from labctl.vmware import vmrun

        return vmrun.stop_command(self.paths, vmx) if verb == "stop" else \
            vmrun.start_command(self.paths, vmx, gui=False)

    # -- preflight (read-only; a VM it powers on for the look is shut down again on refusal) --
    def preflight(self, m: MachineSpec) -> None:
        assert m.vmx is not None
        _, vmx = read_vmx(m.vmx)
        problem = guest_os_problem(m.vmx, vmx, None)
        if problem is not None:
            raise problem
        login = login_for(m)
        if m.nic == "dedicated" and not (os.access(m.vmx, os.W_OK) and os.access(m.vmx.parent, os.W_OK)):
            raise PreconditionMissing(
                f"{m.vmx} is not writable for {getpass.getuser()}, so labctl cannot add the lab NIC; "
                "nothing was changed", "make the VM folder yours (it is your VM), or use --nic existing")
        if not self.paths.vmrun.is_file():
            raise PreconditionMissing(f"vmrun not found at {self.paths.vmrun}",
                                      f"install {self.paths.product} (it starts the VM)")
        rec = self._record(m.name)
        was_running = self.running(m.vmx)
        power = rec.get("power_before") or ("running" if was_running else "stopped")
        self.conv._adopt_power[m.name] = power
        if not was_running and self.conv.dry_run:
            self.conv.show_plan(f"then: start {m.vmx.name} to check that {login.user}@… answers "
                                f"SSH with {login.key} (the dry run leaves it off)")
            return
        # a look, not a change: no progress lines (a refusal stays one line), and a VM powered
        # on for it is shut down again when labctl refuses
        if not was_running:
            self._start(m.vmx)
        try:
            self._look(m, login, rec)
        except LabctlError:
            if not was_running:
                self._stop(m.vmx)
            raise

    def _look(self, m: MachineSpec, login: Login, rec: dict[str, Any]) -> None:
        assert m.vmx is not None
        fixed = rec.get("ip") if rec.get("adopted") else None
        ip, said = self.guest_ip(m.vmx, wait=self.ssh_timeout)
        target = str(fixed) if fixed else ip
        where = f"its fixed IP {target}" if fixed else str(target)
        nothing = "; nothing was changed"
        if target is None:
            raise PreconditionMissing(
                f"{m.vmx.name} has no address VMware can see within {self.ssh_timeout:g} s "
                f"(vmrun getGuestIPAddress: {said}){nothing}",
                "install open-vm-tools in the VM (VMware Tools report its address), or look at "
                "its console; LABCTL_SSH_TIMEOUT=SECONDS waits longer")
        answer = probe_ssh(self.runner, login, target, self.ssh_timeout)
        if not answer.ok:
            if answer.refused_key:
                raise PreconditionMissing(
                    f"SSH to {login.user}@{target} refused the key {login.key} ({answer.detail}){nothing}",
                    f"put the key on the VM: ssh-copy-id -i {shlex.quote(str(login.key))} "
                    f"{login.user}@{target}, or pass --ssh-user/--ssh-key")
            raise PreconditionMissing(
                f"SSH to {login.user}@{where} did not answer within {self.ssh_timeout:g} s "
                f"(vmrun getGuestIPAddress sees {said}){nothing}",
                f"check that the VM runs sshd (sudo apt-get install openssh-server) and that "
                f"{login.key}.pub is in ~{login.user}/.ssh/authorized_keys there; "
                "LABCTL_SSH_TIMEOUT=SECONDS waits longer")
        problem = guest_os_problem(m.vmx, None, answer.os_release)
        if problem is not None:
            raise problem

    def _record(self, name: str) -> dict[str, Any]:
        from labctl import state as labstate

        rec = labstate.load(self.paths).get("machines", {}).get(name) or {}
        return rec if isinstance(rec, dict) else {}

    # -- up --
    def up_one(self, m: MachineSpec, nets: EngineNets) -> Report:
        from labctl import nic
        from labctl.converge import Report

        conv = self.conv
        assert m.vmx is not None
        vmx_path = m.vmx
        login = login_for(m)
        report = Report(m.name, nic=m.nic)
        before = conv.changes
        power = conv._adopt_power.get(m.name) or self._record(m.name).get("power_before") or "stopped"
        if m.nic == "dedicated":
            vmnet = conv.ensure_vmnet(m)
            mac = nic.mac_for(m.name)
        else:
            mac, vmnet = nic_of(read_vmx(vmx_path)[1], m.name)
        # first of all, labctl's record: should a later step fail, `down` knows this is a VM it
        # adopted (never to be removed) and how it was powered before
        conv._record_if_changed(m.name, {"adopted": True, "vmx": str(vmx_path), "driver": GENERIC,
                                         "power_before": power, "nic": m.nic,
                                         "ssh_user": login.user, "ssh_key": str(login.key)})
        if m.nic == "dedicated":
            self.ensure_nic(m, vmnet, mac)
        ip = conv.ensure_reservation(m, vmnet, mac)
        self.ensure_running_with_ip(m, login, ip)
        self.ensure_machine(m, nets, ip, login)
        firewall = self.open_path(m, ip, vmnet)
        cas = conv.ensure_ca(m)  # update-ca-certificates on the user's Ubuntu/Debian VM
        report.vmnet, report.mac, report.fixed_ip = vmnet, mac, ip
        report.routes = conv.ensure_routes(m, ip)
        if conv.persist:
            conv.ensure_persist(m.name, ip, vmnet)
        report.context = conv.ensure_context(m.name)
        record: dict[str, Any] = {"vmnet": vmnet, "mac": mac, "ip": ip,
                                  "engine": {"bip": str(nets.bip), "pool": str(nets.pool)}}
        if firewall is not None:
            record["firewall"] = firewall
        if cas:  # up adds CAs; labctl down removes all of them
            record["ca_certs"] = sorted(set(self._record(m.name).get("ca_certs") or []) | set(cas))
        if conv.dry_run:
            if any(self._record(m.name).get(k) != v for k, v in record.items()):
                conv.changes += 1
        else:
            conv._record_if_changed(m.name, record)
            report.state = "Running"
            report.machine_ip = ip
        report.changes = conv.changes - before
        return report

    def ensure_nic(self, m: MachineSpec, vmnet: int, mac: str) -> None:
        """labctl's ethernet1 on the vmnet in the user's .vmx, written while the VM is off."""
        from labctl import nic

        assert m.vmx is not None
        path = m.vmx
        old, vmx = read_vmx(path)
        new = nic.plan_nic(vmx, vmnet, mac)
        if new == old:
            return
        plan = Plan(f"dedicated NIC for {m.name}")
        if self.conv.dry_run or self.running(path):
            plan.add(Step(f"shut {path.name} down so its .vmx can be edited (vmrun stop soft)",
                          lambda ctx: self._stop(path), shown=[self._vmrun_shown("stop", path)]))
        plan.add(WriteFile(path, old, new, privileged=False,
                           description=f"add ethernet1 ({mac}) on vmnet{vmnet} to {path}"))
        self.conv.do(plan)

    def ensure_running_with_ip(self, m: MachineSpec, login: Login, ip: str) -> None:
        """The VM runs and answers SSH on its fixed IP (started, or restarted when it holds
        another address, as after a new reservation of ethernet0)."""
        conv = self.conv
        assert m.vmx is not None
        running = self.running(m.vmx)
        if running and probe_ssh(self.runner, login, ip, 0).ok:
            return
        if conv.dry_run:
            conv.show_plan(f"then: {'restart' if running else 'start'} {m.vmx.name} (vmrun, nogui) "
                           f"and wait until SSH answers on {ip}")
            return
        conv.changes += 1
        verb = "restart" if running else "start"
        with conv._progress(f"{verb} {m.vmx.name} and wait until SSH answers on {ip}"):
            if running:
                self._stop(m.vmx)
            self._start(m.vmx)
            answer = probe_ssh(self.runner, login, ip, conv.ip_timeout)
        if not answer.ok:
            _, said = self.guest_ip(m.vmx)
            raise CommandFailed(
                f"SSH to {login.user}@{ip} (the fixed IP) did not answer within {conv.ip_timeout:g} s "
                f"(vmrun getGuestIPAddress sees {said}): {answer.detail or 'no answer'}",
                f"run labctl doctor {m.name}; then labctl up {m.name} again (it resumes)")

    def ensure_machine(self, m: MachineSpec, nets: EngineNets, ip: str, login: Login) -> None:
        """docker-machine's record of the host, provisioned by the generic driver for the
        fixed IP (its TLS certificate names that address)."""
        conv = self.conv
        dm = conv.dm
        if dm.exists(m.name):
            cfg = dm.read_config(m.name)
            if cfg.driver != GENERIC or cfg.ip_address != ip:
                raise Conflict(f"a docker-machine named {m.name} already exists ({cfg.driver}, "
                               f"{cfg.ip_address or 'no address'}), not the adopted VM at {ip}",
                               f"use another name, or remove it: docker-machine rm -y {m.name}")
            return
        argv = create_argv(m.name, ip, login, nets.engine_opts())

        def create(ctx: Any) -> None:
            try:
                dm.run(*argv, name=m.name, timeout=900)
            except LabctlError:
                if dm.exists(m.name):  # the generic driver's rm removes only the record
                    dm.rm(m.name, force=True, missing_ok=True)
                raise
            conv._states[m.name] = "Running"

        plan = Plan(f"provision {m.name}")
        plan.add(Step(f"provision {m.vmx.name if m.vmx else m.name} as the docker-machine {m.name} "
                      f"(generic driver, {ip}, engine {nets.bip}, pool {nets.pool})", create,
                      shown=[Command([str(dm.binary), *argv])]))
        plan.add(conv._record_step(m.name, {"engine": {"bip": str(nets.bip), "pool": str(nets.pool)}}))
        conv.do(plan)

    def open_path(self, m: MachineSpec, ip: str, vmnet: int) -> dict[str, Any] | None:
        """The VM-side firewall rule (labctl.vmpath): routed traffic from the vmnet reaches the
        containers."""
        if self.conv.dry_run and not self.conv.dm.exists(m.name):
            self.conv.show_plan(f"then: accept traffic from vmnet{vmnet} on {m.name}'s lab NIC in "
                                "DOCKER-USER (now, and at every boot)")
            return None
        return self.conv.ensure_vm_path(m.name, ip, vmnet)

    # -- down --
    def teardown(self, name: str, rec: dict[str, Any]) -> None:
        """After routes, context and reservation are gone: docker-machine's record, labctl's
        NIC in the .vmx, the VM's power as before ``up``.  The VM itself stays."""
        from labctl import nic

        conv = self.conv
        dm = conv.dm
        if dm.exists(name):
            plan = Plan(f"forget {name} in docker-machine")
            plan.add(Step(f"remove docker-machine's record of {name} (generic driver: the VM stays)",
                          lambda ctx: dm.rm(name, force=True, missing_ok=True),
                          shown=[Command([str(dm.binary), "rm", "-y", "-f", name])]))
            conv.do(plan)
        vmx_path = Path(str(rec.get("vmx") or ""))
        if not rec.get("vmx") or not vmx_path.is_file():
            conv.say(f"note: {name}'s .vmx {vmx_path} is gone; nothing to undo in it")
            return
        keep_on = rec.get("power_before") == "running"
        old, vmx = read_vmx(vmx_path)
        new = old
        if rec.get("nic") == "dedicated" and rec.get("mac"):
            new = nic.plan_nic_removal(vmx, str(rec["mac"]))
        running = self.running(vmx_path)
        plan = Plan(f"give {vmx_path.name} back as it was")
        if new != old:
            if running or conv.dry_run:
                plan.add(Step(f"shut {vmx_path.name} down so its .vmx can be edited (vmrun stop soft)",
                              lambda ctx: self._stop(vmx_path), shown=[self._vmrun_shown("stop", vmx_path)]))
            plan.add(WriteFile(vmx_path, old, new, privileged=False,
                               description=f"remove ethernet1 (labctl's) from {vmx_path}"))
            if running and keep_on:
                plan.add(Step(f"start {vmx_path.name} again (it was running before labctl up)",
                              lambda ctx: self._start(vmx_path),
                              shown=[self._vmrun_shown("start", vmx_path)]))
        elif running and not keep_on:
            plan.add(Step(f"shut {vmx_path.name} down (it was off before labctl up)",
                          lambda ctx: self._stop(vmx_path), shown=[self._vmrun_shown("stop", vmx_path)]))
        conv.do(plan)


def is_adopted(rec: Mapping[str, Any]) -> bool:
    return bool(rec.get("adopted"))

