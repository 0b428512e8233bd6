"""A vmnet's ``dhcpd.conf`` (ISC dhcpd syntax, as vmnet-dhcpd reads it).

The text is kept as read.  A small tokenizer (comments, quoted strings, braces) finds the
structure labctl needs: the DO-NOT-MODIFY section, the subnet with its dynamic range, and
every ``host`` block.  Reservations labctl writes are appended after the section's End line
in exactly the shape docker-machine's Fusion driver reads::

    # labctl: begin reservation lab
    host lab {
    \thardware ethernet 00:50:56:2a:bb:cc;
    \tfixed-address 192.168.99.10;
    }
    # labctl: end reservation lab

Removing a block restores the bytes the file had before it was added.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import gc
import ipaddress
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from labctl import validate
from labctl.errors import Conflict, InvalidInput, MalformedFile
from labctl.text import decode, encode

END_MARKER = 'End of "DO NOT MODIFY SECTION"'
BEGIN_TAG = "# labctl: begin reservation "
END_TAG = "# labctl: end reservation "

# docker-machine's vmwarefusion driver (GetIP) reads reservations with these patterns.
DM_HOST = re.compile(r"^host (.+?) {")
DM_MAC = re.compile(r"^\s*hardware ethernet (.+?);$")
DM_IP = re.compile(r"^\s*fixed-address (.+?);$")
DM_END = re.compile(r"^}")

NAME_RE = validate.HOST_NAME_RE
_DHCPD_MAC = re.compile(r"[0-9a-f]{1,2}(?::[0-9a-f]{1,2}){5}")
MAC_RE = validate.MAC_RE


# ---- validation of user input ----------------------------------------------------------------
def check_name(name: str) -> str:
    return validate.reservation_name(name)


def normalize_mac(mac: str) -> str:
    return validate.mac(mac)


def parse_ip(ip: str) -> ipaddress.IPv4Address:
    return validate.ip(ip)


# ---- structure --------------------------------------------------------------------------------
class Node:
    """A statement (``children is None``) or a block; words are read only when asked for."""

    __slots__ = ("_masked", "_ws", "_we", "end", "children", "_words")

    def __init__(self, masked: str, ws: int, we: int, end: int, children: list[Node] | None) -> None:
        self._masked, self._ws, self._we = masked, ws, we
        self.end = end  # offset just past ';' or '}'
        self.children = children
        self._words: list[str] | None = None

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = _words(self._masked, self._ws, self._we)
        return self._words

    @property
    def start(self) -> int:
        """Offset of the first word."""
        m = _FIRST.match(self._masked, self._ws, self._we)
        return m.start(1) if m else self._we



class Host(NamedTuple):
    name: str
    macs: tuple[str, ...]
    ips: tuple[str, ...]
    start: int
    end: int
    line: int
    managed: bool
    protected: bool  # inside the DO-NOT-MODIFY section

    @property
    def mac(self) -> str | None:
        return self.macs[0] if self.macs else None

    @property
    def ip(self) -> str | None:
        return self.ips[0] if self.ips else None

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "mac": self.mac, "ip": self.ip, "managed": self.managed,
                "protected": self.protected, "line": self.line}


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file's blocks become objects: they form no
    cycles, and every pass during the scan would walk all of those made so far again."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _new_host(fields: tuple[object, ...]) -> Host:
    """Host(*fields) without the keyword handling of the generated ``__new__`` (called for every
    host block of a file that may hold tens of thousands)."""
    return tuple.__new__(Host, fields)


@dataclass(frozen=True)
class Subnet:
    network: ipaddress.IPv4Network
    ranges: tuple[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address], ...]
    routers: tuple[str, ...]

    def in_range(self, ip: ipaddress.IPv4Address) -> bool:
        return any(lo <= ip <= hi for lo, hi in self.ranges)


_MASKED = re.compile(r'("(?:[^"\\\n]|\\.)*"|\#[^\n]*)')
_FIRST = re.compile(r"\s*(\S+)")
_STRUCT = re.compile(r"[{};\"]")
# inside quoted strings, characters that matter to the structure scan are swapped for
# control characters (and swapped back in words), so the scan runs at regex speed
_HIDDEN = {'"': "\x0f", " ": "\x02", "\t": "\x0e", "{": "\x03", "}": "\x04", ";": "\x05", "#": "\x06"}
_HIDE = str.maketrans(_HIDDEN)
_SHOW = str.maketrans({v: k for k, v in _HIDDEN.items()})


def _mask(text: str) -> str:
    """Same length as ``text``: comments blanked, quoted strings kept but defused."""
    parts = _MASKED.split(text)  # text, token, text, token, …, text
    parts[1::2] = [tok.translate(_HIDE) if tok[0] == '"' else " " * len(tok) for tok in parts[1::2]]
    return "".join(parts)


def _words(masked: str, start: int, end: int) -> list[str]:
    out = []
    for w in masked[start:end].split():
        if w[0] == "\x0f":
            w = w.translate(_SHOW)[1:-1]
        elif "\x0f" in w:
            w = w.translate(_SHOW)
        out.append(w)
    return out


def _parse_nodes(text: str) -> list[Node]:
    masked = _mask(text)
    stack: list[list[Node]] = [[]]
    heads: list[tuple[int, int]] = []
    seg = 0
    for m in _STRUCT.finditer(masked):
        ch, off = m.group(), m.start()
        if ch == '"':
            raise MalformedFile(f"dhcpd.conf line {text.count(chr(10), 0, off) + 1}: "
                                "unterminated quoted string")
        if ch == ";":
            stack[-1].append(Node(masked, seg, off, off + 1, None))
        elif ch == "{":
            heads.append((seg, off))
            stack.append([])
        else:  # "}"
            if not heads:
                line = text.count("\n", 0, off) + 1
                raise MalformedFile(f"dhcpd.conf line {line}: unbalanced '}}'")
            if masked[seg:off].strip():
                line = text.count("\n", 0, off) + 1
                raise MalformedFile(f"dhcpd.conf line {line}: statement without ';' before '}}'")
            children = stack.pop()
            hs, he = heads.pop()
            stack[-1].append(Node(masked, hs, he, off + 1, children))
        seg = off + 1
    if heads:
        line = text.count("\n", 0, heads[-1][0]) + 1
        raise MalformedFile(f"dhcpd.conf line {line}: '{{' is never closed (unbalanced braces)")
    if masked[seg:].strip():
        raise MalformedFile("dhcpd.conf ends inside a statement (missing ';')")
    return stack[0]


_HOST_BLOCK = re.compile(r"(?P<host>host)\s+(?P<name>[^\s{};][^{};]*?)\s*\{(?P<body>[^{}]*)\}")
_SUBNET_HEAD = re.compile(r"subnet\s+(\S+)\s+netmask\s+([^\s{};]+)\s*\{")
_HOST_FIELDS = re.compile(
    r"(?:^|[\s;])(?:hardware\s+ethernet\s+([^\s;]+)|fixed-address\s+([^;]+?))\s*(?=;|$)")
_BOUNDARY = frozenset(" \t\r\n;{}")


def _at_statement_start(masked: str, pos: int) -> bool:
    return pos == 0 or masked[pos - 1] in _BOUNDARY


# the host body labctl writes (and most people do): one MAC, then one address
_PLAIN_BODY = re.compile(r"\s*hardware\s+ethernet\s+([^\s;]+)\s*;\s*fixed-address\s+([^\s;,]+)\s*;\s*")


def _host_fields(body: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The MACs and fixed addresses of a host block's body (comments masked)."""
    macs: list[str] = []
    ips: list[str] = []
    for mac, fixed in _HOST_FIELDS.findall(body):
        if mac:
            macs.append(mac.lower())
        elif "," in fixed or " " in fixed:
            ips.extend(fixed.replace(",", " ").split())
        else:
            ips.append(fixed)
    return tuple(macs), tuple(ips)


def _matching_brace(masked: str, open_at: int) -> int:
    depth = 0
    for m in re.compile(r"[{}]").finditer(masked, open_at):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.start()
    return len(masked)


_NOT_BRACES = bytes(c for c in range(256) if c not in b"{}")
# a statement without ';' before '}', searched in the reversed text: a pattern that starts with
# a literal is found at C speed, one that starts with a class of characters is not
_MISSING_SEMI_REVERSED = re.compile(r"\}\s*[^\s;{}]")


def _check_structure(text: str, masked: str) -> None:
    """Balanced braces, no stray quote, every statement ended by ';' — at C speed; the exact
    parser runs only to name the line of a problem."""
    braces = masked.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACES)
    prev = None
    while braces and braces != prev:
        prev, braces = braces, braces.replace(b"{}", b"")
    trailing = masked[max(masked.rfind(";"), masked.rfind("}")) + 1:].strip()
    if braces or '"' in masked or _MISSING_SEMI_REVERSED.search(masked[::-1]) or trailing:
        _parse_nodes(text)  # raises MalformedFile with the line
        raise MalformedFile("dhcpd.conf does not parse")


def _walk(nodes: list[Node]):
    for node in nodes:
        yield node
        if node.children:
            yield from _walk(node.children)


# BEGIN_TAG / END_TAG lines, with a literal head that the scan finds at C speed
_TAG_LINE = re.compile(r"# labctl: (?:(b)egin|end) reservation (\S+)[ \t]*(?:\r?\n|$)", re.M)


def _managed_spans(text: str) -> dict[str, tuple[int, int]]:
    """name -> (start, end) of each labctl block: from the line break before its BEGIN tag to
    the end of the first END tag line of the same name after it (when several BEGIN tags of
    one name wait for that END tag, the last of them).  One pass over the text, pairing tags
    as they come (a pattern per name would be compiled again for every block)."""
    spans: dict[str, tuple[int, int]] = {}
    waiting: dict[str, tuple[int, int]] = {}  # name -> (first, last) BEGIN tag not yet closed
    first_paired: dict[str, int] = {}
    interleaved = False
    for m in _TAG_LINE.finditer(text):
        start, end = m.span()
        if start and text[start - 1] != "\n":
            continue  # a tag counts only at the start of a line
        begin, name = m.groups()
        if begin:
            w = waiting.get(name)
            waiting[name] = (w[0] if w else start, start)
            continue
        w = waiting.pop(name, None)
        if w is None:
            continue
        if waiting:
            interleaved = True
        first_paired.setdefault(name, w[0])
        spans[name] = (w[1], end)
    if interleaved:  # keys in the order of each name's first closed BEGIN tag, as they are read
        spans = {name: spans[name] for name in sorted(spans, key=first_paired.__getitem__)}
    for name, (start, end) in spans.items():
        # the block starts with the line break before its BEGIN tag (see reservation_block)
        if text.endswith("\r\n", 0, start):
            spans[name] = (start - 2, end)
        elif text.endswith("\n", 0, start):
            spans[name] = (start - 1, end)
    return spans


class DhcpdConf:
    """A parsed dhcpd.conf.  ``text`` is the file as read; edits return new text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._newlines: array.array[int] | None = None
        self.masked = _mask(text)
        _check_structure(text, self.masked)
        self.end_marker = self._find_end_marker()
        with _no_cycle_collection():  # tens of thousands of tuples, none of them in a cycle
            self.hosts = self._hosts()
        self.subnets = self._subnets()

    @classmethod
    def parse(cls, data: bytes) -> DhcpdConf:
        return cls(decode(data))

    def dump(self) -> bytes:
        return encode(self.text)

    # -- facts ----------------------------------------------------------------------------------
    def line_of(self, offset: int) -> int:
        if self._newlines is None:
            self._newlines = array.array("q", (m.start() for m in re.finditer("\n", self.text)))
        return bisect.bisect_left(self._newlines, offset) + 1

    def _find_end_marker(self) -> int | None:
        """Offset just past the End-of-DO-NOT-MODIFY line (its newline included)."""
        idx = self.text.find(END_MARKER)
        if idx < 0:
            return None
        nl = self.text.find("\n", idx)
        return len(self.text) if nl < 0 else nl + 1

    @property
    def has_protected_section(self) -> bool:
        return self.end_marker is not None

    @property
    def protected_text(self) -> str:
        """Everything up to and including the End line: never changed by labctl."""
        if self.end_marker is None:
            return ""
        return self.text[: self.end_marker]

    def _managed_spans(self) -> dict[str, tuple[int, int]]:
        spans = self.__dict__.get("_spans")
        if spans is None:
            spans = self.__dict__["_spans"] = _managed_spans(self.text)
        return spans

    def _hosts(self) -> list[Host]:
        managed = self._managed_spans()
        masked, text = self.masked, self.text
        marker = -1 if self.end_marker is None else self.end_marker
        plain_body = _PLAIN_BODY.fullmatch
        hosts = []
        at, line = 0, 1  # line numbers counted as the scan moves forward (no table of lines)
        for m in _HOST_BLOCK.finditer(masked):
            start, end = m.span()
            if start and masked[start - 1] not in _BOUNDARY:
                continue  # not at the start of a statement
            line += text.count("\n", at, start)
            at = start
            name, body = m.group("name", "body")
            if "\x0f" in name or len(name.split()) != 1:
                name = " ".join(_words(masked, m.start("name"), m.end("name")))
            if "\x0f" in body:
                body = body.translate(_SHOW)
            plain = plain_body(body)
            macs: tuple[str, ...]
            ips: tuple[str, ...]
            if plain is not None:  # one MAC and one address, as labctl writes them
                macs, ips = (plain.group(1).lower(),), (plain.group(2),)
            else:
                macs, ips = _host_fields(body)
            span = managed.get(name)
            is_managed = span is not None and span[0] <= start and end <= span[1]
            hosts.append(_new_host((name, macs, ips, start, end, line, is_managed, start < marker)))
        return hosts

    def _subnets(self) -> list[Subnet]:
        out = []
        masked = self.masked
        for m in _SUBNET_HEAD.finditer(masked):
            if not _at_statement_start(masked, m.start()):
                continue
            try:
                net = ipaddress.IPv4Network(f"{m.group(1)}/{m.group(2)}", strict=False)
            except ValueError:
                continue
            body = masked[m.end():_matching_brace(masked, m.end() - 1)]
            ranges: list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]] = []
            routers: list[str] = []
            for stmt in body.split(";"):
                cw = [x for x in _words(stmt, 0, len(stmt)) if x not in ("dynamic-bootp", "{", "}")]
                try:
                    if cw and cw[0] == "range" and len(cw) >= 2:
                        lo = ipaddress.IPv4Address(cw[1])
                        hi = ipaddress.IPv4Address(cw[2]) if len(cw) > 2 else lo
                        ranges.append((lo, hi))
                except ValueError:
                    continue
                if cw[:2] == ["option", "routers"]:
                    routers.extend(x.strip(",") for x in cw[2:])
            out.append(Subnet(net, tuple(ranges), tuple(routers)))
        return out

    @property
    def subnet(self) -> Subnet | None:
        return self.subnets[0] if self.subnets else None

    def host(self, name: str) -> Host | None:
        for h in self.hosts:
            if h.name == name:
                return h
        return None

    def docker_machine_lookup(self, mac: str) -> str | None:
        """The IP docker-machine's Fusion driver would read for ``mac`` (its own rules)."""
        in_host = False
        cur_mac = cur_ip = None
        for line in self.text.split("\n"):
            if DM_HOST.match(line):
                in_host, cur_mac, cur_ip = True, None, None
                continue
            if not in_host:
                continue
            if m := DM_MAC.match(line):
                cur_mac = m.group(1)
            if m := DM_IP.match(line):
                cur_ip = m.group(1)
            if DM_END.match(line):
                in_host = False
                if cur_mac and cur_ip and cur_mac.lower() == mac.lower():
                    return cur_ip
        return None

    # -- edits ----------------------------------------------------------------------------------
    def require_protected_section(self) -> None:
        if self.end_marker is None:
            raise MalformedFile(
                f"dhcpd.conf has no '{END_MARKER}' line, so labctl cannot tell VMware's part "
                "from yours; nothing was changed",
                "let VMware regenerate the file (Fusion: vmnet-cli --configure) and try again",
            )

    def pick_free_ip(self) -> ipaddress.IPv4Address:
        sub = self._require_subnet()
        taken = {ip for h in self.hosts for ip in h.ips}
        taken.update(sub.routers)
        net = sub.network
        first, last = int(net.network_address) + 3, int(net.broadcast_address) - 1
        ntoa = socket.inet_ntoa
        for lo, hi in _outside(first, last, [(int(a), int(b)) for a, b in sub.ranges]):
            for value in range(lo, hi + 1):  # ints and inet_ntoa: fast on files with 10,000 hosts
                if ntoa(value.to_bytes(4, "big")) not in taken:
                    return ipaddress.IPv4Address(value)
        raise Conflict(f"no free address outside the dynamic range in {net}",
                       "release a reservation or shrink the range")

    def _require_subnet(self) -> Subnet:
        if self.subnet is None:
            raise MalformedFile("dhcpd.conf declares no subnet")
        return self.subnet

    def check_ip(self, ip: ipaddress.IPv4Address) -> None:
        sub = self._require_subnet()
        net = sub.network
        if ip not in net:
            raise InvalidInput(f"{ip} is outside the vmnet's subnet {net}")
        offset = int(ip) - int(net.network_address)
        if ip in (net.network_address, net.broadcast_address):
            raise InvalidInput(f"{ip} is the network or broadcast address of {net}")
        if offset in (1, 2):
            raise InvalidInput(f"{ip} is reserved for the host (.1) or the NAT gateway (.2)")
        if sub.in_range(ip):
            lo, hi = next(r for r in sub.ranges if r[0] <= ip <= r[1])
            raise InvalidInput(
                f"{ip} is inside the dynamic range {lo}-{hi}, where it could be leased to "
                "another VM", "pick an address outside it, or --ip auto")

    @property
    def eol(self) -> str:
        """The file's line ending: CRLF when most of its lines end so, else LF."""
        crlf = self.text.count("\r\n")
        return "\r\n" if crlf and crlf * 2 >= self.text.count("\n") else "\n"

    def reservation_block(self, name: str, mac: str, ip: str) -> str:
        return (f"\n{BEGIN_TAG}{name}\nhost {name} {{\n\thardware ethernet {mac};\n"
                f"\tfixed-address {ip};\n}}\n{END_TAG}{name}\n")

    def require_lf(self) -> None:
        """A reservation is written with LF line ends, the only ones docker-machine's patterns
        read (a CR before the LF breaks them); in a CRLF file that would mix line endings."""
        if self.eol == "\r\n":
            raise MalformedFile("this dhcpd.conf has CRLF (Windows) line endings: a reservation in "
                                "it would mix line endings, and docker-machine cannot read CRLF "
                                "lines; nothing was changed",
                                "convert the file to LF line endings (e.g. dos2unix FILE), then "
                                "run the command again")

    # -- what dhcpd itself would refuse ---------------------------------------------------------------
    def problems(self) -> list[str]:
        """Why ISC dhcpd (``dhcpd -t``) would reject this file, for the faults labctl can see:
        a byte-order mark, two host blocks with one name, a MAC that is not colon-separated."""
        out = []
        if self.text.startswith("\ufeff"):
            out.append("the file starts with a byte-order mark (BOM)")
        seen: dict[str, int] = {}
        for h in self.hosts:
            if h.name in seen:
                out.append(f"host {h.name} is declared twice (lines {seen[h.name]} and {h.line})")
            seen.setdefault(h.name, h.line)
            for mac in h.macs:
                if not _DHCPD_MAC.fullmatch(mac):
                    out.append(f"host {h.name} (line {h.line}) has the hardware address {mac}, "
                               "which dhcpd does not read (it wants colon-separated hex)")
        return out

    def require_accepted(self) -> None:
        """Refuse to edit a file dhcpd already rejects: the edit would be blamed for it."""
        found = self.problems()
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise MalformedFile(f"dhcpd would reject this dhcpd.conf: {found[0]}{more}; labctl does "
                                "not edit it, nothing was changed",
                                "fix the file (check it with: dhcpd -t -cf FILE), then run the "
                                "command again")

    def plan_reserve(self, name: str, mac: str, ip: str | None) -> tuple[str, str]:
        """Return (new_text, ip).  new_text == self.text means nothing to do."""
        check_name(name)
        mac = normalize_mac(mac)
        self.require_protected_section()
        mine = self.host(name)
        if mine is not None and not mine.managed:
            raise Conflict(f"a host block named {name!r} that labctl did not write exists "
                           f"(line {mine.line}); labctl will not change it",
                           "choose another name or edit that block yourself")
        if ip is None and mine is not None and mine.mac == mac and mine.ip:
            ip = mine.ip
        addr = parse_ip(ip) if ip is not None else self.pick_free_ip()
        if not (mine is not None and mine.ip == str(addr)):
            self.check_ip(addr)
        addr_s = str(addr)
        for h in self.hosts:
            if (mac in h.macs or addr_s in h.ips) and not (h.name == name and h.managed):
                what = "not written by labctl" if not h.managed else "written by labctl"
                if mac in h.macs:
                    raise Conflict(f"MAC {mac} is already reserved by host {h.name!r} "
                                   f"(line {h.line}, {what})", "release it first or use another MAC")
                raise Conflict(f"{addr} is already reserved by host {h.name!r} "
                               f"(line {h.line}, {what})", "pick another address or --ip auto")
        if mine is not None and mine.mac == mac and mine.ip == str(addr) and len(mine.macs) == 1:
            return self.text, str(addr)
        self.require_accepted()
        self.require_lf()
        base = self.text if mine is None else self._without(name)
        return base + self.reservation_block(name, mac, str(addr)), str(addr)

    def _without(self, name: str) -> str:
        """The text without labctl's block for ``name``: the whole span between its markers
        when that holds nothing else (the bytes from before the block was added); else only
        the marker lines and labctl's own host block, and everything else stays."""
        span = self._managed_spans().get(name)
        if span is None:
            return self.text
        a, b = span
        cuts = self._own_lines(name, a, b)
        rest = "".join(self.text[x:y] for x, y in _gaps(a, b, cuts))
        if not rest.strip():
            return self.text[:a] + self.text[b:]
        return self.text[:a] + rest + self.text[b:]

    def _own_lines(self, name: str, a: int, b: int) -> list[tuple[int, int]]:
        """Offsets of labctl's lines inside the span [a, b): its BEGIN and END tag lines and
        its host block (whole lines, line breaks included)."""
        text = self.text
        cuts = []
        for tag in (BEGIN_TAG, END_TAG):
            m = re.compile(r"(?m)^" + re.escape(tag + name) + r"[ \t]*(\r?\n|$)").search(text, a, b)
            if m:
                cuts.append((m.start(), m.end()))
        for h in self.hosts:
            if h.managed and h.name == name and a <= h.start and h.end <= b:
                start = text.rfind("\n", a, h.start) + 1 or a
                if text[start:h.start].strip():
                    start = h.start
                m = re.compile(r"[ \t]*(\r?\n|$)").match(text, h.end)
                cuts.append((start, m.end() if m else h.end))
        return sorted(cuts)

    def kept_in_span(self, name: str) -> list[str]:
        """What sits between labctl's markers for ``name`` that is not labctl's (kept when the
        block is removed): other host blocks by name, or "other lines"."""
        span = self._managed_spans().get(name)
        if span is None:
            return []
        a, b = span
        others = [f"host {h.name} (line {h.line})" for h in self.hosts
                  if a <= h.start < b and not (h.managed and h.name == name)]
        if others:
            return others
        rest = "".join(self.text[x:y] for x, y in _gaps(a, b, self._own_lines(name, a, b)))
        return ["other lines"] if rest.strip() else []

    def plan_release(self, name: str) -> str:
        check_name(name)
        self.require_protected_section()
        h = self.host(name)
        if h is not None and not h.managed:
            raise Conflict(f"host {name!r} (line {h.line}) was not written by labctl; "
                           "labctl does not remove it", "edit the file yourself if you mean to")
        if name not in self._managed_spans():
            return self.text
        self.require_accepted()
        return self._without(name)

    def managed_blocks(self) -> dict[str, str]:
        return {n: self.text[a:b] for n, (a, b) in self._managed_spans().items()}


def _outside(first: int, last: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [first, last] (inclusive) outside every (inclusive) range, in order."""
    out, pos = [], first
    for lo, hi in sorted(ranges):
        if lo > hi:
            continue  # an empty range
        if lo > pos:
            out.append((pos, min(lo - 1, last)))
        pos = max(pos, hi + 1)
    if pos <= last:
        out.append((pos, last))
    return [(lo, hi) for lo, hi in out if lo <= hi]


def _gaps(a: int, b: int, cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [a, b) outside the (sorted) cuts."""
    out, pos = [], a
    for x, y in cuts:
        if x > pos:
            out.append((pos, x))
        pos = max(pos, y)
    if pos < b:
        out.append((pos, b))
    return out


def _common_ends(a: str, b: str) -> tuple[int, int]:
    """Lengths of the longest common prefix and (not overlapping it) suffix of ``a`` and ``b``,
    found by comparing chunks at C speed (an edit changes one place of a large file)."""
    n = min(len(a), len(b))
    if b.startswith(a) or a.startswith(b):
        p = n
    else:
        lo, hi = 0, n  # a[:lo] == b[:lo], and a[:hi] != b[:hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if a[lo:mid] == b[lo:mid]:
                lo = mid
            else:
                hi = mid
        p = lo
    limit = n - p
    if a.endswith(b[len(b) - limit:]):
        return p, limit
    lo, hi = 0, limit  # same, from the end
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[len(a) - mid:len(a) - lo] == b[len(b) - mid:len(b) - lo]:
            lo = mid
        else:
            hi = mid
    return p, lo


def _edited_mask(old: DhcpdConf, new_text: str) -> tuple[str, int, int, int]:
    """``_mask(new_text)``, masking only the lines an edit of ``old`` changed: masking never
    crosses a line break (comments and quoted strings end at one), so whole lines the two texts
    share keep their mask.  Returns (masked, start, end in the old text, end in the new one) of
    the changed lines."""
    text = old.text
    p, s = _common_ends(text, new_text)
    start = text.rfind("\n", 0, p) + 1
    nl = text.find("\n", len(text) - s)
    old_end = len(text) if nl < 0 else nl + 1
    new_end = old_end + len(new_text) - len(text)
    masked = old.masked[:start] + _mask(new_text[start:new_end]) + old.masked[old_end:]
    return masked, start, old_end, new_end


_SPACE_RUN = re.compile(r"\s*")


def _edit_keeps_structure(old: DhcpdConf, masked: str, start: int, old_end: int,
                          new_end: int) -> bool:
    """True when the edited text is well-formed, knowing that ``old`` is and that only
    [start, new_end) of ``masked`` (once [start, old_end) of the old mask) differs.  False
    means "not shown here": the whole check runs then (and names the line)."""
    middle = masked[start:new_end]
    if '"' in middle:
        return False
    # braces: the depth at ``start`` is the old one; the new lines may not go below zero and
    # must leave the depth where the old lines left it (the rest then closes as before)
    depth0 = old.masked.count("{", 0, start) - old.masked.count("}", 0, start)
    old_middle = old.masked[start:old_end]
    if middle.count("{") - middle.count("}") != old_middle.count("{") - old_middle.count("}"):
        return False
    depth = depth0
    for brace in re.findall(r"[{}]", middle):
        depth += 1 if brace == "{" else -1
        if depth < 0:
            return False
    # a statement without ';' before '}': every such match involving the new lines lies
    # between the last word before them and the first word after them
    chunk_from = max(0, start - 4096)
    before = masked[chunk_from:start].rstrip()
    if before:
        lo = chunk_from + len(before) - 1
    elif chunk_from == 0:
        lo = 0
    else:  # a long run of blank space before the edit: not worth a special case
        return False
    hi = _SPACE_RUN.match(masked, new_end).end() + 1  # type: ignore[union-attr]
    if _MISSING_SEMI_REVERSED.search(masked[lo:hi][::-1]):
        return False
    trailing = masked[max(masked.rfind(";"), masked.rfind("}")) + 1:]
    return not trailing.strip()


def validate_edit(old: DhcpdConf, new_text: str) -> None:
    """Checks a new dhcpd.conf before it replaces the old one: it parses, VMware's section is
    byte-identical, and docker-machine's patterns read every labctl block it adds or changes."""
    masked, start, old_end, new_end = _edited_mask(old, new_text)
    if not _edit_keeps_structure(old, masked, start, old_end, new_end):
        _check_structure(new_text, masked)
    new_marker = new_text.find(END_MARKER)
    # the End line's own line break may come or go (a file ending right at the End line gains
    # one when a block is appended, and loses it again on release); nothing else may change
    core = old.protected_text.rstrip("\r\n")
    if old.end_marker is not None and (new_marker < 0 or not new_text.startswith(core)
                                       or new_text[len(core):len(core) + 1] not in ("", "\n", "\r")):
        raise MalformedFile("refusing to write: the DO-NOT-MODIFY section would change")
    before = old._managed_spans()
    for name, (a, b) in _changed_spans(old, new_text, start, old_end, new_end).items():
        was = before.get(name)
        if was is not None and old.text[was[0]:was[1]] == new_text[a:b]:
            continue  # the same bytes as in the file read (checked when they were written)
        block = DhcpdConf(new_text[a:b])
        h = block.host(name)
        if h is None or not h.mac or block.docker_machine_lookup(h.mac) != h.ip:
            raise MalformedFile(f"refusing to write: docker-machine could not read host {name}")


def _changed_spans(old: DhcpdConf, new_text: str, start: int, old_end: int,
                   new_end: int) -> dict[str, tuple[int, int]]:
    """The spans in ``new_text`` of every labctl block whose bytes may differ from the old
    text's block of that name, when only the lines [start, old_end) of the old text became
    [start, new_end).  A name with no tag in those lines has the same tags, in the same order,
    as before, so the same pairing: its block moved as a whole, or it contains the changed
    lines.  So: the names tagged in the changed lines and those whose block contains them."""
    if start == 0 and old_end == len(old.text):
        return _managed_spans(new_text)
    names = {name for text, end in ((old.text, old_end), (new_text, new_end))
             for name in _tag_names(text, start, end)}
    names.update(name for name, (a, b) in old._managed_spans().items() if a < old_end and b > start)
    spans = {}
    for name in sorted(names):
        span = _span_of(new_text, name)
        if span is not None:
            spans[name] = span
    return spans


def _tag_names(text: str, start: int, end: int) -> set[str]:
    return {m.group(2) for m in _TAG_LINE.finditer(text, start, end)
            if m.start() == 0 or text[m.start() - 1] == "\n"}


_TAG_TAIL = re.compile(r"[ \t]*(?:\r?\n|$)", re.M)


def _span_of(text: str, name: str) -> tuple[int, int] | None:
    """``_managed_spans(text).get(name)``, searching for this name's tags only."""
    tags = []
    for is_begin, tag in ((True, BEGIN_TAG + name), (False, END_TAG + name)):
        at = text.find(tag)
        while at >= 0:
            tail = _TAG_TAIL.match(text, at + len(tag))
            if tail is not None and (at == 0 or text[at - 1] == "\n"):
                tags.append((at, is_begin, tail.end()))
            at = text.find(tag, at + 1)
    span = None
    waiting: int | None = None
    for at, is_begin, end in sorted(tags):
        if is_begin:
            waiting = at
        elif waiting is not None:
            span, waiting = (waiting, end), None
    if span is None:
        return None
    begin, end = span
    if text.endswith("\r\n", 0, begin):
        begin -= 2
    elif text.endswith("\n", 0, begin):
        begin -= 1
    return begin, end
