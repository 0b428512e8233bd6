"""engine and end-to-end layers: the lab's Docker Engine (labctl.engine) and a real TCP
connection to a container."""

from __future__ import annotations

import datetime
import socket
from typing import Any

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, skip, warn
from labctl.validate import shell

RENEW_DAYS = 30


def _regen(ctx: Context) -> str:
    return f"docker-machine regenerate-certs -f {shell(ctx.record().name)}"


@check("engine.certs", "Engine certificate valid", requires=("machine.exists",))
def certs(ctx: Context) -> Result:
    cert = ctx.server_cert()
    host = ctx.engine_target().host
    left = (cert.not_after - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
    if host and host not in cert.names:
        return fail(f"{cert.path} is for {', '.join(cert.names) or 'no address'}, but the engine is "
                    f"reached at {host}: TLS verification fails", _regen(ctx))
    if left < 0:
        return fail(f"the engine's certificate expired {-left:.0f} days ago ({cert.expires})",
                    _regen(ctx))
    if left < RENEW_DAYS:
        return warn(f"the engine's certificate expires in {left:.0f} days ({cert.expires})",
                    _regen(ctx))
    return ok(f"for {host}, valid until {cert.expires}")


@check("engine.reachable", "Engine answers over TLS",
       requires=("machine.running", "machine.address", "engine.certs"))
def reachable(ctx: Context) -> Result:
    target = ctx.engine_target()
    try:
        _, version = ctx.engine()
    except Exception as exc:
        from labctl.errors import LabctlError

        text = exc.message if isinstance(exc, LabctlError) else str(exc)
        name = ctx.record().name
        if "CERTIFICATE" in text.upper() or "certificate" in text:
            return fail(text, _regen(ctx))
        return fail(text, f"docker-machine restart {shell(name)}  (then: labctl doctor {shell(name)})")
    return ok(f"{target.url} (Engine {version})")


@check("engine.gateway_mode", "Unpublished container ports routable",
       requires=("engine.reachable", "forwarding.firewall"))
def gateway_mode(ctx: Context) -> Result:
    from labctl import engine
    from labctl.doctor.machine import lab_rule

    _, version = ctx.engine()
    nets = ctx.engine_networks()
    blocked = [n for n in nets if engine.reachability(version, n) == "published-only"]
    if not blocked:
        if engine.major(version) < 28:
            return ok(f"Engine {version} routes to every container port")
        return ok(f"every network is {engine.UNPROTECTED}")
    try:
        facts, rule = lab_rule(ctx)
    except Exception:
        facts, rule = None, None
    if facts is not None and rule is not None and facts.has_rule(rule) and not facts.raw_drops:
        names = ", ".join(n.name for n in blocked)
        return ok(f"Engine {version} drops routed traffic to unpublished ports on {names} in its "
                  f"DOCKER chain; labctl's DOCKER-USER rule, which comes first, lets the desktop in")
    names = ", ".join(f"{n.name} ({', '.join(map(str, n.subnets))})" for n in blocked)
    return warn(f"Engine {version} drops routed traffic to unpublished ports on {names}; "
                "only published ports answer there",
                " ; ".join(engine.unprotect_advice(n) for n in blocked))


def _targets(containers: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    """(name, ip, port) for each running container: a TCP port it listens on, if declared."""
    out = []
    for c in containers:
        name = (c.get("Names") or ["?"])[0].lstrip("/")
        nets = ((c.get("NetworkSettings") or {}).get("Networks") or {}).values()
        ips = [n.get("IPAddress") for n in nets if n.get("IPAddress")]
        ports = [p.get("PrivatePort") for p in c.get("Ports") or [] if p.get("Type", "tcp") == "tcp"]
        for ip in ips:
            out.append((name, ip, ports[0] if ports else None))
    return out


@check("end-to-end.tcp", "A container answers by IP",
       requires=("engine.reachable", "routes.labctl", "forwarding.ip_forward", "forwarding.firewall"))
def end_to_end(ctx: Context) -> Result:
    name = ctx.record().name
    targets = _targets(ctx.containers())
    if not targets:
        return skip(f"no container runs; to test with a throw-away one on an unpublished port: "
                    f"labctl doctor {shell(name)} --probe")
    # a declared port if any; else port 80: a refused connection proves the route as well
    cname, ip, port = next((t for t in targets if t[2] is not None), targets[0])
    port = port or 80
    limit = max(0.2, ctx.command_timeout - 0.3)
    try:
        with socket.create_connection((ip, int(port or 0)), timeout=limit):
            pass
    except ConnectionRefusedError:
        return ok(f"{ip} ({cname}) is reachable: port {port} refused the connection, so the route works")
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return fail(f"TCP {ip}:{port} ({cname}) {why}",
                    f"labctl up {shell(name)}  (it re-opens the VM's firewall); then "
                    f"labctl doctor {shell(name)} --probe")
    return ok(f"TCP {ip}:{port} ({cname}) connected")


PROBE_PORT = 8080


@check("end-to-end.probe", "A throw-away container answers by IP on an unpublished port",
       requires=("engine.reachable", "routes.labctl"), timeout=60, opt_in=True,
       timeout_fix="docker --context NAME pull busybox:latest (the probe's image), then try again")
def live_probe(ctx: Context) -> Result:
    """Start a container with NO published port on the lab engine's default bridge, connect to
    it from this desktop by its own IP, remove it: routes, the VM's firewall and the engine's
    filtering all proved at once."""
    from labctl import engine

    name = ctx.record().name
    client = engine.connect(ctx.engine_target(), timeout=30)
    try:
        with engine.probe_container(client, ctx.probe_image, PROBE_PORT) as (cname, ip):
            limit = 3.0
            try:
                with socket.create_connection((ip, PROBE_PORT), timeout=limit) as sock:
                    sock.settimeout(limit)
                    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    answer = sock.recv(64)
            except OSError as exc:
                why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
                return fail(f"TCP {ip}:{PROBE_PORT} (throw-away container {cname}, port not published) "
                            f"{why}: routes alone do not reach the containers",
                            f"labctl doctor {shell(name)}  (the forwarding.firewall and routes checks say "
                            f"which part is missing), then labctl up {shell(name)}")
    finally:
        client.close()
    if not answer.startswith(b"HTTP/"):
        return warn(f"{ip}:{PROBE_PORT} accepted the connection but answered {answer[:20]!r}",
                    f"labctl doctor {shell(name)} --probe --probe-image busybox:latest")
    return ok(f"{cname} answered HTTP on {ip}:{PROBE_PORT} (not published); it is removed again")
