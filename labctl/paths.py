"""Every host path labctl touches, per platform.

``LABCTL_ROOT=DIR`` puts every one of them (tool binaries included) under DIR, and
``LABCTL_PLATFORM=darwin|linux`` picks the Fusion or Workstation layout regardless of the
OS labctl runs on.  Both are honest product options (try labctl against a copy of your
VMware preferences) and the seams the tests use.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from labctl.errors import InvalidInput

FUSION_PREFS = "/Library/Preferences/VMware Fusion"
FUSION_LIB = "/Applications/VMware Fusion.app/Contents/Library"


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

    @property
    def product(self) -> str:
        return "VMware Fusion" if self.platform == "darwin" else "VMware Workstation"

    # ---- VMware configuration -------------------------------------------------------------
    @property
    def vmware_dir(self) -> Path:
        return self.host(FUSION_PREFS if self.platform == "darwin" else "/etc/vmware")

    @property
    def networking(self) -> Path:
        return self.vmware_dir / "networking"

    def dhcpd_conf(self, vmnet: int) -> Path:
        if self.platform == "darwin":
            return self.vmware_dir / f"vmnet{vmnet}" / "dhcpd.conf"
        return self.vmware_dir / f"vmnet{vmnet}" / "dhcpd" / "dhcpd.conf"

    def leases(self, vmnet: int) -> Path:
        if self.platform == "darwin":
            return self.host(f"/var/db/vmware/vmnet-dhcpd-vmnet{vmnet}.leases")
        return self.vmware_dir / f"vmnet{vmnet}" / "dhcpd" / "dhcpd.leases"

    @property
    def apple_leases(self) -> Path:
        return self.host("/var/db/dhcpd_leases")

    # ---- tools ----------------------------------------------------------------------------
    @property
    def network_tool(self) -> Path:
        """vmnet-cli (Fusion) or vmware-networks (Workstation)."""
        if self.platform == "darwin":
            return self.host(f"{FUSION_LIB}/vmnet-cli")
        return self._which("vmware-networks", "/usr/bin/vmware-networks")

    @property
    def vmrun(self) -> Path:
        if self.platform == "darwin":
            return self._which("vmrun", f"{FUSION_LIB}/vmrun")
        return self._which("vmrun", "/usr/bin/vmrun")

    @property
    def docker_machine(self) -> Path:
        """docker-machine on PATH, else /usr/local/bin/docker-machine (under LABCTL_ROOT)."""
        return self._which("docker-machine", "/usr/local/bin/docker-machine")

    def _which(self, name: str, default: str) -> Path:
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
