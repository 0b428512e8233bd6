"""Facts the route commands gather (engine networks, the gateway to use) and the plans they
build from them.  Probes only read; the plans are applied by the command layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labctl.errors import InvalidInput, LabctlError, PreconditionMissing
from labctl.paths import Paths
from labctl.routes import records as rec
from labctl.routes.analysis import Wanted
from labctl.routes.model import IPv4Address, IPv4Network, parse_gateway
from labctl.runner import Runner


@dataclass
class EngineFacts:
    version: str
    networks: list[Any]  # engine.EngineNetwork
    target: Any = None
    warnings: dict[str, str] = field(default_factory=dict)  # network name -> what may not work
    _client: Any = field(default=None, repr=False)

    @property
    def client(self) -> Any:
        """The SDK client, connected on first use (only changes to the engine need it)."""
        if self._client is None:
            from labctl import engine

            self._client = engine.connect(self.target)
        return self._client

    @property
    def subnets(self) -> set[IPv4Network]:
        return {s for n in self.networks for s in n.subnets}


def engine_facts(paths: Paths, machine: str | None, docker_host: str | None,
                 runner: Runner | None = None) -> EngineFacts:
    from labctl import engine

    target = engine.resolve_target(paths, machine, docker_host, runner)
    reader = engine.read(target)
    try:
        version = engine.engine_version(reader)
        networks = engine.list_networks(reader)
    finally:
        reader.close()
    facts = EngineFacts(version, networks, target)
    facts.warnings.update(reachability_warnings(version, networks))
    return facts


def reachability_warnings(version: str, networks: list[Any]) -> dict[str, str]:
    """Engine >= 28: the networks routed traffic reaches on published ports only (by name)."""
    from labctl import engine

    out = {}
    for n in networks:
        if engine.reachability(version, n) == "published-only":
            out[n.name] = (f"Engine {version} drops routed traffic to unpublished ports on "
                           f"network {n.name} ({', '.join(map(str, n.subnets))}): only published ports "
                           f"are reachable there; fix: {engine.unprotect_advice(n)}")
    return out


def wanted_from_networks(networks: list[Any], gateway: IPv4Address) -> list[Wanted]:
    out = []
    for n in networks:
        for s in n.subnets:
            out.append(Wanted(s, gateway, n.name))
    return out


def fixed_ip(paths: Paths, machine: str) -> str | None:
    """The machine's fixed address (labctl.facts defines it: labctl's record, else its
    labctl reservation on the machine's vmnet)."""
    from labctl.facts import Facts

    try:
        return Facts(paths).fixed_ip(machine)
    except LabctlError:
        return None


def resolve_via(paths: Paths, machine: str | None, via: str | None, docker_host: str | None,
                runner: Runner | None = None) -> IPv4Address:
    """--via, else the machine's fixed IP (labctl reservation), else ``docker-machine ip``,
    else the address in --docker-host / DOCKER_HOST."""
    import os

    if docker_host:
        from labctl.engine import check_docker_host

        check_docker_host(docker_host)
    if via:
        return parse_gateway(via)
    if machine:
        ip = fixed_ip(paths, machine)
        if ip:
            return parse_gateway(ip)
        from labctl import engine

        try:
            return parse_gateway(engine.machine_ip(paths, machine, runner))
        except PreconditionMissing:
            if not docker_host:
                raise
    url = docker_host or os.environ.get("DOCKER_HOST")
    if url:
        from labctl.engine import EngineTarget

        host = EngineTarget(url).host
        if host:
            return parse_gateway(host)
    raise InvalidInput("no gateway: pass --via IP (the VM's address on the vmnet) or name the machine")


def parse_subnets(values: list[str] | None) -> list[IPv4Network]:
    from labctl.routes.model import parse_cidr

    return [parse_cidr(v) for v in values or []]


def records_for(paths: Paths, machine: str | None) -> list[rec.Record]:
    return rec.for_machine(rec.load(paths), machine)


def sync_plan(paths: Paths, machine: str | None, via: str | None, docker_host: str | None,
              offline: bool, facts: EngineFacts | None = None) -> Any:
    """``route sync``: routes for the engine's networks (``offline``: labctl's recorded
    routes, re-added where missing; what the boot unit runs)."""
    from labctl.routes.planner import plan_add, plan_sync
    from labctl.routes.tables import read_table

    records = rec.load(paths)
    mine = rec.for_machine(records, machine)
    if offline:
        wanted = [Wanted(r.destination, r.gateway, r.network) for r in mine]
        table = read_table(paths)
        plan = plan_add(paths, wanted, table, records, machine or "",
                        title="re-apply labctl's recorded routes")
        _overlap_notes(paths, plan, table, records)
        return plan
    gateway = resolve_via(paths, machine, via, docker_host)
    facts = facts or engine_facts(paths, machine, docker_host)
    wanted = wanted_from_networks(facts.networks, gateway)
    mine = rec.for_machine(records, machine or "")  # never another machine's routes
    plan = plan_sync(paths, wanted, read_table(paths), mine, machine or "")
    plan.warnings.extend(facts.warnings.values())
    return plan


def _overlap_notes(paths: Paths, plan: Any, table: list[Any], records: list[rec.Record]) -> None:
    """The boot unit's run: routes labctl did not make that overlap the lab (a VPN), each said
    once while it lasts (what was said is kept in labctl's state)."""
    from labctl import state as labstate
    from labctl.routes.vpn import STATE_KEY, Reporter

    said = labstate.load(paths).get(STATE_KEY) or []
    reporter = Reporter(s for s in said if isinstance(s, str))
    plan.overlaps = []  # said by the reporter instead, once
    plan.notes += reporter.new(table, records)
    if reporter.said != set(said):
        current = sorted(reporter.said)

        def remember(state: dict) -> None:
            state[STATE_KEY] = current

        plan.add(labstate.update_step(paths, "remember the overlapping routes already reported",
                                      remember))
