"""labctl doctor: every layer of the lab diagnosed, each problem with the command that fixes it."""

from __future__ import annotations

import typer

from labctl.commands import args
from labctl.commands.params import complete_check, complete_machine, complete_vmnet


def doctor(
    name: str = typer.Argument(None, metavar="NAME", autocompletion=complete_machine,
                               help="The lab machine (default: the one labctl recorded).",
                               callback=args.machine),
    vmnet: str = typer.Option(None, "--vmnet", metavar="vmnetN", autocompletion=complete_vmnet,
                              help="vmnetN to examine (default: the machine's).", callback=args.vmnet),
    json: bool = typer.Option(False, "--json", help="Print JSON."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show check ids, timings, extra detail."),
    checks: list[str] = typer.Option(None, "--check", metavar="ID", autocompletion=complete_check,
                                     help="Run only this check (and what it needs); repeatable."),
    list_checks: bool = typer.Option(False, "--list-checks", help="List the checks and exit."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    probe: bool = typer.Option(False, "--probe", help="Also start a throw-away container with no "
                               "published port and connect to it from here by its IP."),
    probe_image: str = typer.Option("busybox:latest", "--probe-image", metavar="IMAGE",
                                    help="Image for --probe (needs busybox's httpd)."),
    registry: str = typer.Option(None, "--registry", metavar="IMAGE",
                                 help="Ask the engine to reach this image's registry (pulls nothing) "
                                      "and say whether it trusts its TLS certificate, e.g. "
                                      "docker.io/library/busybox:latest."),
    timeout: float = typer.Option(None, "--timeout", min=0.2, metavar="SECONDS",
                                  help="How long each check may take (default: 2)."),
) -> None:
    """Diagnose the lab layer by layer (host, docker-machine, vmnet, DHCP reservation, lease,
    machine, engine, routes, forwarding, end to end); every problem comes with a fix to paste.

    Exit status: 0 nothing failed (warnings allowed unless --strict), 1 something failed,
    2 unknown --check id.

    Examples:

      labctl doctor lab --check reservation.mac

      labctl doctor lab --probe    (proves a container answers by IP on an unpublished port)

      labctl doctor lab --registry docker.io/library/busybox:latest    (x509 unknown authority?)
    """
    import sys

    from labctl import doctor as dr
    from labctl import ui
    from labctl.doctor.context import Context
    from labctl.doctor.render import render, render_list
    from labctl.paths import Paths

    if registry is not None:
        _check_ref(registry)
    everything = dr.all_checks(opt_in=bool(probe or checks or list_checks or registry))
    if list_checks:
        if json:
            ui.print_document("checks", {"checks": [c.as_dict() for c in everything]})
        else:
            render_list(everything, sys.stdout)
        return
    wanted = [*(checks or []), *(["end-to-end.probe"] if probe else []),
              *(["engine.registry_tls"] if registry else [])]
    if checks or probe or registry:
        selected = dr.select(everything, wanted) if checks else \
            [c for c in everything if not c.opt_in or c.id in wanted]
    else:
        selected = everything
    limit = timeout if timeout is not None else dr.DEFAULT_TIMEOUT
    ctx = Context(Paths.detect(), machine=name, vmnet=vmnet,
                  command_timeout=max(0.1, min(limit * 0.75, limit - 0.3)))
    ctx.probe_image = probe_image
    if registry:
        ctx.registry_ref = registry
    ctx.prefetch({c.id for c in selected})
    report = dr.run(selected, ctx, timeout=limit)
    if json:
        data = report.as_dict()
        try:
            t = ctx.target()
            data["target"] = {"machine": t.machine,
                              "vmnet": f"vmnet{t.vmnet}" if t.vmnet is not None else None}
        except Exception:  # already reported by the checks
            data["target"] = {"machine": name, "vmnet": vmnet}
        ui.print_document("doctor", data)
    else:
        render(report, sys.stdout, verbose=verbose)
    if report.failed or (strict and report.warned):
        raise typer.Exit(1)


def _check_ref(ref: str) -> None:
    """An image reference as docker writes one (registry/host:port/path:tag or @digest)."""
    import re

    from labctl.errors import InvalidInput

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,254}", ref) or ".." in ref:
        raise InvalidInput(f"--registry {ref!r}: expected an image reference like "
                           "registry.example.com:5000/team/app:1 or docker.io/library/busybox:latest")
