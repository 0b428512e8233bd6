"""corporate-network layer: a TLS-inspecting proxy's CA the engine does not trust, and proxy
settings that would send lab traffic to the proxy.

* ``engine.registry_tls`` (opt-in: ``labctl doctor NAME --registry REF``) asks the engine for
  the image's distribution descriptor (``GET /distribution/REF/json``: the engine talks to the
  registry, pulls nothing) and recognises ``x509: certificate signed by unknown authority``,
  with the fix ``labctl up NAME --ca-cert …``.
* ``host.proxy`` / ``engine.proxy``: when HTTP(S)_PROXY is set (this shell's environment;
  the engine's, from docker-machine's config.json: no engine call), NO_PROXY must cover the
  vmnet subnet and the container subnets labctl routes, else the docker CLI and the engine
  send lab traffic to the proxy.  boot2docker's ``/etc/init.d/docker`` reads the engine's from
  ``/var/lib/boot2docker/profile``; ``labctl up --engine-env`` (labctl.engineconf) writes both
  and keeps config.json truthful, and is the engine's fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from labctl.doctor.context import Context
from labctl.doctor.core import Result, check, fail, ok, skip, warn

UNKNOWN_CA = "certificate signed by unknown authority"
PROXY_KEYS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def _entries(no_proxy: str) -> list[str]:
    return [e.strip() for e in no_proxy.replace(";", ",").split(",") if e.strip()]


def uncovered(no_proxy: str, subnets: Iterable[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """Pure: the subnets NO_PROXY does not exclude from the proxy (``*``, a CIDR containing the
    subnet, or an address entry equal to a /32)."""
    entries = _entries(no_proxy)
    if "*" in entries:
        return []
    nets = []
    for e in entries:
        try:
            nets.append(ipaddress.IPv4Network(e, strict=False))
        except ValueError:
            continue  # a host or domain name: it does not cover addresses
    return [s for s in subnets if not any(s.subnet_of(n) for n in nets)]


def proxy_of(env: Mapping[str, str]) -> str:
    return next((env[k] for k in PROXY_KEYS if env.get(k)), "")


def no_proxy_of(env: Mapping[str, str]) -> str:
    return env.get("NO_PROXY") or env.get("no_proxy") or ""


def _lab_subnets(ctx: Context) -> list[ipaddress.IPv4Network]:
    out: list[ipaddress.IPv4Network] = []
    try:
        v = ctx.vmnet()
        if v is not None and v.network is not None:
            out.append(ipaddress.IPv4Network(str(v.network)))
    except Exception:  # noqa: BLE001 - the vmnet checks report it
        pass
    try:
        for r in ctx.route_records():
            if r.destination not in out:
                out.append(r.destination)
    except Exception:  # noqa: BLE001 - the routes checks report it
        pass
    return out


def _with(no_proxy: str, missing: list[ipaddress.IPv4Network]) -> str:
    return ",".join([*_entries(no_proxy), *(str(m) for m in missing)])


@check("host.proxy", "This shell's proxy settings leave the lab out")
def desktop(ctx: Context) -> Result:
    proxy = proxy_of(ctx.env)
    if not proxy:
        return ok("no HTTP(S)_PROXY in this environment")
    subnets = _lab_subnets(ctx)
    if not subnets:
        return skip("no lab subnets known yet (labctl up)")
    missing = uncovered(no_proxy_of(ctx.env), subnets)
    if missing:
        return warn(f"HTTP(S)_PROXY is set ({proxy}) but NO_PROXY does not exclude "
                    f"{', '.join(map(str, missing))}: the docker CLI, curl and browsers send lab "
                    "traffic to the proxy",
                    f"export NO_PROXY={_with(no_proxy_of(ctx.env), missing)} "
                    f"no_proxy={_with(no_proxy_of(ctx.env), missing)}  (and in your shell profile)")
    return ok(f"NO_PROXY excludes {', '.join(map(str, subnets))}")


def engine_env(config: Any) -> dict[str, str]:
    """The environment docker-machine gives the engine (``--engine-env``, kept in the machine's
    config.json as HostOptions.EngineOptions.Env; boot2docker gets it in
    /var/lib/boot2docker/profile)."""
    raw = getattr(config, "raw", None) or {}
    env = ((raw.get("HostOptions") or {}).get("EngineOptions") or {}).get("Env") or []
    out: dict[str, str] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key] = value
    return out


@check("engine.proxy", "The engine's proxy settings leave the lab out", requires=("lab.machine",))
def engine_proxy(ctx: Context) -> Result:
    name = ctx.record().name
    env = engine_env(ctx.machine_config(name))
    proxy = proxy_of(env)
    if not proxy:
        return ok("the engine is given no proxy (docker-machine's engine environment)")
    subnets = _lab_subnets(ctx)
    if not subnets:
        return skip("no lab subnets known yet (labctl up)")
    no_proxy = no_proxy_of(env)
    missing = uncovered(no_proxy, subnets)
    if missing:
        from labctl.validate import shell

        flags = " ".join(f"--engine-env {shell(f'{k}={env[k]}')}" for k in PROXY_KEYS if env.get(k))
        return warn(f"the engine uses the proxy {proxy} but its NO_PROXY does not exclude "
                    f"{', '.join(map(str, missing))}: pulls from registries in the lab go to the proxy",
                    f"labctl up {shell(name)} {flags}  (labctl adds the lab's subnets and fixed IP to the "
                    "engine's NO_PROXY and restarts it once; or engine_env in lab.toml)")
    return ok(f"the engine's NO_PROXY excludes {', '.join(map(str, subnets))}")


def classify(error: str) -> str:
    """Pure: what the engine's answer about a registry means: ``untrusted`` (x509 unknown
    authority), ``reached`` (TLS worked; an HTTP-level answer such as not found or
    unauthorized), or ``unreachable``."""
    low = error.lower()
    if UNKNOWN_CA in low or "x509: certificate" in low or "tls: failed to verify" in low:
        return "untrusted"
    if any(w in low for w in ("manifest unknown", "not found", "unauthorized", "denied",
                              "authentication required", "name unknown")):
        return "reached"
    return "unreachable"


@check("engine.registry_tls", "The engine trusts the registry's TLS certificate",
       requires=("engine.reachable",), timeout=30, opt_in=True,
       timeout_fix="check the VM reaches the registry (docker-machine ssh NAME), or the proxy")
def registry_tls(ctx: Context) -> Result:
    from labctl import engine

    ref = ctx.registry_ref
    name = ctx.record().name
    client = engine.connect(ctx.engine_target(), timeout=25)
    try:
        data = client.api.inspect_distribution(ref)
    except Exception as exc:  # noqa: BLE001 - the SDK's APIError carries the engine's message
        text = str(getattr(exc, "explanation", "") or exc)
        kind = classify(text)
        if kind == "untrusted":
            return fail(f"the engine does not trust the TLS certificate of {ref.split('/')[0]}: "
                        f"{text.strip()[:300]} (a TLS-inspecting proxy or a private CA)",
                        f"labctl up {name} --ca-cert CORP-ROOT-CA.pem  (PEM or DER; export it from "
                        "your browser's certificate viewer or ask IT)")
        if kind == "reached":
            return ok(f"the engine reached the registry of {ref} over trusted TLS "
                      f"({text.strip()[:120]})")
        return warn(f"the engine could not reach the registry of {ref}: {text.strip()[:300]}",
                    f"docker-machine ssh {name} to check the VM's DNS and route; behind a proxy, "
                    "the engine needs HTTPS_PROXY")
    finally:
        client.close()
    digest = (data.get("Descriptor") or {}).get("digest", "")
    return ok(f"the engine reached the registry of {ref} over trusted TLS ({digest[:19]}…)")
