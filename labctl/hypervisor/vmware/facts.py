"""Read-only probes of the host's VMware networking (no planning, no writing).  Kept light:
`labctl vmnet ls` imports only this."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from labctl import state as labstate
from labctl.errors import InvalidInput, PreconditionMissing
from labctl.hypervisor.vmware.dhcpd import DhcpdConf
from labctl.hypervisor.vmware.networking import NetworkingFile, Vmnet
from labctl.paths import Paths
from labctl.text import read

VMWARE_URL = "https://www.vmware.com/products/desktop-hypervisor/workstation-and-fusion"


def install_or_start(paths: Paths) -> str:
    """The fix when VMware's own files are missing: it is not installed, or never ran."""
    if paths.platform == "darwin":
        return (f"install VMware Fusion ({VMWARE_URL}) and start it once, so that it writes its "
                "network configuration")
    return (f"install VMware Workstation ({VMWARE_URL}), then start its networking once: "
            "sudo vmware-networks --start")


def read_networking(paths: Paths) -> tuple[bytes, NetworkingFile]:
    hv = paths.hypervisor
    data = read(hv.networking, f"{hv.product} networking file", missing=install_or_start(paths))
    return data, NetworkingFile.parse(data)


def read_dhcpd(paths: Paths, vmnet: int) -> tuple[bytes, DhcpdConf]:
    restart = ("'/Applications/VMware Fusion.app/Contents/Library/vmnet-cli' --configure"
               if paths.platform == "darwin" else "vmware-networks --start")
    try:
        data = read(paths.hypervisor.dhcpd_conf(vmnet), f"vmnet{vmnet} dhcpd.conf",
                    missing=f"{paths.hypervisor.product} writes it when its networking starts: "
                            f"sudo {restart}")
    except PreconditionMissing as exc:
        if paths.hypervisor.networking.is_file():
            _, net = read_networking(paths)
            if vmnet not in net.vmnets:  # not VMware's doing: there is no such vmnet
                raise InvalidInput(f"there is no vmnet{vmnet} ({exc.message})",
                                   "see the vmnets with: labctl vmnet ls") from exc
        raise
    return data, DhcpdConf.parse(data)


def resolve_vmnet(paths: Paths, requested: str | None) -> int:
    """--vmnet, else the vmnet labctl set up, else the only host-only vmnet with DHCP."""
    from labctl.paths import parse_vmnet

    if requested:
        return parse_vmnet(requested)
    default = labstate.load(paths).get("default_vmnet")
    if default is not None:
        return int(default)
    _, net = read_networking(paths)
    candidates = [v.number for v in net.vmnets.values() if v.kind == "host-only" and v.dhcp]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise PreconditionMissing("no host-only vmnet with DHCP exists",
                                  "create one: labctl vmnet create --subnet 192.168.99.0/24")
    names = ", ".join(f"vmnet{n}" for n in candidates)
    raise InvalidInput(f"several host-only vmnets ({names}); say which with --vmnet")


def host_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    from labctl.hostinfo import host_networks

    return host_networks()


def interface_address(name: str) -> str | None:
    import netifaces

    if name not in netifaces.interfaces():
        return None
    addrs = netifaces.ifaddresses(name).get(netifaces.AF_INET, [])
    return addrs[0]["addr"] if addrs else None


NOT_UP_YET = "not up yet (created when a VM starts)"


def vmnet_rows(paths: Paths) -> list[dict[str, Any]]:
    """One row per vmnet; the host side is found by subnet (bridge10x on macOS 11+)."""
    from labctl import hostinfo

    _, nf = read_networking(paths)
    addresses = hostinfo.host_addresses()
    bridges = hostinfo.bridge_adapters(paths)
    return [_vmnet_row(v, hostinfo.find_adapter(v, addresses), bridges) for v in nf.vmnets.values()]


def _vmnet_row(v: Vmnet, adapter: Any, bridges: bool) -> dict[str, Any]:
    note = None
    if adapter is None and v.network is not None and (v.virtual_adapter or v.nat):
        note = NOT_UP_YET if bridges else "down (VMware networking is not running)"
    return {
        "vmnet": v.name,
        "number": v.number,
        "kind": v.kind,
        "bridge": v.bridge,
        "subnet": str(v.network) if v.network else None,
        "netmask": v.netmask,
        "dhcp": v.dhcp,
        "virtual_adapter": v.virtual_adapter,
        "host_interface": adapter.name if adapter else None,
        "host_address": adapter.address if adapter else None,
        "host_note": note,
        "display_name": v.display_name,
    }


def dhcpd_files(paths: Paths) -> dict[int, Path]:
    _, nf = read_networking(paths)
    return {n: paths.hypervisor.dhcpd_conf(n) for n in nf.vmnets if paths.hypervisor.dhcpd_conf(n).exists()}
