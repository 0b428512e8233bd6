"""The route model shared by every platform: one IPv4 route as the kernel reports it, and
the validation of the destinations and gateways users type."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from labctl.errors import InvalidInput

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

    @property
    def is_default(self) -> bool:
        return self.destination.prefixlen == 0

    @property
    def via_vpn(self) -> bool:
        return bool(self.interface and VPN_IFACE_RE.match(self.interface))

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
    """A destination the user typed: an IPv4 network in CIDR form with no host bits set."""
    value = (text or "").strip()
    if "/" not in value:
        raise InvalidInput(f"invalid subnet {text!r}: expected CIDR like 172.18.0.0/16")
    try:
        net = IPv4Network(value, strict=True)
    except ValueError as exc:
        raise InvalidInput(f"invalid subnet {text!r}: {exc}") from exc
    if net.prefixlen < 8:
        raise InvalidInput(f"subnet {net} is too wide (/{net.prefixlen}); labctl routes /8 or narrower")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_reserved \
            or net.is_unspecified:
        raise InvalidInput(f"subnet {net} is a special-purpose range, not a container network")
    return net


def parse_gateway(text: str) -> IPv4Address:
    value = (text or "").strip()
    try:
        ip = IPv4Address(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid gateway {text!r}: expected an IPv4 address like 192.168.99.100") \
            from exc
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_reserved \
            or ip == IPv4Address("255.255.255.255"):
        raise InvalidInput(f"invalid gateway {ip}: not a unicast host address")
    return ip
