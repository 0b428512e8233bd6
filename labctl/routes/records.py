"""labctl's records of the routes it made (the "routes" list of its state file).  Only a
recorded route is ever replaced or removed by labctl."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labctl.paths import Paths
from labctl.routes.model import IPv4Address, IPv4Network


@dataclass(frozen=True)
class Record:
    destination: IPv4Network
    gateway: IPv4Address
    machine: str = ""
    network: str | None = None
    created: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record | None:
        try:
            return cls(IPv4Network(str(data["destination"])), IPv4Address(str(data["gateway"])),
                       str(data.get("machine") or ""), data.get("network"), str(data.get("created", "")))
        except (KeyError, ValueError):
            return None

    def as_dict(self) -> dict[str, Any]:
        return {"destination": str(self.destination), "gateway": str(self.gateway),
                "machine": self.machine, "network": self.network, "created": self.created}


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


def for_machine(records: list[Record], machine: str | None) -> list[Record]:
    if machine is None:
        return list(records)
    return [r for r in records if r.machine == machine]


def put(state: dict[str, Any], record: Record) -> None:
    """Add or update the record for this destination."""
    routes = [r for r in state.get("routes", [])
              if not (isinstance(r, dict) and r.get("destination") == str(record.destination))]
    data = record.as_dict()
    if not data["created"]:
        data["created"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    routes.append(data)
    routes.sort(key=lambda r: (str(r.get("machine", "")), str(r.get("destination", ""))))
    state["routes"] = routes


def drop(state: dict[str, Any], destination: IPv4Network) -> None:
    state["routes"] = [r for r in state.get("routes", [])
                       if not (isinstance(r, dict) and r.get("destination") == str(destination))]
