"""Every host path labctl touches, per platform.

``LABCTL_ROOT=DIR`` puts every one of them (tool binaries included) under DIR, and
``LABCTL_PLATFORM=darwin|linux`` picks the Fusion or Workstation layout regardless of the
OS labctl runs on.  Both are honest product options (try labctl against a copy of your
VMware preferences) and the seams the tests use.  The hypervisor's own locations (VMware's
networking file, dhcpd.conf, leases, vmnet-cli, vmrun) belong to it: ``paths.hypervisor``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import InvalidInput

if TYPE_CHECKING:
    from labctl.hypervisor.base import Hypervisor


def parse_vmnet(name: str) -> int:
    """'vmnet2' or '2' -> 2; anything else is invalid input."""
    from labctl import validate

    return validate.vmnet(name)


def current_platform() -> str:
    value = os.environ.get("LABCTL_PLATFORM")
    if value:
        if value not in ("darwin", "linux"):
            raise InvalidInput(f"LABCTL_PLATFORM must be darwin or linux, not {value!r}")
        return value
    return "darwin" if sys.platform == "darwin" else "linux"


@dataclass(frozen=True)
class Paths:
    platform: str
    root: Path  # "/" normally; LABCTL_ROOT when set

    @classmethod
    def detect(cls) -> Paths:
        root = os.environ.get("LABCTL_ROOT") or "/"
        return cls(platform=current_platform(), root=Path(root))

    @property
    def rooted(self) -> bool:
        return self.root != Path("/")

    def host(self, path: str) -> Path:
        """A host path, resolved under LABCTL_ROOT."""
        return self.root / path.lstrip("/")

    @cached_property
    def hypervisor(self) -> Hypervisor:
        """The desktop hypervisor on this layout: its file locations, tools and planners."""
        from labctl import hypervisor

        return hypervisor.detect(self)

    @property
    def docker_machine(self) -> Path:
        """docker-machine on PATH, else /usr/local/bin/docker-machine (under LABCTL_ROOT)."""
        return self.which("docker-machine", "/usr/local/bin/docker-machine")

    def which(self, name: str, default: str) -> Path:
        if not self.rooted:
            found = shutil.which(name)
            if found:
                return Path(found)
        return self.host(default)

    # ---- persistence units -----------------------------------------------------------------
    @property
    def unit_dir(self) -> Path:
        if self.platform == "darwin":
            return self.host("/Library/LaunchDaemons")
        return self.host("/etc/systemd/system")

    # ---- labctl's own state -------------------------------------------------------------------
    @cached_property
    def state_dir(self) -> Path:
        override = os.environ.get("LABCTL_STATE_DIR")
        if override:
            return Path(override)
        if self.platform == "darwin":
            return self.host("/Library/Application Support/labctl")
        return self.host("/var/lib/labctl")

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backups"
