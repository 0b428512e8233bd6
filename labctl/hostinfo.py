"""Facts about the desktop itself: CPU architecture, macOS release, and the host side of a
vmnet (its adapter).  Read-only, no subprocess.

Seams (honest options too: ask labctl what it would do on another Mac):
``LABCTL_ARCH`` (e.g. ``arm64``) stands for the machine architecture, ``LABCTL_MACOS_VERSION``
for the macOS release; ``LABCTL_PLATFORM`` (paths.py) picks the Fusion or Workstation layout.

**The host adapter of a vmnet.**  Before macOS 11 (and on Linux) the host side of vmnetN is an
interface named ``vmnetN``.  On macOS 11+ Fusion runs on Apple's vmnet framework and the host
side is a ``bridge100``, ``bridge101``, … interface that exists only while a VM on that vmnet
runs, numbered in the order the vmnets come up.  So labctl finds it by the vmnet's subnet:
the interface holding the vmnet's host address (``.1``), else one with an address inside the
subnet.
"""

from __future__ import annotations

import ipaddress
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.hypervisor.base import Network as Vmnet
    from labctl.paths import Paths

ARM = ("arm64", "aarch64")


def machine_arch(env: Mapping[str, str] | None = None) -> str:
    values = os.environ if env is None else env
    return values.get("LABCTL_ARCH") or platform.machine() or "unknown"


def is_arm(arch: str) -> bool:
    return arch.lower() in ARM


def macos_version(paths: Paths, env: Mapping[str, str] | None = None) -> str | None:
    if paths.platform != "darwin":
        return None
    values = os.environ if env is None else env
    return values.get("LABCTL_MACOS_VERSION") or platform.mac_ver()[0] or None


def version_tuple(text: str | None) -> tuple[int, ...]:
    out = []
    for part in (text or "").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def uses_apple_dhcp(fusion: str | None, macos: str | None) -> bool:
    """Fusion 12.0/12.1 on macOS 11 hand DHCP to Apple's bootpd (dhcpd.conf is ignored)."""
    return version_tuple(fusion)[:2] in ((12, 0), (12, 1)) and version_tuple(macos)[:1] == (11,)


def bridge_adapters(paths: Paths, env: Mapping[str, str] | None = None) -> bool:
    """True where a vmnet's host side is a bridge10x that exists only while a VM runs
    (Fusion on macOS 11+; an unknown macOS release counts as a current one)."""
    if paths.platform != "darwin":
        return False
    macos = macos_version(paths, env)
    return macos is None or version_tuple(macos)[:1] >= (11,)


# ---- the host side of a vmnet ------------------------------------------------------------------
@dataclass(frozen=True)
class Adapter:
    name: str  # vmnet2, bridge100, …
    address: str  # the host's IPv4 address on it


def host_addresses() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """Every IPv4 address of the host's interfaces (netifaces), loopback left out."""
    import netifaces

    out = []
    for ifname in netifaces.interfaces():
        try:
            addrs = netifaces.ifaddresses(ifname)
        except ValueError:  # gone meanwhile, or a tun without addresses (netifaces-plus refuses it)
            continue
        for addr in addrs.get(netifaces.AF_INET, []):
            try:
                iface = ipaddress.IPv4Interface(f"{addr['addr']}/{addr.get('netmask') or '32'}")
            except (KeyError, ValueError):
                continue
            if not iface.ip.is_loopback:
                out.append((ifname, iface))
    return out


def host_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """Networks directly attached to the host's interfaces (netifaces)."""
    return [(ifname, iface.network) for ifname, iface in host_addresses()]


def find_adapter(vmnet: Vmnet, addresses: Iterable[tuple[str, ipaddress.IPv4Interface]]
                 ) -> Adapter | None:
    """The interface holding the vmnet's host address, else one with another address on the
    same subnet (None: no interface is on that vmnet now).  Pure: tested with made-up tables."""
    net = vmnet.network
    if net is None:
        return None
    host = vmnet.host_address
    inside = []
    for name, iface in addresses:
        if host is not None and iface.ip == host:
            return Adapter(name, str(iface.ip))
        if iface.network == net:
            inside.append(Adapter(name, str(iface.ip)))
    by_name = [a for a in inside if a.name == vmnet.name]
    best = by_name or inside
    return best[0] if best else None


def host_adapter(vmnet: Vmnet) -> Adapter | None:
    return find_adapter(vmnet, host_addresses())


def adapter_name(paths: Paths, vmnet: Vmnet | None, number: int) -> str | None:
    """The host interface of vmnet ``number`` for a boot unit to wait for: the one on its
    subnet now, else ``vmnetN`` where that is its fixed name, else None (macOS 11+: the
    bridge10x appears, with a number of its own, only when a VM starts)."""
    if vmnet is not None:
        found = host_adapter(vmnet)
        if found is not None:
            return found.name
    return None if bridge_adapters(paths) else f"vmnet{number}"
