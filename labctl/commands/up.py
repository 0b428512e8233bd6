"""labctl up / down / status: the lab in one command, undone in one, seen at a glance."""

from __future__ import annotations

from pathlib import Path

import typer

from labctl.commands import args
from labctl.commands.params import Driver, Nic, complete_machine, complete_vmnet, value

NAME = typer.Argument(None, metavar="NAME", autocompletion=complete_machine,
                      help="Machine name (default: lab, or every machine of --config).",
                      callback=args.machine)


def _converger(dry_run: bool, persist: bool = False, json_out: bool = False):
    from labctl import ui
    from labctl.converge import Converger
    from labctl.machine import DockerMachine
    from labctl.paths import Paths
    from labctl.runner import Runner

    paths = Paths.detect()
    runner = Runner()
    return paths, Converger(paths, runner, DockerMachine.detect(runner, paths), dry_run=dry_run,
                            progress=ui.step, say=ui.info, persist=persist,
                            show_plan=ui.info if json_out else ui.plain)


def _interactive() -> bool:
    import sys

    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def up(
    name: str = NAME,
    config: Path = typer.Option(None, "--config", metavar="FILE",
                                help="A lab.toml describing several machines (examples/lab.toml)."),
    driver: Driver = typer.Option(None, "--driver", case_sensitive=False,
                                  help="docker-machine driver: vmwarefusion (macOS) or vmware (the "
                                       "plugin) (default: vmwarefusion on macOS, vmware on Linux)."),
    cpus: int = typer.Option(None, "--cpus", metavar="N", help="CPUs for a new machine (default: 2)."),
    memory: int = typer.Option(None, "--memory", metavar="MB",
                               help="Memory for a new machine (default: 2048)."),
    disk: int = typer.Option(None, "--disk", metavar="MB", help="Disk for a new machine (default: 20000)."),
    vmnet: str = typer.Option(None, "--vmnet", metavar="vmnetN|auto", autocompletion=complete_vmnet,
                              help="The lab network (default: auto, the first free one, created "
                                   "host-only with DHCP).", callback=args.vmnet),
    subnet: str = typer.Option(None, "--subnet", metavar="CIDR",
                               help="Subnet of a vmnet labctl creates (default: a free 192.168.N.0/24)."),
    ip: str = typer.Option(None, "--ip", metavar="IP|auto",
                           help="The VM's fixed address (default: auto, a free one outside the DHCP "
                                "range)."),
    nic: Nic = typer.Option(None, "--nic", case_sensitive=False,
                            help="dedicated: a second NIC on the lab vmnet; existing: reserve "
                                 "ethernet0's address (default: dedicated)."),
    adopt: str = typer.Option(None, "--adopt", metavar="VM.vmx",
                              help="Adopt a Linux VM you installed (Ubuntu or Debian, arm64 or x86); "
                                   "docker-machine's generic driver sets it up over SSH."),
    ssh_user: str = typer.Option(None, "--ssh-user", metavar="USER",
                                 help="--adopt: the VM's user with sudo "
                                 "(default: your login name)."),
    ssh_key: str = typer.Option(None, "--ssh-key", metavar="FILE",
                                help="--adopt: that user's private key "
                                "(default: ~/.ssh/id_ed25519, else ~/.ssh/id_rsa)."),
    engine_opt: list[str] = typer.Option(None, "--engine-opt", metavar="FLAG[=VALUE]",
                                         help="An extra dockerd flag for a new machine, e.g. "
                                              "allow-direct-routing=true (Engine >= 28.2); "
                                              "repeatable."),
    ca_cert: list[str] = typer.Option(None, "--ca-cert", metavar="FILE",
                                      help="A CA certificate (PEM or DER) the engine must trust, e.g. "
                                           "your corporate root CA behind TLS inspection; repeatable."),
    persist: bool = typer.Option(False, "--persist", help="Keep the routes across reboots "
                                 "(a launchd daemon or systemd unit; see labctl route persist)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every step; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before restarting VMware networking."),
    json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create or converge the lab: VM, vmnet, fixed IP, routes, docker context.

    Running it again changes nothing.

    Examples:

      labctl up

      labctl up lab --nic existing --dry-run

      labctl up --persist

      labctl up --ca-cert ~/corp-root.cer

      labctl up --config lab.toml

      labctl up lab --adopt ~/vms/debian.vmwarevm/debian.vmx
    """
    from labctl import labspec, ui
    from labctl.commands.common import changing

    paths, conv = _converger(dry_run, persist, json)
    if not yes and not dry_run and _interactive():
        conv.confirm = lambda question: typer.confirm(question, default=True, err=True)
    if config is not None:
        if any(v is not None for v in (driver, cpus, memory, disk, vmnet, subnet, ip, nic, adopt,
                                       ssh_user, ssh_key)) or engine_opt or ca_cert:
            from labctl.errors import InvalidInput

            raise InvalidInput("--config describes the machines; leave out the per-machine flags")
        spec = labspec.load(config, paths.platform)
        if name:
            spec = labspec.LabSpec((spec.machine(name),), spec.ranges, spec.pool_size, spec.source)
    else:
        spec = labspec.from_flags(paths.platform, name, driver=value(driver), cpus=cpus, memory=memory,
                                  disk=disk, nic=value(nic), vmnet=None if vmnet == "auto" else vmnet,
                                  subnet=subnet, ip=None if ip == "auto" else ip, vmx=adopt,
                                  ssh_user=ssh_user, ssh_key=ssh_key, engine_opts=engine_opt or None,
                                  ca_certs=ca_cert or None)
    conv.preflight(spec)  # read-only, before the lock: a refusal leaves no trace at all
    with changing(paths, dry_run):
        reports = conv.up(spec, preflight=False)
    if json:
        ui.print_document("up", {"machines": [r.as_dict() for r in reports], "changes": conv.changes,
                                 "dry_run": dry_run})
        return
    if dry_run:
        return
    if conv.changes == 0:
        ui.info("nothing to do: the lab is up")
    from labctl.validate import shell

    for r in reports:
        ui.plain(f"{r.name}: fixed IP {r.fixed_ip} on vmnet{r.vmnet} ({r.nic} NIC, MAC {r.mac}); "
                 f"docker-machine IP {r.machine_ip}")
        for route in r.routes:
            ui.plain(f"  route {route}")
        if r.context:
            ui.plain(f"  docker context: {r.context}  (docker --context {r.context} ps)")
        ui.plain(f"  shell: eval $(docker-machine env {shell(r.name)})")


def down(
    name: str = NAME,
    keep_vm: bool = typer.Option(False, "--keep-vm", help="Keep the VM; undo only what labctl added."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every step; change nothing."),
) -> None:
    """Remove exactly what `labctl up` added (routes, units, reservation, NIC, context, VM).

    Examples:

      labctl down

      labctl down lab --keep-vm --dry-run
    """
    from labctl import ui
    from labctl.commands.common import changing

    paths, conv = _converger(dry_run)
    with changing(paths, dry_run):
        reports = conv.down([name] if name else [], keep_vm)
    if not dry_run:
        for r in reports:
            ui.info(f"{r.name}: removed ({r.changes} change{'s' if r.changes != 1 else ''})")


def status(
    name: str = NAME,
    json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Each lab machine's state, addresses, routes and docker context.

    Example: labctl status --json
    """
    from labctl import ui

    _, conv = _converger(False)
    reports = conv.status([name] if name else [])
    if json:
        ui.print_document("status", {"machines": [r.as_dict() for r in reports]})
        return
    if not reports:
        ui.info("no lab machines (labctl up creates one)")
        return
    ui.table(None, ["MACHINE", "STATE", "NIC", "VMNET", "FIXED IP", "MACHINE IP", "CONTEXT", "ROUTES"],
             [(r.name, r.state, r.nic, f"vmnet{r.vmnet}" if r.vmnet is not None else "-", r.fixed_ip or "-",
               r.machine_ip or "-", r.context or "-", "\n".join(r.routes) or "-") for r in reports])
