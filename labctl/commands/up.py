"""labctl up / down / status: the lab in one command, undone in one, seen at a glance."""

from __future__ import annotations

from pathlib import Path

import typer

from labctl.commands import args
from labctl.commands.params import Driver, Nic, complete_machine, complete_vmnet, repeatable, value

NAME = typer.Argument(None, metavar="NAME", autocompletion=complete_machine,
                      help="Machine name (default: lab, or every machine of --config).",
                      callback=args.machine)


def _lab(persist: bool = False):
    from labctl import ui
    from labctl.converge import Lab
    from labctl.machine import DockerMachine
    from labctl.paths import Paths
    from labctl.runner import Runner

    paths = Paths.detect()
    runner = Runner()
    return paths, Lab(paths, runner, DockerMachine.detect(runner, paths), progress=ui.step, say=ui.info,
                      persist=persist)


def _show_plan(plan, json_out: bool) -> None:
    """The dry run: every phase's steps, exact commands and diffs (stdout; stderr with --json)."""
    from labctl import ui

    say = ui.info if json_out else ui.plain
    for phase in plan.phases:
        for line in phase.warnings:
            ui.info(f"warning: {line}")
        if not phase.empty:
            say(phase.render().rstrip("\n"))
        elif phase.notes:
            for note in phase.notes:
                ui.info(f"note: {note}")
    if not plan.changes:
        say("nothing to do")


def _steps(plan) -> list[dict]:
    from labctl.converge import step_dict

    return [step_dict(p, c) for p in plan.phases for c in p.changes]


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
    engine_opt: list[str] = repeatable("--engine-opt", "FLAG[=VALUE]",
                                       "An extra dockerd flag for a new machine, e.g. "
                                       "allow-direct-routing=true (Engine >= 28.2); repeatable."),
    ca_cert: list[str] = repeatable("--ca-cert", "FILE",
                                    "A CA certificate (PEM or DER) the engine must trust, e.g. "
                                    "your corporate root CA behind TLS inspection; repeatable."),
    engine_env: list[str] = repeatable("--engine-env", "KEY=VALUE",
                                       "An environment variable for the engine, e.g. "
                                       "HTTPS_PROXY=http://proxy:3128 (NO_PROXY gets the lab's "
                                       "subnets); repeatable."),
    registry_mirror: list[str] = repeatable("--registry-mirror", "URL",
                                            "A registry mirror for the engine (http(s)://host[:port]); "
                                            "repeatable."),
    insecure_registry: list[str] = repeatable("--insecure-registry", "HOST[:PORT]",
                                              "A registry the engine may reach without trusted TLS; "
                                              "repeatable."),
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

      labctl up --engine-env HTTPS_PROXY=http://proxy.corp.example:3128

      labctl up --config lab.toml

      labctl up lab --adopt ~/vms/debian.vmwarevm/debian.vmx
    """
    from labctl import labspec, ui
    from labctl.commands.common import changing

    paths, lab = _lab(persist)
    if not yes and not dry_run and _interactive():
        lab.confirm = lambda question: typer.confirm(question, default=True, err=True)
    if config is not None:
        if any(v is not None for v in (driver, cpus, memory, disk, vmnet, subnet, ip, nic, adopt,
                                       ssh_user, ssh_key)) or engine_opt or ca_cert or engine_env \
                or registry_mirror or insecure_registry:
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
                                  ca_certs=ca_cert or None, engine_env=engine_env or None,
                                  registry_mirrors=registry_mirror or None,
                                  insecure_registries=insecure_registry or None)
    # read-only, before the lock: a refusal leaves no trace at all (a dry run does not power a
    # VM to adopt on for its look)
    lab.preflight(spec, power_on=not dry_run)
    with changing(paths, dry_run):
        plan = lab.plan_up(spec)
        if dry_run:  # the one place a dry run differs: print the plan instead of applying it
            for m in spec.machines:
                if m.name in lab.unlooked and m.vmx is not None:
                    from labctl.adopt import login_for

                    login = login_for(m)
                    (ui.info if json else ui.plain)(
                        f"then: start {m.vmx.name} to check that {login.user}@… answers SSH with "
                        f"{login.key} (the dry run leaves it off)")
            _show_plan(plan, json)
            if json:
                ui.print_document("up", {
                    "machines": [r.as_dict() for r in lab.reports(plan, spec.machines)],
                    "steps": _steps(plan), "changes": len(plan.changes), "dry_run": True})
            return
        reports = lab.up(spec, first=plan)
    if json:
        ui.print_document("up", {"machines": [r.as_dict() for r in reports], "steps": lab.applied,
                                 "changes": len(lab.applied), "dry_run": False})
        return
    if not lab.applied:
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
    name: str = typer.Argument(None, metavar="NAME", autocompletion=complete_machine,
                               help="Machine name (default: lab).", callback=args.machine),
    all_: bool = typer.Option(False, "--all", help="Every machine labctl set up, and the vmnets it "
                              "created that nothing uses any more."),
    keep_vm: bool = typer.Option(False, "--keep-vm", help="Keep the VM; undo only what labctl added."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every step; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before removing machines or "
                             "restarting VMware networking."),
    json: bool = typer.Option(False, "--json", help="Print the steps as JSON."),
) -> None:
    """Remove exactly what `labctl up` added (routes, units, reservation, NIC, context, VM).

    Only what labctl made goes: a machine it did not create stays (without the NIC labctl
    added), a docker context it did not make stays, and a vmnet it created stays while a
    .vmx still uses it.  On a terminal it asks before removing machines (--yes skips).

    Examples:

      labctl down

      labctl down lab --keep-vm --dry-run

      labctl down --all --yes
    """
    from labctl import ui
    from labctl.commands.common import changing
    from labctl.converge import removes_machines, unknown_machines
    from labctl.errors import InvalidInput
    from labctl.labspec import DEFAULT_NAME, check_name

    if all_ and name:
        raise InvalidInput("say either a machine name or --all, not both")
    paths, lab = _lab()
    interactive = not yes and not dry_run and _interactive()
    names = [] if all_ else [check_name(name or DEFAULT_NAME)]
    unknown_machines(lab.facts(), names)  # before the lock: bad input leaves no trace
    with changing(paths, dry_run):
        facts = lab.facts()
        if all_:
            names = list(facts.recorded_machines())
        plan = lab.plan_down(names, keep_vm, facts)
        if dry_run:  # the one place a dry run differs: print the plan instead of applying it
            _show_plan(plan, json)
            if json:
                ui.print_document("down", {"steps": _steps(plan), "changes": len(plan.changes),
                                           "dry_run": True})
            return
        doomed = removes_machines(plan)
        if doomed and interactive and not typer.confirm(
                f"remove the machine{'s' if len(doomed) > 1 else ''} {', '.join(doomed)} and "
                f"{'their VMs' if len(doomed) > 1 else 'its VM'}?", default=False, err=True):
            from labctl.errors import LabctlError

            raise LabctlError("stopped before removing anything; nothing was changed",
                              "labctl down --keep-vm keeps the VM; --yes skips the question")
        reports = lab.down(names, keep_vm, first=plan)
    if json:
        ui.print_document("down", {"steps": lab.applied, "changes": len(lab.applied), "dry_run": False})
        return
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

    _, lab = _lab()
    reports = lab.status([name] if name else [])
    if json:
        ui.print_document("status", {"machines": [r.as_dict() for r in reports]})
        return
    if not reports:
        ui.info("no lab machines (labctl up creates one)")
        return
    ui.table(None, ["MACHINE", "STATE", "NIC", "VMNET", "FIXED IP", "MACHINE IP", "CONTEXT", "ROUTES"],
             [(r.name, r.state, r.nic, f"vmnet{r.vmnet}" if r.vmnet is not None else "-", r.fixed_ip or "-",
               r.machine_ip or "-", r.context or "-", "\n".join(r.routes) or "-") for r in reports])
