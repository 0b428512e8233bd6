"""labctl photon: Photon OS VMs (recovering a lost or expired root password)."""

from __future__ import annotations

import typer

from labctl.commands.params import Format, Photon, complete_machine

app = typer.Typer(help="Photon OS VMs: get back in when root is locked out.", no_args_is_help=True)


@app.command("reset-password")
def reset_password(
    vm: str = typer.Argument(None, metavar="VM", autocompletion=complete_machine,
                             help="The VM: a .vmx path, a docker-machine name, or a name "
                             "`vmrun list` shows (the .vmx file name or displayName)."),
    photon: Photon = typer.Option(None, "--photon",
                                  help="Photon OS major version (default: read from the .vmx, else 5)."),
    open_console: bool = typer.Option(False, "--open-console",
                                      help="Start the VM with its console window (vmrun start VMX gui)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --open-console: show the command only."),
    fmt: Format = typer.Option(Format.text, "--format", case_sensitive=False,
                               help="text for the terminal, markdown for a ticket, json for tools."),
) -> None:
    """Print the exact console steps to reset a Photon OS root password through GRUB.

    Example: labctl photon reset-password lab --photon 4 --format markdown
    """
    from labctl.commands.console import show

    show(vm, fmt.value, open_console=open_console, dry_run=dry_run,
         photon=int(photon.value) if photon is not None else None, photon_only=True)
