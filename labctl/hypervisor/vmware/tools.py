"""Adapters for VMware's network tools: Fusion's ``vmnet-cli`` and Workstation's
``vmware-networks`` (restart, configure, status)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labctl.paths import Paths
from labctl.plan import Command

_STATUS = re.compile(
    r"^(?P<what>DHCP service|NAT service|Hostonly virtual adapter|Bridge networking) on "
    r"vmnet(?P<n>\d+) is (?P<state>\w+)")


@dataclass
class VmnetStatus:
    dhcp: bool | None = None
    nat: bool | None = None
    adapter: bool | None = None
    bridge: bool | None = None


@dataclass
class NetworkStatus:
    vmnets: dict[int, VmnetStatus] = field(default_factory=dict)
    all_running: bool = False


def parse_status(text: str) -> NetworkStatus:
    """Parse ``vmnet-cli --status`` / ``vmware-networks --status`` output."""
    status = NetworkStatus()
    for line in text.splitlines():
        m = _STATUS.match(line.strip())
        if m:
            v = status.vmnets.setdefault(int(m.group("n")), VmnetStatus())
            on = m.group("state") in ("running", "enabled")
            attr = {"DHCP service": "dhcp", "NAT service": "nat",
                    "Hostonly virtual adapter": "adapter", "Bridge networking": "bridge"}
            setattr(v, attr[m.group("what")], on)
        elif "All the services configured on all the networks are running" in line:
            status.all_running = True
    return status


def tool(paths: Paths) -> str:
    return str(paths.hypervisor.network_tool)


def restart_commands(paths: Paths) -> list[Command]:
    t = tool(paths)
    return [Command([t, "--stop"], sudo=True, timeout=120), Command([t, "--start"], sudo=True, timeout=120)]


def configure_command(paths: Paths) -> Command | None:
    """Fusion regenerates each vmnet's files from the networking file with --configure."""
    if paths.platform == "darwin":
        return Command([tool(paths), "--configure"], sudo=True, timeout=120)
    return None


def status_command(paths: Paths) -> Command:
    return Command([tool(paths), "--status"], sudo=False, timeout=10)
