"""Interface flags, read from the kernel (SIOCGIFFLAGS; no process): which interfaces are
point-to-point links — VPN tunnels, whatever their name (tun0, utun3, wg0, but also a
"corpvpn" or a GRE/IPIP tunnel)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable

IFF_POINTOPOINT = 0x10
# _IOWR('i', 17, struct ifreq) on macOS/BSD; SIOCGIFFLAGS on Linux
_SIOCGIFFLAGS = 0xC0206911 if sys.platform == "darwin" else 0x8913


def point_to_point(names: Iterable[str]) -> set[str]:
    """The interfaces among ``names`` that this host's kernel flags as point-to-point (an
    interface that does not exist here is left out)."""
    import fcntl
    import socket
    import struct

    out: set[str] = set()
    wanted = {n for n in names if n and len(n.encode()) < 16}
    if not wanted:
        return out
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in sorted(wanted):
            request = struct.pack("16sH", name.encode(), 0) + bytes(22)  # a whole struct ifreq
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request)
            except OSError:
                continue
            (flags,) = struct.unpack_from("H", answer, 16)
            if flags & IFF_POINTOPOINT:
                out.add(name)
    return out


def mark_tunnels(routes: list) -> list:
    """The routes with ``tunnel`` set on those through a point-to-point interface."""
    from dataclasses import replace

    p2p = point_to_point({r.interface for r in routes if r.interface})
    if not p2p:
        return routes
    return [replace(r, tunnel=True) if r.interface in p2p else r for r in routes]
