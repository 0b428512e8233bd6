"""labctl photon: Photon OS VMs (recovering a lost or expired root password)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Photon OS VMs: get back in when root is locked out.", no_args_is_help=True)


@app.command("reset-password")
def reset_password(
    vm: str = typer.Argument(None, help="The VM: a .vmx path, a docker-machine name, or a name "
                             "`vmrun list` shows (the .vmx file name or displayName)."),
    photon: int = typer.Option(None, "--photon", min=1, max=5,
                               help="Photon OS major version, 1-5 (default: read from the .vmx, "
                               "else the newest)."),
    open_console: bool = typer.Option(False, "--open-console",
                                      help="Start the VM with its console window (vmrun start VMX gui)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --open-console: show the command only."),
    fmt: str = typer.Option("text", "--format", help="text, markdown (for a ticket) or json."),
) -> None:
    """Print the exact console steps to reset a Photon OS root password through GRUB.

    Example: labctl photon reset-password lab --photon 4 --format markdown
    """
    from labctl.commands.console import show

    show(vm, fmt, open_console=open_console, dry_run=dry_run, photon=photon, photon_only=True)
