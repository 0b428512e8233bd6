"""The VMware ``networking`` answer file (Fusion and Workstation share the format)::

    VERSION=1,0
    answer VNET_1_DHCP yes
    answer VNET_1_HOSTONLY_SUBNET 172.16.141.0
    add_nat_portfwd 8 tcp 2200 172.16.99.128 22

Lines are kept verbatim; ``answer VNET_<n>_<KEY> <value>`` lines are indexed, and so are
``add_bridge_mapping <host interface> <n>`` lines (Fusion and Workstation both write them for
a vmnet bridged to a host interface).  Every vmnet the file names anywhere — an answer, a
bridge mapping, a port forward, a DHCP mapping, ``VNL_DEFAULT_BRIDGE_VNET`` — is in use.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from labctl.errors import MalformedFile
from labctl.text import decode, encode

_ANSWER = re.compile(r"^answer\s+VNET_(\d+)_([A-Z0-9_]+)(?:[ \t]+(.*?))?[ \t]*$")
_BRIDGE = re.compile(r"^add_bridge_mapping[ \t]+(\S+)[ \t]+(\d+)[ \t]*$")
# other lines naming a vmnet by number: "<verb> N …" (port forwards, DHCP mappings, …), the
# default bridge, and any vmnetN / VNET_N_ anywhere
_FIRST_ARG = re.compile(r"^(?:add|remove)_[a-z_]+[ \t]+(\d+)(?:[ \t]|$)")
_DEFAULT_BRIDGE = re.compile(r"^answer[ \t]+VNL_DEFAULT_BRIDGE_VNET[ \t]+(\d+)")
_MENTION = re.compile(r"\bvmnet(\d+)\b|\bVNET_(\d+)_")


@dataclass(frozen=True)
class Vmnet:
    number: int
    answers: dict[str, str]
    bridge: str | None = None  # the host interface of an add_bridge_mapping line

    @property
    def name(self) -> str:
        return f"vmnet{self.number}"

    def flag(self, key: str) -> bool:
        return self.answers.get(key, "no").lower() == "yes"

    @property
    def dhcp(self) -> bool:
        return self.flag("DHCP")

    @property
    def nat(self) -> bool:
        return self.flag("NAT")

    @property
    def virtual_adapter(self) -> bool:
        return self.flag("VIRTUAL_ADAPTER")

    @property
    def kind(self) -> str:
        if self.nat:
            return "nat"
        if "HOSTONLY_SUBNET" in self.answers and self.bridge is None:
            return "host-only"
        return "bridged"

    @property
    def subnet_address(self) -> str | None:
        return self.answers.get("HOSTONLY_SUBNET")

    @property
    def netmask(self) -> str | None:
        return self.answers.get("HOSTONLY_NETMASK")

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        if not self.subnet_address or not self.netmask:
            return None
        try:
            return ipaddress.IPv4Network(f"{self.subnet_address}/{self.netmask}", strict=False)
        except ValueError:
            return None

    @property
    def host_address(self) -> ipaddress.IPv4Address | None:
        """VMware gives the host adapter .1 of the subnet."""
        net = self.network
        return net.network_address + 1 if net else None

    @property
    def display_name(self) -> str | None:
        return self.answers.get("DISPLAY_NAME")


class NetworkingFile:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)
        first = self.lines[0].strip() if self.lines else ""
        if not first.startswith("VERSION="):
            raise MalformedFile("the networking file does not start with a VERSION= line")

    @classmethod
    def parse(cls, data: bytes) -> NetworkingFile:
        return cls(decode(data))

    def dump(self) -> bytes:
        return encode("".join(self.lines))

    @property
    def eol(self) -> str:
        """The file's line ending (CRLF when most lines end so): new lines get the same."""
        crlf = sum(1 for line in self.lines if line.endswith("\r\n"))
        return "\r\n" if crlf and crlf * 2 >= len(self.lines) else "\n"

    def _answers(self) -> list[tuple[int, int, str, str]]:
        out = []
        for i, line in enumerate(self.lines):
            m = _ANSWER.match(line.rstrip("\r\n"))
            if m:
                out.append((i, int(m.group(1)), m.group(2), m.group(3) or ""))
        return out

    def _bridges(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for line in self.lines:
            m = _BRIDGE.match(line.rstrip("\r\n"))
            if m and int(m.group(2)) <= 255:
                out.setdefault(int(m.group(2)), m.group(1))
        return out

    @property
    def vmnets(self) -> dict[int, Vmnet]:
        """Every vmnet with answers or a bridge mapping."""
        found: dict[int, dict[str, str]] = {}
        for _, n, key, value in self._answers():
            found.setdefault(n, {})[key] = value
        bridges = self._bridges()
        for n in bridges:
            found.setdefault(n, {})
        return {n: Vmnet(n, answers, bridges.get(n)) for n, answers in sorted(found.items())}

    @property
    def in_use(self) -> set[int]:
        """Every vmnet number the file names anywhere: none of them is free for a new one."""
        used = set(self.vmnets)
        for line in self.lines:
            text = line.rstrip("\r\n")
            for rx in (_FIRST_ARG, _DEFAULT_BRIDGE):
                m = rx.match(text)
                if m:
                    used.add(int(m.group(1)))
            for a, b in _MENTION.findall(text):
                used.add(int(a or b))
        return {n for n in used if n <= 255}

    def get(self, number: int) -> Vmnet | None:
        return self.vmnets.get(number)

    def set_answer(self, number: int, key: str, value: str) -> None:
        """Change an answer in place, or insert it where VMware's sorted order puts it."""
        answers = self._answers()
        for i, n, k, _ in answers:
            if n == number and k == key:
                eol = self.lines[i][len(self.lines[i].rstrip("\r\n")):]
                self.lines[i] = f"answer VNET_{number}_{key} {value}{eol}"
                return
        eol = self.eol
        new = f"answer VNET_{number}_{key} {value}{eol}"
        insert_at = None
        for i, n, k, _ in answers:
            if (n, k) < (number, key):
                insert_at = i + 1
        if insert_at is None:
            insert_at = answers[0][0] if answers else len(self.lines)
        if insert_at > 0 and not self.lines[insert_at - 1].endswith("\n"):
            self.lines[insert_at - 1] += eol
        self.lines.insert(insert_at, new)

    def remove_vmnet(self, number: int) -> None:
        drop = {i for i, n, _, _ in self._answers() if n == number}
        self.lines = [line for i, line in enumerate(self.lines) if i not in drop]
