"""Pure checks of wanted routes against the routing table and labctl's records: what to
add, replace or remove, what is already fine, and what clashes with routes labctl did not
make (refused) or overlaps a VPN (warned), each with the exact route and a concrete fix."""

from __future__ import annotations

import bisect
import contextlib
from dataclasses import dataclass, field

from labctl.routes.model import GATEWAY, LINK, IPv4Address, IPv4Network, Route
from labctl.routes.records import Record
from labctl.routes.tables import RouteOp

# Where labctl suggests moving a clashing Docker bridge / address pool.
_SUGGEST_FROM = [IPv4Network("10.200.0.0/16"), IPv4Network("10.210.0.0/16"),
                 IPv4Network("192.168.200.0/22"), IPv4Network("10.99.0.0/16")]


@dataclass(frozen=True)
class Wanted:
    destination: IPv4Network
    gateway: IPv4Address
    network: str | None = None


@dataclass
class Analysis:
    ops: list[RouteOp] = field(default_factory=list)
    present: list[Wanted] = field(default_factory=list)
    foreign_present: list[Wanted] = field(default_factory=list)  # same route, not labctl's
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (message, fix)
    warnings: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)  # a VPN route overlaps a wanted route
    notes: list[str] = field(default_factory=list)


def _relevant(table: list[Route]) -> list[Route]:
    return [r for r in table if r.kind in (GATEWAY, LINK) and not r.destination.is_loopback]


class TableIndex:
    """The relevant routes of a table, indexed so that each question about one destination
    costs O(log n), not a pass over the table: the routes to exactly that destination and the
    routes that overlap it (in table order).  Built once per table."""

    def __init__(self, table: list[Route]) -> None:
        self.table = table
        self.routes = _relevant(table)
        self._exact: dict[tuple[int, int], list[int]] = {}
        starts = []
        for i, r in enumerate(self.routes):
            lo = int(r.destination.network_address)
            self._exact.setdefault((lo, r.destination.prefixlen), []).append(i)
            starts.append((lo, i))
        starts.sort()
        self._starts = starts
        self._keys = [lo for lo, _ in starts]
        self._prefixes = sorted({r.destination.prefixlen for r in self.routes})

    def exact(self, net: IPv4Network) -> list[Route]:
        return [self.routes[i] for i in self._exact.get((int(net.network_address), net.prefixlen), ())]

    def overlapping(self, net: IPv4Network) -> list[Route]:
        """Every route whose destination overlaps ``net`` (itself included), in table order."""
        lo, plen = int(net.network_address), net.prefixlen
        found: set[int] = set()
        for p in self._prefixes:  # the routes that contain net: its supernets
            if p >= plen:
                break
            mask = (0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF
            found.update(self._exact.get((lo & mask, p), ()))
        hi = int(net.broadcast_address)  # the routes inside net: they start in its range
        a, b = bisect.bisect_left(self._keys, lo), bisect.bisect_right(self._keys, hi)
        found.update(i for _, i in self._starts[a:b] if self.routes[i].destination.prefixlen >= plen)
        return [self.routes[i] for i in sorted(found)]


def free_pool(table: list[Route], taken: list[IPv4Network] | None = None) -> IPv4Network | None:
    busy = [r.destination for r in _relevant(table) if r.destination.prefixlen >= 8] + list(taken or [])
    for base in _SUGGEST_FROM:
        if not any(base.overlaps(b) for b in busy):
            return base
    return None


class _FixText:
    """fix_text(table), worked out once, when first needed."""

    def __init__(self, table: list[Route]) -> None:
        self.table = table
        self.text: str | None = None

    def __call__(self) -> str:
        if self.text is None:
            self.text = fix_text(self.table)
        return self.text


def fix_text(table: list[Route], taken: list[IPv4Network] | None = None) -> str:
    pool = free_pool(table, taken)
    if pool is None:
        return "give the Docker network a subnet that overlaps nothing on this host"
    bip = f"{next(pool.hosts())}/24"
    sub = list(pool.subnets(new_prefix=pool.prefixlen + 1))[1]
    return (f"move Docker to a free range, e.g. docker-machine create --engine-opt bip={bip} "
            f"--engine-opt default-address-pool=base={sub},size=24 (or docker network create "
            f"--subnet {list(sub.subnets(new_prefix=24))[0]} for one network)")


def gateway_link(table: list[Route], gateway: IPv4Address) -> Route | None:
    """The directly connected network the gateway sits on (None: not reachable directly)."""
    best = None
    for r in table:
        if r.kind == LINK and not r.is_default and gateway in r.destination and (
                best is None or r.destination.prefixlen > best.destination.prefixlen):
            best = r
    return best


def own_addresses(table: list[Route]) -> set[IPv4Address]:
    """This host's own addresses, as the table shows them: Linux link routes' ``src`` /
    ``prefsrc``, macOS host entries on the loopback interface (``192.168.51.1 … lo0``)."""
    import json

    own: set[IPv4Address] = set()
    for r in table:
        found = None
        if r.raw.startswith("{"):
            try:
                found = json.loads(r.raw).get("prefsrc")
            except ValueError:
                found = None
        else:
            words = r.raw.split()
            if "src" in words[:-1]:
                found = words[words.index("src") + 1]
        if found:
            with contextlib.suppress(ValueError):
                own.add(IPv4Address(str(found)))
        if (r.interface or "").startswith("lo") and r.destination.prefixlen == 32 \
                and not r.destination.is_loopback:
            own.add(r.destination.network_address)
    return own


def analyze_add(wanted: list[Wanted], table: list[Route], records: list[Record]) -> Analysis:
    res = Analysis()
    ours = {r.destination: r for r in records}
    index = TableIndex(table)
    routes = index.routes
    default_gws = [r.gateway for r in routes if r.is_default and r.gateway is not None]
    fix = _FixText(table)
    seen: set[IPv4Network] = set()
    for w in wanted:
        if w.destination in seen:
            continue
        seen.add(w.destination)
        if w.gateway in w.destination:
            res.conflicts.append((f"{w.destination} contains its own gateway {w.gateway}",
                                  "route the container subnet via the VM's address on the vmnet"))
            continue
        exact = index.exact(w.destination)
        rec = ours.get(w.destination)
        clash = False
        same = False
        replace = False
        for r in exact:
            if r.kind == GATEWAY and r.gateway == w.gateway:
                same = True
            elif r.kind == GATEWAY and rec is not None and r.gateway == rec.gateway:
                replace = True
            else:
                kind = "a directly connected network" if r.kind == LINK else "a route labctl did not make"
                res.conflicts.append((
                    f"{w.destination} is already routed: {r.describe()} ({kind}); "
                    f"labctl will not change it",
                    f"remove that route yourself if it is stale, or {fix()}"))
                clash = True
        if clash:
            continue
        for r in index.overlapping(w.destination):
            if r.destination == w.destination or r.is_default:
                continue
            if r.kind == LINK and not r.via_vpn:
                res.conflicts.append((
                    f"{w.destination} overlaps the host network {r.destination} on "
                    f"{r.interface or '?'} ({r.describe()})", fix()))
                clash = True
            elif r.via_vpn and r.destination.prefixlen >= 8:
                res.overlaps.append(
                    f"{w.destination} overlaps the VPN route {r.describe()}: addresses in both "
                    f"go to the more specific route; fix: {fix()}")
            elif r.kind == GATEWAY and r.destination.prefixlen > w.destination.prefixlen:
                res.warnings.append(
                    f"the route {r.describe()} (not labctl's) is more specific than "
                    f"{w.destination}: those addresses will not reach the containers")
        for gw in default_gws:
            if gw in w.destination:
                res.conflicts.append((f"{w.destination} contains the default gateway {gw}",
                                      fix()))
                clash = True
        if clash:
            continue
        if same:
            if rec is None:
                res.foreign_present.append(w)
                res.notes.append(f"{w.destination} via {w.gateway} already exists and was not made by "
                                 "labctl: left alone (labctl will never remove it)")
            else:
                res.present.append(w)
        elif replace:
            res.ops.append(RouteOp("replace", w.destination, w.gateway, w.network))
        else:
            res.ops.append(RouteOp("add", w.destination, w.gateway, w.network))
    if res.ops:
        from labctl.validate import gateway_on_link

        own = own_addresses(table)
        for gw in sorted({op.gateway for op in res.ops}):
            link = gateway_link(table, gw)
            if link is None:
                res.conflicts.append((
                    f"gateway {gw} is not on any network this host is attached to",
                    "start the VM and check the vmnet host adapter is up (labctl vmnet ls), "
                    "or pass --via with the VM's address on the vmnet"))
                continue
            problem = gateway_on_link(gw, link.destination, own, link.interface)
            if problem:
                res.conflicts.append((problem, "pass --via with the VM's address on the vmnet "
                                               "(labctl dhcp ls shows its reservation)"))
    return res


def analyze_remove(records: list[Record], table: list[Route]) -> Analysis:
    """Remove labctl's recorded routes; a route that changed hands is left and forgotten."""
    res = Analysis()
    index = TableIndex(table)
    for rec in records:
        exact = index.exact(rec.destination)
        mine = [r for r in exact if r.kind == GATEWAY and r.gateway == rec.gateway]
        if mine:
            res.ops.append(RouteOp("delete", rec.destination, rec.gateway, rec.network))
        elif exact:
            res.notes.append(f"{rec.destination} now routes {exact[0].describe()}, which labctl did not "
                             "make: left alone, record forgotten")
        else:
            res.notes.append(f"{rec.destination} via {rec.gateway} is already gone")
    return res


def route_state(rec: Record, table: list[Route] | TableIndex,
                live_networks: set[IPv4Network] | None) -> str:
    """present / missing / conflicting / stale (its Docker network is gone).  For many records,
    pass one :class:`TableIndex` of the table."""
    index = table if isinstance(table, TableIndex) else TableIndex(table)
    exact = index.exact(rec.destination)
    if live_networks is not None and rec.destination not in live_networks:
        return "stale"
    if any(r.kind == GATEWAY and r.gateway == rec.gateway for r in exact):
        return "present"
    if exact:
        return "conflicting"
    return "missing"
