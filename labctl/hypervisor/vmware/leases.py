"""DHCP lease files: ISC ``dhcpd.leases`` (vmnet-dhcpd) and macOS bootpd ``/var/db/dhcpd_leases``
(Fusion 12.0/12.1 on macOS 11).  Read-only: labctl backs these up and never edits them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from labctl.text import decode

_LEASE = re.compile(r"^lease\s+(\S+)\s*\{", re.M)
_FIELD = re.compile(r"^\s*(starts|ends|hardware ethernet|client-hostname|binding state)\s+(.*?);\s*$")


@dataclass(frozen=True)
class Lease:
    ip: str
    mac: str | None
    starts: datetime | None
    ends: datetime | None
    hostname: str | None
    state: str | None

    def active(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        if self.state is not None and self.state != "active":
            return False
        return self.ends is None or self.ends > now


def _when(value: str) -> datetime | None:
    # "0 2013/09/15 23:58:51" (weekday, date, time, UTC) or "never"
    parts = value.split()
    if len(parts) >= 3:
        try:
            return datetime.strptime(f"{parts[1]} {parts[2]}", "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            return None
    return None


def parse_isc(data: bytes) -> list[Lease]:
    text = decode(data)
    starts = [m for m in _LEASE.finditer(text)]
    leases = []
    for i, m in enumerate(starts):
        body_end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[m.end():body_end]
        close = re.search(r"^\}", body, re.M)
        if close:
            body = body[: close.start()]
        fields: dict[str, str] = {}
        for line in body.splitlines():
            f = _FIELD.match(line)
            if f:
                fields[f.group(1)] = f.group(2)
        leases.append(Lease(
            ip=m.group(1),
            mac=fields["hardware ethernet"].lower() if "hardware ethernet" in fields else None,
            starts=_when(fields.get("starts", "")),
            ends=_when(fields.get("ends", "")),
            hostname=fields.get("client-hostname", "").strip('"') or None,
            state=fields["binding state"].split()[0] if "binding state" in fields else None,
        ))
    return leases


def _bootpd_mac(value: str) -> str:
    # "1,d:ea:d0:66:77:88": hardware type 1, octets without leading zeros
    hw = value.split(",", 1)[-1]
    return ":".join(f"{int(p, 16):02x}" for p in hw.split(":"))


def parse_bootpd(data: bytes) -> list[Lease]:
    text = decode(data)
    leases = []
    for block in re.findall(r"\{(.*?)(?:\}|\Z)", text, re.S):
        fields = {}
        for line in block.splitlines():
            if "=" in line:
                k, v = line.strip().split("=", 1)
                fields[k] = v
        if "ip_address" not in fields:
            continue
        ends = None
        if "lease" in fields:
            try:
                ends = datetime.fromtimestamp(int(fields["lease"], 16), UTC)
            except ValueError:
                ends = None
        mac = None
        if "hw_address" in fields:
            try:
                mac = _bootpd_mac(fields["hw_address"])
            except ValueError:
                mac = None
        leases.append(Lease(fields["ip_address"], mac, None, ends, fields.get("name"), None))
    return leases


def parse(data: bytes) -> list[Lease]:
    text = decode(data)
    if _LEASE.search(text):
        return parse_isc(data)
    return parse_bootpd(data)


def latest_for(leases: list[Lease], mac: str) -> Lease | None:
    mine = [le for le in leases if le.mac == mac.lower()]
    if not mine:
        return None
    return max(mine, key=lambda le: le.ends or datetime.min.replace(tzinfo=UTC))
