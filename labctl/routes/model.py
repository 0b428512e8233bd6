"""The route model shared by every platform: one IPv4 route as the kernel reports it, and
the validation of the destinations and gateways users type."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field


# A command reads the same destinations and gateways several times (the table before and
# after a batch, labctl's records): each text is parsed once.  The values are immutable.
@functools.lru_cache(maxsize=65536)
def cached_network(text: str) -> ipaddress.IPv4Network:
    """``IPv4Network(text)`` (strict: no host bits), cached; ValueError as it raises."""
    return ipaddress.IPv4Network(text)


@functools.lru_cache(maxsize=65536)
def cached_address(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

# Tunnel interfaces VPN clients use (macOS utun/ppp/ipsec, Linux tun/ppp/wg/tap).
VPN_IFACE_RE = re.compile(r"^(utun|tun|tap|ppp|ipsec|wg|gpd|cscotun|vpn|zt)\d*", re.IGNORECASE)

# Kinds of route: a next hop by address ("gateway"), a directly connected network ("link"),
# a cached neighbour entry (macOS cloned host routes with a MAC as gateway: "neighbour"),
# and the kernel's local/broadcast/multicast/blackhole entries ("special").
GATEWAY, LINK, NEIGHBOUR, SPECIAL = "gateway", "link", "neighbour", "special"


@dataclass(frozen=True)
class Route:
    destination: IPv4Network
    gateway: IPv4Address | None = None
    interface: str | None = None
    kind: str = GATEWAY
    flags: str = ""
    protocol: str | None = None
    metric: int | None = None
    raw: str = field(default="", compare=False)
    tunnel: bool = field(default=False, compare=False)  # its interface is point-to-point

    @property
    def is_default(self) -> bool:
        return self.destination.prefixlen == 0

    @property
    def via_vpn(self) -> bool:
        """Through a VPN: a point-to-point interface (the kernel's flag), or one named as VPN
        clients name theirs."""
        return self.tunnel or bool(self.interface and VPN_IFACE_RE.match(self.interface))

    @property
    def connected(self) -> bool:
        """A network directly attached to an interface of this host."""
        return self.kind == LINK

    def describe(self) -> str:
        parts = [str(self.destination) if not self.is_default else "default"]
        if self.gateway is not None:
            parts.append(f"via {self.gateway}")
        if self.interface:
            parts.append(f"dev {self.interface}")
        if self.kind == LINK and self.gateway is None:
            parts.append("(directly connected)")
        return " ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "destination": str(self.destination),
            "gateway": str(self.gateway) if self.gateway else None,
            "interface": self.interface,
            "kind": self.kind,
            "flags": self.flags,
        }


def parse_cidr(text: str) -> IPv4Network:
    """A destination the user typed (see labctl.validate.route_subnet)."""
    from labctl import validate

    return validate.route_subnet(text)


def parse_gateway(text: str) -> IPv4Address:
    from labctl import validate

    return validate.gateway(text)
