"""Parsers from routing-table text to Routes: pure functions, one per format.

macOS ``netstat -nr -f inet`` (and ``-r``/``-rnl`` variants), Linux ``ip -j route``,
``ip route``, ``netstat -rn`` and ``/proc/net/route``, and Windows ``netsh interface ipv4
show route`` (read-only; it documents VMware's Windows layout)."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import socket
import struct

from labctl.errors import MalformedFile
from labctl.routes.model import (
    GATEWAY,
    LINK,
    NEIGHBOUR,
    SPECIAL,
    IPv4Address,
    IPv4Network,
    Route,
    cached_address,
    cached_network,
)

_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$")
_OCTETS_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){0,3}$")


# ---- macOS / BSD netstat ----------------------------------------------------------------------
def expand_destination(text: str) -> IPv4Network | None:
    """netstat's short destinations: ``172.17`` -> 172.17.0.0/16, ``10.96/12`` -> 10.96.0.0/12,
    ``192.168.99`` -> /24, ``127`` -> /8, ``0/1``, ``default`` -> 0.0.0.0/0, a full address
    without a mask -> /32.  Host names (netstat without -n) and IPv6 give None."""
    value = text.strip()
    if value == "default":
        return IPv4Network("0.0.0.0/0")
    if value == "localhost":
        return IPv4Network("127.0.0.1/32")
    value = value.split("%", 1)[0]
    addr, _, plen = value.partition("/")
    if not _OCTETS_RE.match(addr):
        return None
    octets = addr.split(".")
    if any(int(o) > 255 for o in octets):
        return None
    prefix = int(plen) if plen.isdigit() else 8 * len(octets)
    if prefix > 32:
        return None
    padded = ".".join(octets + ["0"] * (4 - len(octets)))
    try:
        return IPv4Network(f"{padded}/{prefix}", strict=False)
    except ValueError:
        return None


def _darwin_gateway(text: str) -> tuple[IPv4Address | None, str]:
    if text.startswith("link#"):
        return None, LINK
    if _MAC_RE.match(text):
        return None, NEIGHBOUR
    try:
        return IPv4Address(text), GATEWAY
    except ValueError:
        return None, GATEWAY  # a host name (netstat -r without -n): a next hop we cannot resolve


def parse_netstat_darwin(text: str) -> list[Route]:
    """``LC_ALL=C netstat -nr -f inet`` (also the Internet: part of ``netstat -r``/``-rn``)."""
    routes: list[Route] = []
    header: list[str] | None = None
    in_inet = True  # until an "Internet6:" section starts
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("Internet:", "Internet6:"):
            in_inet, header = stripped == "Internet:", None
            continue
        if not in_inet or not stripped:
            continue
        words = stripped.split()
        if words[0] == "Destination":
            header = words
            continue
        if header is None or len(words) < 3:
            continue
        dest = expand_destination(words[0])
        if dest is None:
            continue
        gw, kind = _darwin_gateway(words[1])
        flags = words[2]
        iface = None
        if "Netif" in header:
            idx = header.index("Netif")
            if idx < len(words):
                iface = words[idx]
            elif len(words) >= 4:
                iface = words[-1]
        if kind == GATEWAY and "G" not in flags and gw is not None:
            # "127.0.0.1  127.0.0.1  UH": a host route to a local address, not a next hop
            kind = SPECIAL if dest.is_loopback else LINK
        if dest.is_multicast or "b" in flags or dest.network_address == IPv4Address("255.255.255.255"):
            kind = SPECIAL
        if "W" in flags and kind != GATEWAY:
            kind = NEIGHBOUR
        if dest.is_loopback or (iface or "").startswith("lo") and kind != NEIGHBOUR:
            kind = SPECIAL
        routes.append(Route(dest, gw, iface, kind, flags, raw=line))
    return routes


# ---- Linux ------------------------------------------------------------------------------------
_SPECIAL_TYPES = {"local", "broadcast", "multicast", "unreachable", "blackhole", "prohibit", "throw",
                  "nat", "anycast"}


@functools.lru_cache(maxsize=65536)  # the table is read before and after a batch: parse once
def _linux_dest(value: str) -> IPv4Network | None:
    if value == "default":
        return IPv4Network("0.0.0.0/0")
    try:
        return cached_network(value)  # shared with labctl's records
    except ValueError:
        pass
    try:
        return IPv4Network(value, strict=False)
    except ValueError:
        return None


def _gateway(value: str) -> IPv4Address | None:
    try:
        return cached_address(value)
    except ValueError:
        return None


# one encoder for every route's raw text (json.dumps with options builds a new one per call)
_RAW = json.JSONEncoder(sort_keys=True).encode


def parse_ip_json(text: str) -> list[Route]:
    """``ip -j route`` (an array of objects; ``dst`` "default" or CIDR or an address)."""
    try:
        data = json.loads(text or "[]")
    except ValueError as exc:
        raise MalformedFile(f"ip -j route printed something that is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise MalformedFile("ip -j route did not print a JSON array")
    routes = []
    for item in data:
        if not isinstance(item, dict):
            continue
        dest = _linux_dest(str(item.get("dst", "")))
        if dest is None:
            continue
        gw = _gateway(str(item["gateway"])) if item.get("gateway") else None
        rtype = item.get("type", "unicast")
        kind = SPECIAL if rtype in _SPECIAL_TYPES else GATEWAY if gw else LINK
        metric = item.get("metric")
        routes.append(Route(dest, gw, item.get("dev"), kind, " ".join(item.get("flags", [])),
                            item.get("protocol"), int(metric) if isinstance(metric, int) else None,
                            raw=_RAW(item)))
    return routes


def parse_ip_text(text: str) -> list[Route]:
    """``ip route`` (text)."""
    routes = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        rtype = "unicast"
        if words[0] in _SPECIAL_TYPES or words[0] == "unicast":
            rtype, words = words[0], words[1:]
        if not words:
            continue
        dest = _linux_dest(words[0])
        if dest is None:
            continue
        opts = {}
        flags = []
        i = 1
        while i < len(words):
            if words[i] in ("via", "dev", "proto", "scope", "src", "metric", "table") and i + 1 < len(words):
                opts[words[i]] = words[i + 1]
                i += 2
            else:
                flags.append(words[i])
                i += 1
        gw = IPv4Address(opts["via"]) if "via" in opts else None
        kind = SPECIAL if rtype in _SPECIAL_TYPES else GATEWAY if gw else LINK
        metric = int(opts["metric"]) if opts.get("metric", "").isdigit() else None
        routes.append(Route(dest, gw, opts.get("dev"), kind, " ".join(flags), opts.get("proto"),
                            metric, raw=line))
    return routes


def parse_netstat_linux(text: str) -> list[Route]:
    """``netstat -rn`` on Linux (Destination Gateway Genmask Flags MSS Window irtt Iface)."""
    routes = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 5 or not _OCTETS_RE.match(words[0]) or words[0].count(".") != 3:
            continue
        try:
            dest = IPv4Network(f"{words[0]}/{words[2]}", strict=False)
            gw_addr = IPv4Address(words[1])
        except ValueError:
            continue
        flags = words[3]
        gw = gw_addr if "G" in flags and not gw_addr.is_unspecified else None
        kind = GATEWAY if gw else LINK
        routes.append(Route(dest, gw, words[-1], kind, flags, raw=line))
    return routes


def _hex_ip(value: str) -> IPv4Address:
    return IPv4Address(socket.inet_ntoa(struct.pack("<I", int(value, 16))))


def parse_proc_net_route(text: str) -> list[Route]:
    """``/proc/net/route`` (little-endian hex addresses)."""
    routes = []
    lines = text.splitlines()
    for line in lines[1:]:
        words = line.split()
        if len(words) < 8:
            continue
        try:
            dest_ip, gw_ip, mask = _hex_ip(words[1]), _hex_ip(words[2]), _hex_ip(words[7])
            flags = int(words[3], 16)
        except ValueError:
            continue
        dest = IPv4Network(f"{dest_ip}/{mask}", strict=False)
        gw = gw_ip if flags & 0x2 else None  # RTF_GATEWAY
        kind = SPECIAL if flags & 0x0200 else GATEWAY if gw else LINK  # RTF_REJECT: unreachable…
        routes.append(Route(dest, gw, words[0], kind, f"{flags:#06x}", metric=int(words[6]), raw=line))
    return routes


# ---- Windows (read-only, for reference) -------------------------------------------------------
def parse_netsh(text: str) -> list[Route]:
    """``netsh interface ipv4 show route``: Publish Type Met Prefix Idx Gateway/Interface Name."""
    routes = []
    for line in text.splitlines():
        words = line.split(None, 5)
        if len(words) < 6 or words[0] not in ("No", "Yes"):
            continue
        try:
            dest = IPv4Network(words[3], strict=False)
        except ValueError:
            continue
        target = words[5].strip()
        try:
            gw: IPv4Address | None = IPv4Address(target)
            iface = None
        except ValueError:
            gw, iface = None, target
        kind = GATEWAY if gw else LINK
        if dest.is_multicast or dest.prefixlen == 32 and gw is None:
            kind = SPECIAL
        routes.append(Route(dest, gw, iface, kind, words[1], metric=int(words[2]), raw=line))
    return routes


def sniff(text: str) -> list[Route]:
    """Parse any of the formats above, recognised by its shape."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return parse_ip_json(stripped)
    if stripped.startswith("Iface\tDestination") or stripped.startswith("Iface"):
        return parse_proc_net_route(text)
    if stripped.startswith("Kernel IP routing table"):
        return parse_netstat_linux(text)
    if "Gateway/Interface" in text[:400]:
        return parse_netsh(text)
    if stripped.startswith("Routing tables") or stripped.startswith("Destination"):
        return parse_netstat_darwin(text)
    return parse_ip_text(text)


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
