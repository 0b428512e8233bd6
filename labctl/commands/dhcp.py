"""labctl dhcp: DHCP reservations in a vmnet's dhcpd.conf."""

from __future__ import annotations

import typer

from labctl.commands import args
from labctl.commands.params import complete_vmnet

app = typer.Typer(help="Fixed addresses for VMs: DHCP reservations in a vmnet's dhcpd.conf.",
                  no_args_is_help=True)

VMNET = typer.Option(None, "--vmnet", metavar="vmnetN", autocompletion=complete_vmnet,
                     help="The vmnet whose dhcpd.conf to use (default: the lab's vmnet, or the only "
                          "host-only one).",
                     callback=args.vmnet)


@app.command("ls")
def ls(vmnet: str = VMNET, json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List reservations, each marked managed-by-labctl or not.

    Example: labctl dhcp ls --vmnet vmnet2
    """
    from labctl import ui
    from labctl.paths import Paths, parse_vmnet

    hv = Paths.detect().hypervisor
    numbers = [parse_vmnet(vmnet)] if vmnet else sorted(hv.dhcp_config_files())
    confs = [(n, hv.read_reservations(n)[1]) for n in numbers]  # every file read before output
    if json:  # streamed: 50,000 reservations do not become one string
        ui.stream_document("reservations", "reservations",
                           ({"vmnet": f"vmnet{n}", **h.as_dict()} for n, conf in confs for h in conf.hosts))
        return
    rows = [{"vmnet": f"vmnet{n}", **h.as_dict()} for n, conf in confs for h in conf.hosts]
    if not rows:
        ui.info("no reservations")
        return
    ui.table(None, ["VMNET", "NAME", "MAC", "IP", "MANAGED"],
             [(r["vmnet"], r["name"], r["mac"], r["ip"],
               "labctl" if r["managed"] else ("vmware" if r["protected"] else "no")) for r in rows])


@app.command("reserve")
def reserve(
    name: str = typer.Argument(..., metavar="NAME",
                               help="Host name for the reservation (letters, digits, - _ .).",
                               callback=args.reservation),
    mac: str = typer.Option(..., "--mac", metavar="MAC", help="The VM NIC's MAC address."),
    ip: str = typer.Option("auto", "--ip", metavar="IP|auto",
                           help="An address outside the dynamic range (auto: a free one)."),
    vmnet: str = VMNET,
    no_restart: bool = typer.Option(False, "--no-restart", help="Do not restart VMware networking."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff and commands; change nothing."),
) -> None:
    """Give a MAC a fixed IP on a vmnet (idempotent).

    Example: labctl dhcp reserve lab --mac 00:50:56:2a:bb:cc --ip auto --vmnet vmnet2
    """
    from labctl import ui, validate
    from labctl.commands.common import apply, changing
    from labctl.hypervisor.base import ReservationRequest
    from labctl.paths import Paths

    validate.reservation_name(name)
    mac = validate.mac(mac)
    wanted = None if ip == "auto" else str(validate.ip(ip))
    paths = Paths.detect()
    with changing(paths, dry_run):
        n = paths.hypervisor.resolve_network(vmnet)
        plan, chosen = paths.hypervisor.plan_reserve(ReservationRequest(name, mac, wanted, n),
                                                     restart=not no_restart)
        apply(plan, paths, dry_run)
    if not dry_run and not plan.empty:
        ui.info(f"reserved {chosen} for {name} ({mac}) on vmnet{n}")


@app.command("release")
def release(
    name: str = typer.Argument(..., metavar="NAME", help="The reservation to remove (only labctl's own).",
                               callback=args.reservation),
    vmnet: str = VMNET,
    no_restart: bool = typer.Option(False, "--no-restart", help="Do not restart VMware networking."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff and commands; change nothing."),
) -> None:
    """Remove a reservation labctl made; the file returns to its bytes from before.

    Example: labctl dhcp release lab --vmnet vmnet2
    """
    from labctl import validate
    from labctl.commands.common import apply, changing
    from labctl.paths import Paths

    validate.reservation_name(name)
    paths = Paths.detect()
    with changing(paths, dry_run):
        n = paths.hypervisor.resolve_network(vmnet)
        apply(paths.hypervisor.plan_release(name, n, restart=not no_restart), paths, dry_run)
