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
    return Command([str(paths.vmrun), "list"], timeout=LIST_TIMEOUT)


def start_command(paths: Paths, vmx: Path | str, gui: bool = True) -> Command:
    """``vmrun start VMX gui``: power the VM on with its console window."""
    return Command([str(paths.vmrun), "start", str(vmx), "gui" if gui else "nogui"],
                   timeout=START_TIMEOUT)


def available(paths: Paths) -> bool:
    return paths.vmrun.is_file()


def running_vms(paths: Paths, runner=None) -> list[str]:
    """The running VMs' .vmx paths, as ``vmrun list`` prints them."""
    from labctl.runner import Runner

    if not available(paths):
        raise PreconditionMissing(
            f"vmrun not found at {paths.vmrun}",
            f"install {paths.product} or put vmrun on your PATH")
    cmd = list_command(paths)
    result = (runner or Runner()).run(cmd.argv, timeout=cmd.timeout, check=False)
    if not result.ok:
        detail = (result.stdout or result.stderr).strip().splitlines()
        raise CommandFailed(
            f"vmrun list failed: {detail[-1] if detail else f'exit status {result.returncode}'}",
            argv=cmd.argv, returncode=result.returncode, stdout=result.stdout, stderr=result.stderr)
    return parse_list(result.stdout)
