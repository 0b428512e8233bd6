"""``.vmx`` files: ``key = "value"`` lines, kept verbatim; keys compare case-insensitively
as VMware does.  Edits change a line's value in place or append a line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from labctl.errors import InvalidInput
from labctl.vmware.text import decode, encode

_LINE = re.compile(r'^\s*([A-Za-z0-9_.:\-]+)\s*=\s*(?:"(.*)"|(\S*))\s*$')
_SAFE_VALUE = re.compile(r'^[^"\n\r|]*$')


@dataclass(frozen=True)
class Nic:
    index: int
    present: bool
    connection_type: str | None
    vnet: str | None
    address_type: str | None
    address: str | None  # static address or generated address
    virtual_dev: str | None

    @property
    def key(self) -> str:
        return f"ethernet{self.index}"


class Vmx:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    @classmethod
    def parse(cls, data: bytes) -> Vmx:
        return cls(decode(data))

    def dump(self) -> bytes:
        return encode("".join(self.lines))

    def _index(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i, line in enumerate(self.lines):
            m = _LINE.match(line.rstrip("\r\n"))
            if m:
                out[m.group(1).lower()] = i
        return out

    def items(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.lines:
            m = _LINE.match(line.rstrip("\r\n"))
            if m:
                out[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
        return out

    def get(self, key: str) -> str | None:
        i = self._index().get(key.lower())
        if i is None:
            return None
        m = _LINE.match(self.lines[i].rstrip("\r\n"))
        assert m
        return m.group(2) if m.group(2) is not None else m.group(3)

    def set(self, key: str, value: str) -> None:
        if not _SAFE_VALUE.match(value) or not re.match(r"^[A-Za-z0-9_.:\-]+$", key):
            raise InvalidInput(f"refusing to write an unsafe .vmx entry {key}={value!r}")
        line = f'{key} = "{value}"'
        i = self._index().get(key.lower())
        if i is not None:
            eol = self.lines[i][len(self.lines[i].rstrip("\r\n")):]
            self.lines[i] = line + eol
            return
        if self.lines and not self.lines[-1].endswith("\n"):
            self.lines[-1] += "\n"
        self.lines.append(line + "\n")

    def remove(self, key: str) -> None:
        i = self._index().get(key.lower())
        if i is not None:
            del self.lines[i]

    def nics(self) -> list[Nic]:
        indexes = sorted({int(m.group(1)) for k in self._index()
                          if (m := re.match(r"^ethernet(\d+)\.", k))})
        out = []
        for n in indexes:
            p = f"ethernet{n}."
            atype = (self.get(p + "addressType") or "").lower() or None
            addr = self.get(p + "address") if atype == "static" else self.get(p + "generatedAddress")
            out.append(Nic(
                index=n,
                present=(self.get(p + "present") or "").lower() == "true",
                connection_type=(self.get(p + "connectionType") or "").lower() or None,
                vnet=self.get(p + "vnet"),
                address_type=atype,
                address=addr.lower() if addr else None,
                virtual_dev=self.get(p + "virtualDev"),
            ))
        return out

    def nic(self, index: int) -> Nic | None:
        return next((n for n in self.nics() if n.index == index), None)

    @property
    def display_name(self) -> str | None:
        return self.get("displayName")

    @property
    def guest_os(self) -> str | None:
        return self.get("guestOS")


def nic_vmnet(nic: Nic) -> int | None:
    """The vmnet a NIC is on: NAT is vmnet8, host-only vmnet1, custom its ``vnet``; None for
    a NIC on no vmnet VMware's DHCP serves (bridged)."""
    kind = nic.connection_type or "nat"
    if kind == "nat":
        return 8
    if kind == "hostonly":
        return 1
    if kind == "custom" and nic.vnet:
        m = re.match(r"^vmnet(\d{1,3})$", nic.vnet.strip())
        return int(m.group(1)) if m and int(m.group(1)) <= 255 else None
    return None
