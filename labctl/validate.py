"""The one validation of what users type: names, MACs, vmnets, subnets, gateways, addresses.

Every command checks its arguments here before it reads or changes anything, and the older
entry points (``labspec.check_name``, ``dhcpd.check_name``, ``paths.parse_vmnet``, …) are thin
wrappers over these functions.  A value that passes holds nothing a shell, a unit file or a
config file treats specially: names are letters, digits, ``-``, ``.`` (and ``_`` for DHCP host
names), no quotes, braces, semicolons, whitespace or control characters.  Every failure is an
``InvalidInput``: one line, exit 2, nothing changed.

How values are written where they go: ``shell`` quotes one word for a command printed for
people to paste; ``systemd_word`` / ``systemd_text`` render one into a systemd unit.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Any

from labctl.errors import InvalidInput

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address

# docker-machine's own rule for machine names (and labctl's: contexts, units, records)
MACHINE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-\.]*$")
# a dhcpd host name as labctl writes it (docker-machine's patterns read it back)
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?=[A-Za-z0-9])){0,62}$")
MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}$")
_VMNET_RE = re.compile(r"^vmnet(\d{1,3})$")

# networks a vmnet must not use: link-local (169.254/16, the host's own autoconfiguration) and
# the benchmark range 198.18/15 (RFC 2544), which Python counts as private
_NOT_FOR_VMNETS = (IPv4Network("169.254.0.0/16"), IPv4Network("198.18.0.0/15"))


# ---- names ------------------------------------------------------------------------------------
def machine_name(name: Any, where: str | None = None) -> str:
    """A docker-machine name: letters, digits, '-' and '.', at most 63."""
    if not isinstance(name, str) or not MACHINE_NAME_RE.fullmatch(name) or len(name) > 63:
        prefix = f"{where}: " if where else ""
        raise InvalidInput(
            f"{prefix}invalid machine name {name!r}: use letters, digits, '-' and '.', "
            "starting with a letter or digit (at most 63 characters)")
    return name


def optional_machine_name(name: str | None) -> str | None:
    return None if name is None else machine_name(name)


def reservation_name(name: Any) -> str:
    """A DHCP reservation (dhcpd ``host``) name."""
    if not isinstance(name, str) or not HOST_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid reservation name {name!r}: use letters, digits, '-', '_' and '.' "
            "(at most 63, starting with a letter or digit)")
    return name


# ---- MACs, vmnets, addresses --------------------------------------------------------------------
def mac(value: Any) -> str:
    """A unicast MAC, returned lower-case and colon-separated."""
    text = value.strip() if isinstance(value, str) else ""
    if not MAC_RE.match(text):
        raise InvalidInput(f"invalid MAC address {value!r}: expected six hex pairs like 00:50:56:2a:bb:cc")
    octets = [int(p, 16) for p in re.split("[:-]", text)]
    if octets[0] & 1:
        raise InvalidInput(f"invalid MAC address {text}: it is a multicast address")
    if not any(octets):
        raise InvalidInput(f"invalid MAC address {text}: all zeros")
    return ":".join(f"{o:02x}" for o in octets)


def vmnet(value: Any) -> int:
    """'vmnet2' or '2' -> 2 (0-255)."""
    text = value if isinstance(value, str) else ""
    m = _VMNET_RE.match(text) or re.match(r"^(\d{1,3})$", text)
    if not m or not 0 <= int(m.group(1)) <= 255:
        raise InvalidInput(f"invalid vmnet {value!r}: expected vmnetN, e.g. vmnet2")
    return int(m.group(1))


def ip(value: Any) -> IPv4Address:
    try:
        return IPv4Address((value or "").strip() if isinstance(value, str) else "?")
    except ValueError as exc:
        raise InvalidInput(f"invalid IPv4 address {value!r}") from exc


def vmnet_subnet_problem(net: IPv4Network) -> str | None:
    """Why ``net`` cannot be a vmnet's subnet (None: it can)."""
    if not 16 <= net.prefixlen <= 29:
        return f"subnet {net} must be between /16 and /29"
    for bad in _NOT_FOR_VMNETS:
        if net.overlaps(bad):
            what = "link-local" if bad.network_address.packed[0] == 169 else "benchmark (RFC 2544)"
            return f"subnet {net} is in the {what} range {bad}, not a network for a vmnet"
    if not net.is_private:
        return f"subnet {net} is not a private range"
    return None


def vmnet_subnet(value: Any) -> IPv4Network:
    """A vmnet's subnet: a private IPv4 network, /16 to /29, not link-local or benchmark."""
    try:
        net = IPv4Network(value.strip() if isinstance(value, str) else "?", strict=True)
    except ValueError as exc:
        raise InvalidInput(f"invalid subnet {value!r}: expected a network like 192.168.99.0/24") from exc
    problem = vmnet_subnet_problem(net)
    if problem:
        raise InvalidInput(problem, "use e.g. 192.168.99.0/24")
    return net


def route_subnet(text: Any) -> IPv4Network:
    """A destination to route: an IPv4 network in CIDR form with no host bits set."""
    value = (text or "").strip() if isinstance(text, str) else ""
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


def gateway(text: Any) -> IPv4Address:
    """A next hop: a unicast IPv4 address (where it sits is checked against the routing table)."""
    value = (text or "").strip() if isinstance(text, str) else ""
    try:
        addr = IPv4Address(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid gateway {text!r}: expected an IPv4 address like 192.168.99.100") \
            from exc
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_reserved \
            or addr == IPv4Address("255.255.255.255"):
        raise InvalidInput(f"invalid gateway {addr}: not a unicast host address")
    return addr


def gateway_on_link(gw: IPv4Address, link: IPv4Network, own: set[IPv4Address] | frozenset = frozenset(),
                    iface: str | None = None) -> str | None:
    """Why ``gw`` cannot be the next hop on the directly connected network ``link`` (None: it
    can): it must be another host there, not the network or broadcast address, not this host."""
    where = f"{link}{' on ' + iface if iface else ''}"
    if link.prefixlen <= 30 and gw == link.network_address:
        return f"gateway {gw} is the network address of {where}, not a host"
    if link.prefixlen <= 30 and gw == link.broadcast_address:
        return f"gateway {gw} is the broadcast address of {where}, not a host"
    if gw in own:
        return f"gateway {gw} is this host's own address on {where}: a route via it goes nowhere"
    return None


# ---- writing values where they go ----------------------------------------------------------------
def shell(word: object) -> str:
    """One word of a command printed for people to paste."""
    return shlex.quote(str(word))


def _no_controls(text: str, what: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInput(f"{what} {text!r} contains a control character (a line break?), which "
                           "cannot go into a systemd unit")
    return text


_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def systemd_word(word: object) -> str:
    """One word of a systemd command line (ExecStart=): specifiers (%) doubled, variables ($)
    doubled, quoted with backslash escapes when it holds anything else than safe characters."""
    text = _no_controls(str(word), "the value")
    text = text.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_SAFE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_command(argv: list[str]) -> str:
    return " ".join(systemd_word(a) for a in argv)


def systemd_assignment(key: str, value: str) -> str:
    """``"KEY=VALUE"`` for Environment= (no variable expansion there; specifiers are)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise InvalidInput(f"invalid environment variable name {key!r}")
    text = _no_controls(f"{key}={value}", "the environment value").replace("%", "%%")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_text(text: object) -> str:
    """Free text on one unit line (Description=, a comment): one line, specifiers doubled."""
    return _no_controls(str(text), "the text").replace("%", "%%")


# ---- typer callbacks: arguments are checked as they are parsed, before a command runs ---------------
def machine_arg(value: str | None) -> str | None:
    return optional_machine_name(value)


def reservation_arg(value: str | None) -> str | None:
    return None if value is None else reservation_name(value)


def vmnet_arg(value: str | None) -> str | None:
    if value is not None and value != "auto":
        vmnet(value)
    return value
