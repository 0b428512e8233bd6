"""``.vmx`` files: ``key = "value"`` lines, kept verbatim; keys compare case-insensitively
as VMware does.  Edits change a line's value in place or append a line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl.errors import Conflict, InvalidInput
from labctl.text import decode, encode

if TYPE_CHECKING:
    from labctl.hypervisor.vmware.networking import NetworkingFile

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
        crlf = sum(1 for x in self.lines if x.endswith("\r\n"))
        eol = "\r\n" if crlf and crlf * 2 >= len(self.lines) else "\n"
        if self.lines and not self.lines[-1].endswith("\n"):
            self.lines[-1] += eol
        self.lines.append(line + eol)

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


# ---- the network a NIC is really on --------------------------------------------------------------
_VNET = re.compile(r"^(?:/dev/)?vmnet(\d{1,3})$", re.IGNORECASE)


@dataclass(frozen=True)
class NicNetwork:
    kind: str  # "bridged", "nat", "hostonly", "custom", or whatever else the .vmx says
    vmnet: int | None  # None: not on a vmnet (e.g. a LAN segment, a custom NIC with no vnet)

    def describe(self) -> str:
        where = f"vmnet{self.vmnet}" if self.vmnet is not None else "no vmnet"
        return f"{self.kind} ({where})"


def nic_network(nic: Nic) -> NicNetwork:
    """VMware's rules: no ``connectionType`` means bridged (vmnet0); ``nat`` is vmnet8,
    ``hostonly`` vmnet1, ``custom`` the vmnet in ``vnet`` (``vmnetN`` or ``/dev/vmnetN``)."""
    kind = (nic.connection_type or "bridged").lower()
    if kind == "bridged":
        return NicNetwork("bridged", 0)
    if kind == "nat":
        return NicNetwork("nat", 8)
    if kind == "hostonly":
        return NicNetwork("hostonly", 1)
    m = _VNET.match((nic.vnet or "").strip())
    if kind == "custom" and m and int(m.group(1)) <= 255:
        return NicNetwork("custom", int(m.group(1)))
    return NicNetwork(kind, None)


def reservation_vmnet(nic: Nic, networking: NetworkingFile, requested: int | None = None,
                      vm: str = "the VM") -> int:
    """The vmnet on which labctl can reserve ``nic``'s address (``--nic existing``): the one
    the NIC is really on, if VMware's DHCP serves it.  A bridged NIC, a vmnet without DHCP or
    a ``--vmnet`` that is not the NIC's own are refused, never ignored."""
    net = nic_network(nic)
    what = f"{vm}'s {nic.key} is {net.describe()}"
    if net.kind == "bridged" or net.vmnet is None:
        raise Conflict(f"{what}: its address comes from your LAN's DHCP, not VMware's, so labctl "
                       "cannot reserve it" if net.kind == "bridged" else
                       f"{what}: VMware's DHCP does not serve it, so labctl cannot reserve it",
                       "use --nic dedicated (a second NIC on a host-only vmnet)")
    v = networking.get(net.vmnet)
    if v is None or v.kind == "bridged" or not v.dhcp:
        state = ("not in the networking file" if v is None else
                 f"bridged to {v.bridge}" if v.bridge else
                 "bridged" if v.kind == "bridged" else "without DHCP")
        raise Conflict(f"{what}, and vmnet{net.vmnet} is {state}: VMware's DHCP does not serve it, "
                       "so labctl cannot reserve its address",
                       "use --nic dedicated (a second NIC on a host-only vmnet)")
    if requested is not None and requested != net.vmnet:
        raise InvalidInput(f"--vmnet vmnet{requested} does not match {vm}'s {nic.key}, which is "
                           f"{net.describe()}: --nic existing reserves the address on the NIC's "
                           "own vmnet",
                           "leave out --vmnet, or use --nic dedicated to put a NIC on that vmnet")
    return net.vmnet


def nic_vmnet(nic: Nic) -> int | None:
    """The vmnet whose DHCP serves a NIC (see ``nic_network``); None for a bridged NIC or one
    on no vmnet."""
    net = nic_network(nic)
    return None if net.kind == "bridged" else net.vmnet
