"""Routes that appear after ``up`` and overlap the lab: typically a corporate VPN that connects
later and routes 172.16.0.0/12 (which covers Fusion's 172.16.x vmnets and Docker's 172.17+).

labctl never touches such a route (it is not labctl's; fighting a VPN client over the table
breaks both).  It tells the user once per appearance, with the fix: move the lab's engine
subnets (or its vmnet) out of the VPN's range.  ``route watch`` checks the table every few
seconds; the boot unit's ``route sync --offline`` checks on each run and remembers what it
already said in labctl's state, so a route is reported again only after it went away and came
back.  Everything here is pure (table + records -> overlaps, texts)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from labctl.routes.analysis import _relevant, gateway_link
from labctl.routes.model import LINK, IPv4Network, Route
from labctl.routes.records import Record

STATE_KEY = "route_overlaps"  # labctl state: the overlaps already reported (by the boot unit)
# where labctl suggests moving an engine: private ranges VPNs rarely claim
_FREE_FROM = [IPv4Network(f"10.{n}.0.0/16") for n in range(200, 250)]


@dataclass(frozen=True)
class Overlap:
    """A route labctl did not make that overlaps a lab subnet."""

    route: Route
    lab: IPv4Network
    what: str  # "engine" (a subnet labctl routes to a machine's containers) or "vmnet"
    machine: str = ""

    @property
    def key(self) -> str:
        r = self.route
        return f"{r.destination} {r.gateway or '-'} {r.interface or '-'} | {self.lab}"

    @property
    def shadows(self) -> bool:
        """The other route is at least as specific: lab addresses in it no longer reach the lab
        (equal prefixes: whichever the kernel prefers; labctl does not compete)."""
        return self.route.destination.prefixlen >= self.lab.prefixlen


def find(table: list[Route], records: Iterable[Record]) -> list[Overlap]:
    """Pure: every route in ``table`` that labctl did not make and that overlaps a subnet labctl
    routes to a lab machine, or the vmnet those routes go through.  Default routes and routes
    wider than /8 (a VPN's 0.0.0.0/1 + 128.0.0.0/1 "all traffic" pair) are not overlaps: the
    lab's more specific routes keep winning over them."""
    recs = list(records)
    ours = {(r.destination, r.gateway) for r in recs}
    gateways = {r.gateway for r in recs}
    labs: list[tuple[IPv4Network, str, str]] = [(r.destination, "engine", r.machine) for r in recs]
    vmnets = set()
    for r in recs:
        link = gateway_link(table, r.gateway)
        if link is not None and link.destination not in vmnets:
            vmnets.add(link.destination)
            labs.append((link.destination, "vmnet", r.machine))
    out: list[Overlap] = []
    for route in _relevant(table):
        if route.is_default or route.destination.prefixlen < 8:
            continue
        if (route.destination, route.gateway) in ours:
            continue
        if route.gateway is not None and route.gateway in gateways:
            continue  # another route into the lab VM: the lab's own business
        if route.kind == LINK and route.destination in vmnets:
            continue  # the vmnet itself
        for lab, what, machine in labs:
            if route.destination.overlaps(lab):
                out.append(Overlap(route, lab, what, machine))
    return out


def free_blocks(table: list[Route], records: Iterable[Record], n: int = 2) -> list[IPv4Network]:
    busy = [r.destination for r in _relevant(table) if r.destination.prefixlen >= 8]
    busy += [r.destination for r in records]
    out: list[IPv4Network] = []
    for b in _FREE_FROM:
        if not any(b.overlaps(x) for x in busy + out):
            out.append(b)
        if len(out) == n:
            break
    return out


def fix(o: Overlap, table: list[Route], records: Iterable[Record]) -> str:
    name = o.machine or "MACHINE"
    if o.what == "vmnet":
        return (f"give the lab's vmnet a subnet outside {o.route.destination} (labctl down {name} && "
                f"labctl up {name} --vmnet auto --subnet 192.168.N.0/24 with a free N); "
                "labctl leaves the VPN's route alone")
    blocks = free_blocks(table, records)
    if len(blocks) < 2:
        pin = "bip = \"A.B.0.1/16\" and pool = \"C.D.0.0/16\" (ranges free on this desktop)"
    else:
        pin = f"bip = \"{blocks[0].network_address + 1}/16\" and pool = \"{blocks[1]}\""
    return (f"move {name}'s engine subnets out of the VPN's range: in lab.toml pin {pin} for "
            f"{name}, then labctl down {name} && labctl up --config lab.toml (an existing machine "
            "keeps the subnets it was created with; check with --dry-run first); labctl leaves the "
            "VPN's route alone")


def message(o: Overlap, table: list[Route], records: Iterable[Record]) -> str:
    r = o.route
    owner = "a VPN's, not labctl's" if r.via_vpn else "not labctl's"
    where = " ".join([str(r.destination), *([f"via {r.gateway}"] if r.gateway else []),
                      *([f"dev {r.interface}"] if r.interface else [])])
    lab = f"the lab's {'engine subnet' if o.what == 'engine' else 'vmnet'} {o.lab}" + \
        (f" ({o.machine})" if o.machine else "")
    if o.shadows:
        effect = f"addresses of {lab} that it covers no longer reach the lab"
    else:
        effect = (f"{lab} still reaches the lab (its route is more specific), but hosts behind the "
                  f"VPN in {o.lab} are unreachable from this desktop")
    return f"warning: a new route {where} ({owner}) overlaps {lab}: {effect}; fix: " \
           f"{fix(o, table, records)}"


class Reporter:
    """Says each overlap once while it lasts: one that goes away and comes back is said again."""

    def __init__(self, said: Iterable[str] = ()) -> None:
        self.said = set(said)

    def new(self, table: list[Route], records: list[Record]) -> list[str]:
        found = find(table, records)
        current = {o.key for o in found}
        lines = [message(o, table, records) for o in found if o.key not in self.said]
        self.said = current
        return lines
