"""labctl route: kernel routes from the desktop to the Docker networks in the VM."""

from __future__ import annotations

import typer

from labctl.commands import args
from labctl.commands.params import complete_machine, repeatable

app = typer.Typer(help="Routes from this host to the containers' subnets, so every container is "
                       "reachable by its own IP.", no_args_is_help=True)

MACHINE = typer.Argument(None, metavar="MACHINE", autocompletion=complete_machine,
                         help="The docker-machine (default: every labctl route / DOCKER_HOST).",
                         callback=args.machine)
DOCKER_HOST = typer.Option(None, "--docker-host", metavar="URL", help="Engine URL instead of a machine "
                           "(tcp://IP:2376 with DOCKER_CERT_PATH, or unix:///path).")
VIA = typer.Option(None, "--via", metavar="IP", help="Gateway: the VM's address on the vmnet (default: its "
                   "labctl reservation, else docker-machine ip).")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the commands; change nothing.")


def _apply(plan, paths, dry_run: bool) -> None:
    from labctl.commands.common import apply

    apply(plan, paths, dry_run)


@app.command("add")
def add(
    machine: str = MACHINE,
    via: str = VIA,
    subnet: list[str] = repeatable("--subnet", "CIDR",
                                   "A subnet to route (repeatable; default: every local network of "
                                   "the Engine)."),
    unprotect: list[str] = repeatable("--unprotect", "NETWORK",
                                      "Engine >= 28: recreate this (empty) network with "
                                      "gateway_mode_ipv4=nat-unprotected so unpublished ports answer "
                                      "routed traffic (repeatable)."),
    docker_host: str = DOCKER_HOST,
    dry_run: bool = DRY_RUN,
) -> None:
    """Route container subnets via the VM (one privileged batch).

    Example: labctl route add lab --dry-run
    """
    from labctl.commands.common import changing
    from labctl.paths import Paths
    from labctl.routes import service
    from labctl.routes.analysis import Wanted
    from labctl.routes.planner import plan_add
    from labctl.routes.tables import read_table

    paths = Paths.detect()
    subnets = service.parse_subnets(subnet)
    gateway = service.resolve_via(paths, machine, via, docker_host)
    with changing(paths, dry_run):
        notes: list[str] = []
        warnings: list[str] = []
        steps: list = []
        if subnets and not unprotect:
            wanted = [Wanted(s, gateway) for s in subnets]
        else:
            facts = service.engine_facts(paths, machine, docker_host)
            steps, unprotect_notes = _unprotect_steps(facts, unprotect or [])
            networks = facts.networks
            if subnets:
                wanted = [Wanted(s, gateway, _network_of(s, networks)) for s in subnets]
            else:
                wanted = service.wanted_from_networks(networks, gateway)
            done = set(unprotect or [])
            warnings = [w for net, w in facts.warnings.items() if net not in done]
            notes = unprotect_notes
        plan = plan_add(paths, wanted, read_table(paths), service.records_for(paths, None),
                        machine or "", title=f"route {len(wanted)} container subnet(s) via {gateway}")
        plan.changes[:0] = steps
        plan.notes.extend(notes)
        plan.warnings.extend(warnings)
        _apply(plan, paths, dry_run)


def _network_of(subnet, networks) -> str | None:
    for n in networks:
        if subnet in n.subnets:
            return n.name
    return None


def _unprotect_steps(facts, names: list[str]) -> tuple[list, list[str]]:
    from labctl import engine
    from labctl.errors import InvalidInput
    from labctl.plan import Step

    steps = []
    notes = []
    by_name = {n.name: n for n in facts.networks}
    for name in names:
        net = by_name.get(name)
        if net is None:
            raise InvalidInput(f"no local Docker network named {name!r} on {facts.target.url}")
        if engine.major(facts.version) < 28:
            notes.append(f"Engine {facts.version} lets routed traffic reach every port; "
                         f"--unprotect {name} is not needed")
            continue
        if net.gateway_mode_ipv4 == engine.UNPROTECTED:
            notes.append(f"network {name} already is {engine.UNPROTECTED}")
            continue
        engine.recreate_args(facts.client.api.inspect_network(net.id))  # refuse early if it has containers

        def fn(ctx, _client=facts.client, _name=name) -> None:
            engine.unprotect(_client, _name)

        steps.append(Step(f"recreate Docker network {name} with {engine.GATEWAY_MODE_V4}="
                          f"{engine.UNPROTECTED}", fn))
    return steps, notes


@app.command("ls")
def ls(
    machine: str = MACHINE,
    json: bool = typer.Option(False, "--json", help="Print JSON."),
    offline: bool = typer.Option(False, "--offline", help="Only labctl's records and the routing table "
                                 "(no Engine: stale routes are not detected)."),
    docker_host: str = DOCKER_HOST,
) -> None:
    """List labctl's routes: destination, gateway, state, and the Docker network served.

    States: present, missing (recorded, not in the table), conflicting (the destination routes
    elsewhere), stale (its Docker network is gone).

    Example: labctl route ls --offline --json
    """
    from labctl import ui
    from labctl.paths import Paths
    from labctl.routes import records
    from labctl.routes.analysis import TableIndex, route_state
    from labctl.routes.tables import read_table

    paths = Paths.detect()
    recs = records.for_machine(records.load(paths), machine)
    live = None
    reach: dict[str, str] = {}
    import os

    if not machine and not docker_host and not os.environ.get("DOCKER_HOST"):
        offline = True  # no engine named: the records and the table are all there is
    if not offline and recs:
        from labctl.errors import LabctlError
        from labctl.routes import service

        try:
            facts = service.engine_facts(paths, machine, docker_host)
            live = facts.subnets
            from labctl import engine

            for n in facts.networks:
                for s in n.subnets:
                    reach[str(s)] = engine.reachability(facts.version, n)
        except LabctlError as exc:
            ui.info(f"labctl: engine not consulted ({exc.message}); stale routes are not detected")
    index = TableIndex(read_table(paths, quick=True) if recs else [])
    rows = [{**r.as_dict(), "state": route_state(r, index, live),
             "ports": reach.get(str(r.destination))} for r in recs]
    if json:
        ui.print_document("routes", {"routes": rows})
        return
    if not rows:
        ui.info("labctl has made no routes")
        return
    _columns(["DESTINATION", "GATEWAY", "STATE", "NETWORK", "MACHINE", "PORTS"],
             [(r["destination"], r["gateway"], r["state"], r["network"] or "-", r["machine"] or "-",
               r["ports"] or "-") for r in rows])


def _columns(header: list[str], rows: list[tuple]) -> None:
    """A plain aligned table (route ls stays as quick to start as a bare typer app)."""
    import sys

    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


@app.command("sync")
def sync(
    machine: str = MACHINE,
    via: str = VIA,
    docker_host: str = DOCKER_HOST,
    offline: bool = typer.Option(False, "--offline", help="Re-add labctl's recorded routes that are "
                                 "missing, without the Engine (what the boot unit runs)."),
    dry_run: bool = DRY_RUN,
) -> None:
    """Add routes for new Docker networks, remove labctl's routes whose network is gone.

    Example: labctl route sync lab
    """
    from labctl.commands.common import changing
    from labctl.paths import Paths
    from labctl.routes import service

    paths = Paths.detect()
    with changing(paths, dry_run):
        plan = service.sync_plan(paths, machine, via, docker_host, offline)
        _apply(plan, paths, dry_run)


@app.command("rm")
def rm(
    machine: str = MACHINE,
    subnet: list[str] = repeatable("--subnet", "CIDR", "A labctl route to remove (repeatable)."),
    all_: bool = typer.Option(False, "--all", help="Every route labctl made (for MACHINE if given)."),
    dry_run: bool = DRY_RUN,
) -> None:
    """Remove routes labctl made (never any other route).

    Example: labctl route rm --all
    """
    from labctl.commands.common import changing
    from labctl.errors import InvalidInput
    from labctl.paths import Paths
    from labctl.routes import service
    from labctl.routes.planner import plan_remove
    from labctl.routes.tables import read_table

    paths = Paths.detect()
    subnets = service.parse_subnets(subnet)
    if not subnets and not all_:
        raise InvalidInput("say what to remove: --subnet CIDR (repeatable) or --all")
    with changing(paths, dry_run):
        mine = service.records_for(paths, machine)
        if subnets:
            known = {r.destination: r for r in mine}
            unknown = [s for s in subnets if s not in known]
            if unknown:
                raise InvalidInput(f"labctl made no route to {unknown[0]}; it removes only its own "
                                   "(see labctl route ls)")
            mine = [known[s] for s in subnets]
        table = read_table(paths) if mine else []
        _apply(plan_remove(paths, mine, table), paths, dry_run)


@app.command("watch")
def watch(
    machine: str = MACHINE,
    via: str = VIA,
    docker_host: str = DOCKER_HOST,
    retry: float = typer.Option(5.0, "--retry", metavar="SECONDS", min=0.05,
                                help="Wait before reconnecting (doubled while it keeps failing, "
                                     "up to 60 s)."),
    check_routes: float = typer.Option(3.0, "--check-routes", metavar="SECONDS",
                                       help="Seconds between two looks at the routing table for "
                                            "routes (a VPN's) overlapping the lab; 0: never."),
) -> None:
    """Follow the Engine's network events and keep the routes in sync (Ctrl-C stops).

    A route labctl did not make that overlaps a lab subnet (a VPN connecting later) is reported
    once, with the fix; labctl never touches it.

    Example: labctl route watch lab
    """
    from labctl.routes.watch import run_watch

    if check_routes < 0:
        from labctl.errors import InvalidInput

        raise InvalidInput(f"--check-routes {check_routes:g}: expected seconds >= 0")
    run_watch(machine, via, docker_host, retry, check_routes)


@app.command("persist")
def persist(
    machine: str = MACHINE,
    remove: bool = typer.Option(False, "--remove", help="Remove the boot-time unit."),
    dry_run: bool = DRY_RUN,
) -> None:
    """Re-apply labctl's routes at boot and when the vmnet interface comes up
    (a launchd daemon on macOS, a systemd unit on Linux).

    Example: labctl route persist lab --dry-run
    """
    from labctl.commands.common import changing
    from labctl.errors import PreconditionMissing
    from labctl.paths import Paths
    from labctl.routes import persist as persist_mod
    from labctl.routes import service
    from labctl.routes.analysis import gateway_link
    from labctl.routes.tables import read_table

    paths = Paths.detect()
    with changing(paths, dry_run):
        if remove:
            plan = persist_mod.plan_unpersist(paths, machine or "")
        else:
            mine = service.records_for(paths, machine)
            if not mine:
                raise PreconditionMissing("labctl has no routes to keep" +
                                          (f" for {machine}" if machine else ""),
                                          "add them first: labctl route add MACHINE")
            gateway = mine[0].gateway
            link = gateway_link(read_table(paths), gateway)
            plan = persist_mod.plan_persist(paths, machine or "", str(gateway),
                                            link.interface if link else None)
        _apply(plan, paths, dry_run)
