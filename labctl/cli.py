"""The labctl command line: parse, call, render.  Command modules import nothing heavy at
module level (no docker SDK, jinja2 or sh), so `labctl --help` starts as fast as typer."""

from __future__ import annotations

import gc
import logging
import os
import sys

import typer

from labctl import __version__
from labctl.commands import console, dhcp, doctor, photon, route, schema, up, vmnet
from labctl.errors import EXIT_FAILED, LabctlError

app = typer.Typer(
    name="labctl",
    help="A Docker host VM on VMware Fusion or Workstation whose containers you reach by IP.\n\n"
    "Examples:\n\n"
    "  labctl up --dry-run\n\n"
    "  labctl doctor\n\n"
    "  labctl dhcp reserve lab --mac 00:50:56:2a:bb:cc --dry-run",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
# short_help: the one line each command gets in `labctl --help` (whole, at 80 columns)
app.command("up", short_help="Create or converge the lab (VM, vmnet, fixed IP, routes).")(up.up)
app.command("down", short_help="Remove exactly what up added.")(up.down)
app.command("status", short_help="Each lab machine's state, addresses and routes.")(up.status)
app.command("doctor", short_help="Diagnose every layer; each problem with its fix.")(doctor.doctor)
app.add_typer(vmnet.app, name="vmnet", short_help="VMware virtual networks: list, create.")
app.add_typer(dhcp.app, name="dhcp", short_help="Fixed addresses: DHCP reservations.")
app.add_typer(route.app, name="route", short_help="Routes from this host to the containers.")
app.add_typer(photon.app, name="photon", short_help="Photon OS: reset a lost root password.")
app.command("console-help", short_help="Console recovery steps for a VM's guest OS.")(
    console.console_help)
app.command("schema", short_help="The JSON schema of a --json document.")(schema.schema)

_debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"labctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and every command run."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log the commands labctl runs."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("LABCTL_DEBUG"))
    level = logging.DEBUG if _debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="labctl: %(message)s", stream=sys.stderr)


def _global_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` is accepted anywhere before ``--`` (after the subcommand too): it is taken
    out of the arguments and applied globally."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head = [a for a in argv[:cut] if a != "--debug"]
    return head + argv[cut:], len(head) != cut


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); labctl errors print one line."""
    global _debug
    # what the imports built lives as long as the process: the cyclic collector need not walk
    # it again each time a command allocates (a full pass costs tens of milliseconds)
    gc.freeze()
    args, flag = _global_debug(sys.argv[1:])
    _debug = _debug or flag or bool(os.environ.get("LABCTL_DEBUG"))
    if flag:
        args.insert(0, "--debug")  # where the root callback takes it
    try:
        app(args=args, prog_name="labctl")
    except LabctlError as exc:
        if _debug:
            import traceback

            traceback.print_exc()
        from labctl import ui

        ui.error(exc.message, exc.remedy)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # a bug: one line unless --debug
        if _debug:
            raise
        sys.stderr.write(f"labctl: internal error: {type(exc).__name__}: {exc} "
                         "(run with --debug for the traceback)\n")
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
