"""routes layer: host routes to the container subnets (labctl.routes' readers and records)."""

from __future__ import annotations

import shlex

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, skip, warn
from labctl.doctor.host import network_restart_fix
from labctl.validate import shell


def _delete_cmd(ctx: Context, route) -> str:
    if ctx.platform == "darwin":
        return f"sudo route -n delete -net {route.destination}"
    return f"sudo ip route del {route.destination}"


@check("routes.table", "Host routing table readable")
def table(ctx: Context) -> Result:
    routes = ctx.route_table()
    return ok(f"{len(routes)} IPv4 routes")


@check("routes.labctl", "Routes to the containers in place",
       requires=("routes.table", "lab.machine", "reservation.ip"))
def present(ctx: Context) -> Result:
    from labctl.routes.analysis import gateway_link, route_state

    rec = ctx.record()
    records = ctx.route_records()
    sync = f"labctl route sync {shell(rec.name)} --offline"
    if not records:
        return warn(f"labctl has made no routes for {rec.name}: containers are not reachable by IP",
                    f"labctl route add {shell(rec.name)}")
    tbl = ctx.route_table()
    problems, fixes, good = [], [], []
    fixed = ctx.reservation().ip
    for r in records:
        state = route_state(r, tbl, None)
        if state == "present":
            good.append(f"{r.destination} via {r.gateway}")
            if fixed and str(r.gateway) != fixed:
                problems.append(f"{r.destination} goes via {r.gateway}, not the fixed IP {fixed}")
                fixes.append(sync)
        elif state == "missing":
            problems.append(f"{r.destination} via {r.gateway} is missing")
            fixes.append(sync)
        else:  # conflicting: the destination now routes elsewhere
            other = next(t for t in tbl if t.destination == r.destination)
            problems.append(f"{r.destination} now routes {other.describe()} (not labctl's)")
            fixes.append(f"{_delete_cmd(ctx, other)} && {sync}")
    gws = {r.gateway for r in records}
    for gw in sorted(gws):
        if gateway_link(tbl, gw) is None:
            problems.append(f"gateway {gw} is on no network this host is attached to")
            fixes.append(f"docker-machine start {shell(rec.name)}; if it runs: {network_restart_fix(ctx)}")
    if problems:
        return fail("; ".join(problems), " && ".join(dict.fromkeys(fixes)))
    return ok(", ".join(good))


@check("routes.overlap", "No overlap with host networks or VPNs",
       requires=("routes.table", "lab.machine"))
def overlap(ctx: Context) -> Result:
    from labctl.routes.analysis import fix_text

    records = ctx.route_records()
    if not records:
        return ok("labctl routes nothing yet")
    tbl = ctx.route_table()
    clashes, vpns = [], []
    for r in records:
        for t in tbl:
            if t.is_default or t.destination == r.destination or not t.destination.overlaps(r.destination):
                continue
            if t.via_vpn:
                vpns.append(f"{r.destination} overlaps the VPN route {t.describe()}")
            elif t.connected:
                clashes.append(f"{r.destination} overlaps the host network {t.destination} on "
                               f"{t.interface or '?'}")
    taken = [r.destination for r in records]
    if clashes:
        return fail("; ".join(clashes), fix_text(tbl, taken))
    if vpns:
        return warn("; ".join(vpns) + ": addresses in both go to the more specific route",
                    fix_text(tbl, taken))
    return ok(", ".join(str(r.destination) for r in records) + " overlap nothing")


@check("routes.persist", "Routes kept across reboots", requires=("lab.machine",))
def persist(ctx: Context) -> Result:
    from labctl.routes import persist as p

    rec = ctx.record()
    units = ctx.state().get("units") or {}
    wanted = units.get(f"routes:{rec.name}")
    if not wanted:
        return skip(f"not asked for (labctl route persist {shell(rec.name)} keeps them)")
    path = p.unit_path(ctx.paths, rec.name)
    if not path.exists():
        return fail(f"labctl installed {wanted} but it is gone", f"labctl route persist {shell(rec.name)}")
    if ctx.platform == "darwin":
        argv = [p._launchctl(ctx.paths), "print", f"system/{p.label(rec.name)}"]
        loaded = ctx.run(*argv).returncode == 0
        load = f"sudo launchctl bootstrap system {shlex.quote(str(path))}"
    else:
        argv = [p._systemctl(ctx.paths), "is-enabled", path.name]
        loaded = ctx.run(*argv).returncode == 0
        load = f"sudo systemctl enable --now {path.name}"
    if not loaded:
        return fail(f"{path} is installed but not loaded", load)
    return ok(f"{path} installed and loaded")
