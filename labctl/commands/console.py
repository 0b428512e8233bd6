"""labctl console-help: the right console recovery guide for a VM's guest OS."""

from __future__ import annotations

import typer

from labctl.commands.params import Format, complete_machine


def console_help(
    vm: str = typer.Argument(..., metavar="VM", autocompletion=complete_machine,
                             help="The VM: a .vmx path, a docker-machine name, or a name "
                             "`vmrun list` shows (the .vmx file name or displayName)."),
    fmt: Format = typer.Option(Format.text, "--format", case_sensitive=False,
                               help="text for the terminal, markdown for a ticket, json for tools."),
    open_console: bool = typer.Option(False, "--open-console",
                                      help="Start the VM with its console window (vmrun start VMX gui)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --open-console: show the command only."),
) -> None:
    """Print how to get into a VM from its console: Photon OS, Flatcar/CoreOS or boot2docker.

    Example: labctl console-help lab --format markdown
    """
    show(vm, fmt.value, open_console=open_console, dry_run=dry_run)


def show(vm: str | None, fmt: str, *, open_console: bool, dry_run: bool,
         photon: int | None = None, photon_only: bool = False) -> None:
    """Resolve the VM, print its guide, then (with --open-console) apply or show the plan."""
    from labctl import guides, ui
    from labctl.commands.common import apply
    from labctl.errors import InvalidInput
    from labctl.paths import Paths

    guides.check_format(fmt)
    paths = Paths.detect()
    info = guides.resolve_vm(vm, paths) if vm is not None else None
    if open_console and info is None:
        raise InvalidInput("--open-console needs a VM", "name the VM: a .vmx path or a machine name")
    if photon_only:
        guide = guides.photon_guide(paths, info, photon)
    else:
        assert info is not None
        guide = guides.console_guide(paths, info)
    if fmt == "json":
        for note in guide.notes:
            ui.info(f"note: {note}")
    text = guides.render(guide, fmt)
    if fmt == "text" and not open_console:
        ui.page(text)  # a long guide on a terminal goes through the pager
    else:
        ui.plain(text)
    if not open_console:
        return
    assert info is not None
    running = None
    if not dry_run:
        from labctl.errors import LabctlError
        try:
            running = paths.hypervisor.running_vms()
        except LabctlError:
            running = None  # vmrun start below reports a missing or failing vmrun itself
    plan = guides.open_console_plan(paths, info, running)
    if fmt == "json" and dry_run:
        ui.info(plan.render().rstrip("\n"))
        return
    apply(plan, paths, dry_run)
