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

The module only reads and computes: :func:`read_vmx`, :func:`login_for`, :func:`probe_ssh`,
:func:`guest_os_problem` and :func:`preflight` read (the preflight's look may power the VM on
and off again), :func:`create_argv` is pure.  The phases are the planner's
(:mod:`labctl.planner`, ``ADOPT_PHASES``); their changes are in :mod:`labctl.changes`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.errors import CommandFailed, CommandTimeout, LabctlError, PreconditionMissing
from labctl.plan import Command

if TYPE_CHECKING:
    from labctl.hypervisor.base import VmConfig as Vmx
    from labctl.labspec import MachineSpec
    from labctl.paths import Paths
    from labctl.runner import Runner

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
    from labctl import hypervisor

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
    return data, hypervisor.driver().parse_vm_config(data)


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


# ---- pure plans -------------------------------------------------------------------------------
def create_argv(name: str, ip: str, login: Login, engine_opts: list[str], port: int = 22,
                engine_flags: list[str] | None = None) -> list[str]:
    """``docker-machine create --driver generic …`` (after the binary); ``engine_flags``:
    --engine-env and the like (labctl.engineconf.create_flags)."""
    from labctl.machine import create_argv as dm_create

    return dm_create(name, GENERIC, engine_opts=engine_opts,
                     extra=[*(engine_flags or []), "--generic-ip-address", ip, "--generic-ssh-user",
                            login.user, "--generic-ssh-key", str(login.key), "--generic-ssh-port", str(port)])


# ---- the look before anything changes (preflight) ---------------------------------------------------
def preflight(paths: Paths, runner: Runner, m: MachineSpec, recorded: Mapping[str, Any],
              power_on: bool = True, timeout: float | None = None) -> tuple[str, bool]:
    """Everything that can be checked before the first change: the .vmx, the guest OS, the SSH
    key, the VM folder writable (dedicated NIC), vmrun; then a look at the VM: SSH answers
    with the key on its address, and the guest is one docker-machine can provision.  A VM off
    for the look is powered on for it (``power_on``; else the look is left out) and shut down
    again if labctl refuses.  Returns how the VM was powered before ("running"/"stopped") and
    whether the look was made."""
    hv = paths.hypervisor
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
    if not paths.hypervisor.vmrun.is_file():
        raise PreconditionMissing(f"vmrun not found at {paths.hypervisor.vmrun}",
                                  f"install {paths.hypervisor.product} (it starts the VM)")
    was_running = hv.is_running(m.vmx, runner)
    power = str(recorded.get("power_before") or ("running" if was_running else "stopped"))
    if not was_running and not power_on:
        return power, False
    if not was_running:  # a look, not a change: no progress lines (a refusal stays one line)
        _vmrun(paths, runner, hv.start_command(m.vmx, gui=False), f"start {m.vmx}")
    try:
        _look(paths, runner, m, login, recorded, SSH_TIMEOUT if timeout is None else timeout)
    except LabctlError:
        if not was_running:  # the refusal is what the user must see, not a failed shutdown
            with contextlib.suppress(LabctlError):
                _vmrun(paths, runner, hv.stop_command(m.vmx), f"shut {m.vmx} down")
        raise
    return power, True


def _vmrun(paths: Paths, runner: Runner, cmd: Command, what: str) -> None:
    r = runner.run(cmd.argv, timeout=cmd.timeout, check=False)
    if not r.ok:
        said = (r.stdout or r.stderr).strip().splitlines()
        raise CommandFailed(f"vmrun could not {what}: {said[-1] if said else r.returncode}",
                            "do it in VMware and look at the VM's console", argv=cmd.argv)


def _look(paths: Paths, runner: Runner, m: MachineSpec, login: Login, rec: Mapping[str, Any],
          timeout: float) -> None:
    assert m.vmx is not None
    fixed = rec.get("ip") if rec.get("adopted") else None
    ip, said = paths.hypervisor.guest_ip(m.vmx, runner, wait=timeout)
    target = str(fixed) if fixed else ip
    where = f"its fixed IP {target}" if fixed else str(target)
    nothing = "; nothing was changed"
    if target is None:
        raise PreconditionMissing(
            f"{m.vmx.name} has no address VMware can see within {timeout:g} s "
            f"(vmrun getGuestIPAddress: {said}){nothing}",
            "install open-vm-tools in the VM (VMware Tools report its address), or look at "
            "its console; LABCTL_SSH_TIMEOUT=SECONDS waits longer")
    answer = probe_ssh(runner, login, target, timeout)
    if not answer.ok:
        if answer.refused_key:
            raise PreconditionMissing(
                f"SSH to {login.user}@{target} refused the key {login.key} ({answer.detail}){nothing}",
                f"put the key on the VM: ssh-copy-id -i {shlex.quote(str(login.key))} "
                f"{login.user}@{target}, or pass --ssh-user/--ssh-key")
        raise PreconditionMissing(
            f"SSH to {login.user}@{where} did not answer within {timeout:g} s "
            f"(vmrun getGuestIPAddress sees {said}){nothing}",
            f"check that the VM runs sshd (sudo apt-get install openssh-server) and that "
            f"{login.key}.pub is in ~{login.user}/.ssh/authorized_keys there; "
            "LABCTL_SSH_TIMEOUT=SECONDS waits longer")
    problem = guest_os_problem(m.vmx, None, answer.os_release)
    if problem is not None:
        raise problem


def login_of(rec: Mapping[str, Any]) -> Login | None:
    """The SSH login labctl recorded for a VM it adopted."""
    if rec.get("ssh_user") and rec.get("ssh_key"):
        return Login(str(rec["ssh_user"]), Path(str(rec["ssh_key"])))
    return None


def is_adopted(rec: Mapping[str, Any]) -> bool:
    return bool(rec.get("adopted"))

