"""labctl's records of the routes it made (the "routes" list of its state file).  Only a
recorded route is ever replaced or removed by labctl.

Records are written ahead: before a batch changes the kernel's table, every route it will add
is recorded as ``pending: "add"`` (with the ``previous`` gateway of a route it replaces) and
every route it will remove as ``pending: "delete"``.  After the batch, or on the next run if
labctl was killed in between, the table settles each pending record: a route that is there as
intended is adopted, one that is not is dropped (a replaced one falls back to its previous
gateway).  So no route labctl adds is ever left without a record."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from labctl.paths import Paths
from labctl.routes.model import (
    GATEWAY,
    IPv4Address,
    IPv4Network,
    Route,
    cached_address,
    cached_network,
)

if TYPE_CHECKING:
    from labctl.routes.tables import RouteOp


@dataclass(frozen=True)
class Record:
    destination: IPv4Network
    gateway: IPv4Address
    machine: str = ""
    network: str | None = None
    created: str = ""
    pending: str | None = None  # "add" / "delete": written ahead of a batch, not settled yet
    previous: IPv4Address | None = None  # the gateway a pending replace had before

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record | None:
        try:
            pending = data.get("pending")
            previous = data.get("previous")
            network = data.get("network")
            return cls(cached_network(str(data["destination"])), cached_address(str(data["gateway"])),
                       str(data.get("machine") or ""), network if isinstance(network, str) else None,
                       str(data.get("created", "")),
                       pending if pending in ("add", "delete") else None,
                       cached_address(str(previous)) if previous else None)
        except (KeyError, ValueError, TypeError):
            return None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"destination": str(self.destination), "gateway": str(self.gateway),
                                "machine": self.machine, "network": self.network,
                                "created": self.created}
        if self.pending:
            data["pending"] = self.pending
        if self.previous is not None:
            data["previous"] = str(self.previous)
        return data


def is_pending(item: Any) -> bool:
    """Whether a state's route item is a record written ahead and not settled yet."""
    return isinstance(item, dict) and item.get("pending") in ("add", "delete")


def from_state(state: dict[str, Any]) -> list[Record]:
    out = []
    for item in state.get("routes", []):
        if isinstance(item, dict):
            rec = Record.from_dict(item)
            if rec is not None:
                out.append(rec)
    return out


def load(paths: Paths) -> list[Record]:
    from labctl import state as labstate

    return from_state(labstate.load(paths))


def gateway_routes(table: list[Route]) -> set[tuple[IPv4Network, IPv4Address | None]]:
    """(destination, gateway) of every gateway route: what "is this route there" looks up."""
    return {(r.destination, r.gateway) for r in table if r.kind == GATEWAY}


def settle_one(record: Record, table: list[Route],
               there: set[tuple[IPv4Network, IPv4Address | None]] | None = None) -> Record | None:
    """What a record is once the table is known: unchanged if it is not pending; a pending
    one adopted (the route is there as intended), fallen back to its previous gateway, or
    dropped (None).  ``there``: gateway_routes(table), when settling many."""
    if record.pending is None:
        return record
    if there is None:
        there = gateway_routes(table)
    if (record.destination, record.gateway) in there:
        return replace(record, pending=None, previous=None)
    if record.pending == "add" and record.previous is not None \
            and (record.destination, record.previous) in there:
        return replace(record, gateway=record.previous, pending=None, previous=None)
    return None


def settled(records: list[Record], table: list[Route]) -> list[Record]:
    """The records as they are once every pending one is settled against ``table``."""
    there = gateway_routes(table)
    out = []
    for r in records:
        s = settle_one(r, table, there)
        if s is not None:
            out.append(s)
    return out


def settle(state: dict[str, Any], table: list[Route],
           there: set[tuple[IPv4Network, IPv4Address | None]] | None = None) -> bool:
    """Settle the state's pending records against ``table`` in place; True if any changed.
    ``there``: the (destination, gateway) routes known to be in place, instead of the table's."""
    changed = False
    routes = []
    if there is None:
        there = gateway_routes(table)
    for item in state.get("routes", []):
        if not is_pending(item):
            routes.append(item)  # settled (or not a record labctl can read): left as it is
            continue
        record = Record.from_dict(item)
        if record is None:
            routes.append(item)
            continue
        changed = True
        s = settle_one(record, table, there)
        if s is not None:
            routes.append(s.as_dict())
    state["routes"] = routes
    return changed


def intend(state: dict[str, Any], ops: list[RouteOp], machine: str) -> None:
    """Record a batch's routes before it runs (see the module docstring)."""
    current = {r.destination: r for r in from_state(state)}
    batch = []
    for op in ops:
        old = current.get(op.destination)
        if op.action == "delete":
            if old is not None:
                batch.append(replace(old, pending="delete", previous=None))
            continue
        previous = old.gateway if old is not None and old.gateway != op.gateway else None
        batch.append(Record(op.destination, op.gateway, machine or (old.machine if old else ""),
                            op.network if op.network is not None else (old.network if old else None),
                            old.created if old else "", "add", previous))
    put_many(state, batch)


def for_machine(records: list[Record], machine: str | None) -> list[Record]:
    if machine is None:
        return list(records)
    return [r for r in records if r.machine == machine]


def put(state: dict[str, Any], record: Record) -> None:
    """Add or update the record for this destination."""
    put_many(state, [record])


def put_many(state: dict[str, Any], records: list[Record]) -> None:
    """Add or update the records for their destinations (a later one for the same destination
    wins), in one pass over the state's list."""
    if not records:
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new: dict[str, dict[str, Any]] = {}
    for record in records:
        data = record.as_dict()
        if not data["created"]:
            data["created"] = now
        new[str(record.destination)] = data
    routes = [r for r in state.get("routes", [])
              if not (isinstance(r, dict) and r.get("destination") in new)]
    routes.extend(new.values())
    routes.sort(key=lambda r: (str(r.get("machine", "")), str(r.get("destination", ""))))
    state["routes"] = routes


def drop(state: dict[str, Any], destination: IPv4Network) -> None:
    state["routes"] = [r for r in state.get("routes", [])
                       if not (isinstance(r, dict) and r.get("destination") == str(destination))]
