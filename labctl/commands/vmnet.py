"""labctl vmnet: VMware virtual networks."""

from __future__ import annotations

import typer

from labctl.commands import args
from labctl.commands.params import complete_vmnet

app = typer.Typer(help="VMware virtual networks (vmnets): list and create host-only ones.",
                  no_args_is_help=True)


@app.command("ls")
def ls(json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List vmnets: kind, subnet, DHCP, host adapter and the host's address on it.

    The host interface is found by the vmnet's subnet: vmnetN, or on macOS 11+ a bridge100,
    bridge101, … that exists only while a VM on that vmnet runs.

    Example: labctl vmnet ls --json
    """
    from labctl import ui
    from labctl.paths import Paths

    rows = Paths.detect().hypervisor.network_rows()
    if json:
        ui.print_document("vmnets", {"vmnets": rows})
        return
    ui.table(None, ["VMNET", "KIND", "SUBNET", "NETMASK", "DHCP", "HOST ADAPTER", "HOST INTERFACE",
                    "HOST ADDRESS"],
             [(r["vmnet"], r["kind"], r["subnet"], r["netmask"], ui.yesno(r["dhcp"]),
               ui.yesno(r["virtual_adapter"]),
               r["host_interface"] or r["bridge"] or r["host_note"] or "-",
               r["host_address"] or "-") for r in rows])


@app.command("create")
def create(
    subnet: str = typer.Option(..., "--subnet", metavar="CIDR", help="The network, e.g. 192.168.99.0/24."),
    vmnet: str = typer.Option("auto", "--vmnet", metavar="vmnetN|auto", autocompletion=complete_vmnet,
                              help="The vmnet to create (auto: the first free one).", callback=args.vmnet),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff and commands; change nothing."),
) -> None:
    """Create a host-only vmnet with DHCP and a host adapter.

    Example: labctl vmnet create --subnet 192.168.99.0/24 --dry-run
    """
    from labctl import ui, validate
    from labctl.commands.common import apply, changing
    from labctl.paths import Paths

    validate.vmnet_subnet(subnet)
    paths = Paths.detect()
    with changing(paths, dry_run):
        plan, number = paths.hypervisor.plan_network_create(vmnet, subnet)
        apply(plan, paths, dry_run)
    if not dry_run and not plan.empty:
        ui.info(f"created vmnet{number} on {subnet}")
