"""Adapter for VMware's ``vmrun``: read which VMs run (``vmrun list``) and the command that
starts a VM with its console window (``vmrun start VMX gui``).

``vmrun list`` prints ``Total running VMs: N`` and then one absolute ``.vmx`` path a line.
Paths may hold spaces and non-ASCII characters (Fusion's ``Virtual Machines.localized``
bundles); nothing is split on whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from labctl.errors import CommandFailed, PreconditionMissing
from labctl.paths import Paths
from labctl.plan import Command

_TOTAL = re.compile(r"^Total running VMs:\s*(\d+)\s*$")

LIST_TIMEOUT = 30.0
START_TIMEOUT = 180.0


def parse_list(text: str) -> list[str]:
    """The .vmx paths from ``vmrun list`` output (in the order printed).

    Raises CommandFailed when the text is not a ``vmrun list`` answer (vmrun prints its
    errors, e.g. ``Error: …``, on stdout)."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise CommandFailed("vmrun list printed nothing")
    m = _TOTAL.match(lines[0].strip())
    if not m:
        raise CommandFailed(f"vmrun list printed something unexpected: {lines[0].strip()!r}")
    paths = [line for line in lines[1:] if line.strip()]
    return paths


def normalize(name: str) -> str:
    """Compare names as a person reads them: NFC (macOS paths are often NFD), casefolded."""
    return unicodedata.normalize("NFC", name).casefold()


def list_command(paths: Paths) -> Command:
    return Command([str(paths.hypervisor.vmrun), "list"], timeout=LIST_TIMEOUT)


def start_command(paths: Paths, vmx: Path | str, gui: bool = True) -> Command:
    """``vmrun start VMX gui``: power the VM on with its console window."""
    return Command([str(paths.hypervisor.vmrun), "start", str(vmx), "gui" if gui else "nogui"],
                   timeout=START_TIMEOUT)


def available(paths: Paths) -> bool:
    return paths.hypervisor.vmrun.is_file()


def running_vms(paths: Paths, runner=None) -> list[str]:
    """The running VMs' .vmx paths, as ``vmrun list`` prints them."""
    from labctl.runner import Runner

    if not available(paths):
        raise PreconditionMissing(
            f"vmrun not found at {paths.hypervisor.vmrun}",
            f"install {paths.hypervisor.product} or put vmrun on your PATH")
    cmd = list_command(paths)
    result = (runner or Runner()).run(cmd.argv, timeout=cmd.timeout, check=False)
    if not result.ok:
        detail = (result.stdout or result.stderr).strip().splitlines()
        raise CommandFailed(
            f"vmrun list failed: {detail[-1] if detail else f'exit status {result.returncode}'}",
            argv=cmd.argv, returncode=result.returncode, stdout=result.stdout, stderr=result.stderr)
    return parse_list(result.stdout)


# ---- power and the guest's address (a VM labctl adopts) ----------------------------------------
IP_RE = re.compile(r"^\s*(\d{1,3}(?:\.\d{1,3}){3})\s*$")


def _vmrun(paths: Paths, runner, *args: str, timeout: float):
    from labctl.runner import Runner

    if not available(paths):
        raise PreconditionMissing(f"vmrun not found at {paths.hypervisor.vmrun}",
                                  f"install {paths.hypervisor.product} or put vmrun on your PATH")
    return (runner or Runner()).run([str(paths.hypervisor.vmrun), *args], timeout=timeout, check=False)


def is_running(paths: Paths, vmx: Path | str, runner=None) -> bool:
    """Whether ``vmx`` is among the VMs ``vmrun list`` shows (names compared as people read them)."""
    want = normalize(str(Path(vmx)))
    return any(normalize(str(Path(p))) == want for p in running_vms(paths, runner))


def stop_command(paths: Paths, vmx: Path | str, hard: bool = False) -> Command:
    """``vmrun stop VMX soft``: the guest shuts down cleanly (``hard``: power off)."""
    return Command([str(paths.hypervisor.vmrun), "stop", str(vmx), "hard" if hard else "soft"],
                   timeout=START_TIMEOUT)


def guest_ip(paths: Paths, vmx: Path | str, runner=None, wait: float = 0.0) -> tuple[str | None, str]:
    """``vmrun getGuestIPAddress VMX [-wait]`` (VMware Tools' view of the guest's address):
    (the IPv4 address or None, what vmrun said, for messages).  ``wait`` > 0 lets vmrun wait
    for the Tools, at most that many seconds."""
    from labctl.errors import CommandTimeout

    args = ["getGuestIPAddress", str(vmx)] + (["-wait"] if wait > 0 else [])
    try:
        result = _vmrun(paths, runner, *args, timeout=max(wait, 15.0))
    except CommandTimeout:
        return None, f"no address within {max(wait, 15.0):g} s"
    text = (result.stdout or result.stderr).strip()
    m = IP_RE.match(text.splitlines()[0]) if result.ok and text else None
    if m:
        return m.group(1), m.group(1)
    said = text.splitlines()[-1] if text else f"exit status {result.returncode}"
    return None, said
