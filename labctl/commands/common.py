"""What every changing command does the same way: lock, plan, print or apply."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from labctl.paths import Paths


@contextlib.contextmanager
def changing(paths: Paths, dry_run: bool) -> Iterator[None]:
    """Hold labctl's lock while facts are read and the plan is applied (not for a dry run,
    which only reads)."""
    if dry_run:
        yield
        return
    from labctl.fileops import locked

    with locked(paths.state_dir):
        yield


def apply(plan, paths: Paths, dry_run: bool, *, json_out: bool = False,
          runner=None) -> None:
    """Print the plan (dry run) or execute it with a spinner per step."""
    from labctl import ui
    from labctl.plan import execute
    from labctl.runner import Runner

    if dry_run:
        if json_out:
            ui.print_document("plan", plan.as_dict())
        else:
            ui.plain(plan.render())
        return
    for line in plan.messages:
        ui.info(line)
    if plan.empty:
        return
    ctx = execute(plan, runner or Runner(), paths.backup_dir, progress=lambda c: ui.step(c.description))
    for line in [*ctx.notices, *plan.after]:
        ui.info(line)
