"""Plans: ordered Changes that describe themselves before anything runs.

Each Change has a sentence (``describe``), the exact commands it will run (``commands``,
argv lists with privilege as a field) and, for file edits, a unified diff.  ``--dry-run``
prints a Plan and stops; ``execute`` applies one through the Runner.  Planners are pure:
they take facts and return a Plan.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import fileops
from labctl.errors import LabctlError
from labctl.runner import Runner, audit, display, is_root

Validator = Callable[[bytes], None]


@dataclass
class Command:
    argv: list[str]
    sudo: bool = False
    timeout: float | None = None

    def show(self) -> str:
        return display(self.argv, self.sudo)


class Change:
    """One step of a plan (subclasses are dataclasses with these two fields).  A subclass whose
    description may be left empty says what it does in ``default_description``."""

    description: str
    privileged: bool

    def __post_init__(self) -> None:
        if not self.description:
            self.description = self.default_description()

    def default_description(self) -> str:
        return ""

    def commands(self) -> list[Command]:
        return []

    def diff(self) -> str:
        return ""

    def apply(self, ctx: ExecContext) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "description": self.description,
            "privileged": self.privileged,
            "commands": [{"argv": c.argv, "sudo": c.sudo} for c in self.commands()],
            "diff": self.diff(),
        }


def unified_diff(path: Path, old: bytes | None, new: bytes | None) -> str:
    a = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = (new or b"").decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(
        a, b, fromfile=str(path) if old is not None else "/dev/null",
        tofile=str(path) if new is not None else "/dev/null",
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


@dataclass
class WriteFile(Change):
    """Replace a file atomically (backup first), after validating the new bytes."""

    path: Path
    old: bytes | None
    new: bytes
    description: str = ""
    privileged: bool = True
    validate: Validator | None = None
    mode: int = 0o644

    def default_description(self) -> str:
        return f"write {self.path}"

    def diff(self) -> str:
        return unified_diff(self.path, self.old, self.new)

    def apply(self, ctx: ExecContext) -> None:
        if self.validate is not None:
            self.validate(self.new)
        current = self.path.read_bytes() if self.path.exists() else None
        if current != self.old:
            raise LabctlError(
                f"{self.path} changed while labctl was planning; nothing was written",
                "run the command again",
            )
        if self.path.is_symlink():
            ctx.notices.append(f"{self.path} is a symlink: labctl changed the file it points to, "
                               f"{fileops.real_target(self.path)}")
        ctx.write(self.path, self.new, privileged=self.privileged, mode=self.mode)


@dataclass
class DeleteFile(Change):
    path: Path
    old: bytes
    description: str = ""
    privileged: bool = True

    def default_description(self) -> str:
        return f"remove {self.path}"

    def diff(self) -> str:
        return unified_diff(self.path, self.old, None)

    def apply(self, ctx: ExecContext) -> None:
        ctx.delete(self.path, privileged=self.privileged)


@dataclass
class Run(Change):
    """Run one or more commands."""

    cmds: list[Command]
    description: str = ""
    check: bool = True

    def __post_init__(self) -> None:
        self.privileged = any(c.sudo for c in self.cmds)
        super().__post_init__()

    def default_description(self) -> str:
        return "; ".join(c.show() for c in self.cmds)

    def commands(self) -> list[Command]:
        return self.cmds

    def apply(self, ctx: ExecContext) -> None:
        for c in self.cmds:
            ctx.runner.run(c.argv, sudo=c.sudo, timeout=c.timeout, check=self.check)


@dataclass
class Step(Change):
    """A step in Python (wait for an address, talk to an API): described, not shown as argv."""

    description: str
    fn: Callable[[ExecContext], object]
    privileged: bool = False
    shown: list[Command] = field(default_factory=list)
    quiet: bool = False  # bookkeeping (labctl's own records): in --dry-run, not on the spinner

    def commands(self) -> list[Command]:
        return self.shown

    def apply(self, ctx: ExecContext) -> None:
        self.fn(ctx)


@dataclass
class Plan:
    title: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # hints about the plan
    after: list[str] = field(default_factory=list)  # what to tell the user once applied
    warnings: list[str] = field(default_factory=list)  # what may not work as wanted
    overlaps: list[str] = field(default_factory=list)  # routes labctl did not make overlap the lab
    noops: list[str] = field(default_factory=list)  # why something needs no change

    @property
    def messages(self) -> list[str]:
        """Everything the plan says before it runs, as the user sees it."""
        return [*(f"warning: {w}" for w in [*self.warnings, *self.overlaps]), *self.notes, *self.noops]

    def add(self, change: Change) -> None:
        self.changes.append(change)

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def privileged(self) -> bool:
        return any(c.privileged for c in self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "changes": [c.as_dict() for c in self.changes],
            "notes": self.notes,
            "warnings": [*self.warnings, *self.overlaps],
            "noops": self.noops,
        }

    def render(self) -> str:
        """The dry-run text: every change, its exact commands and diffs."""
        lines = [f"Plan: {self.title}"]
        if self.empty:
            lines.append("  nothing to do")
        for i, change in enumerate(self.changes, 1):
            lines.append(f"{i}. {change.description}")
            for cmd in change.commands():
                lines.append(f"   $ {cmd.show()}")
            diff = change.diff()
            if diff:
                lines.extend("   " + d for d in diff.rstrip("\n").split("\n"))
        for w in [*self.warnings, *self.overlaps]:
            lines.append(f"warning: {w}")
        for note in [*self.notes, *self.noops]:
            lines.append(f"note: {note}")
        return "\n".join(lines) + "\n"


@dataclass
class ExecContext:
    runner: Runner
    backup_dir: Path
    written: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # said to the user after the plan ran

    def write(self, path: Path, data: bytes, *, privileged: bool, mode: int = 0o644) -> None:
        """Replace ``path`` (backup first); then read it back: success is only reported for
        the bytes that are really there."""
        if privileged and is_root():
            audit(["write", str(path)])
        if privileged and not is_root():
            from labctl.privileged import run_helper

            run_helper(self.runner, "labctl.fileops", ["write", str(path), str(self.backup_dir)],
                       input=data)
        else:
            try:
                fileops.backup(path, self.backup_dir)
                path.parent.mkdir(parents=True, exist_ok=True)
                fileops.atomic_write(path, data, default_mode=mode)
            except OSError as exc:
                raise LabctlError(f"cannot write {path}: {exc.strerror or exc}",
                                  "make it writable (read-only mount? chattr +i?) and run the "
                                  "command again") from exc
        self.verify(path, data)
        self.written.append(path)

    def delete(self, path: Path, *, privileged: bool) -> None:
        if privileged and is_root():
            audit(["delete", str(path)])
        if privileged and not is_root():
            from labctl.privileged import run_helper

            run_helper(self.runner, "labctl.fileops", ["delete", str(path), str(self.backup_dir)])
        else:
            fileops.backup(path, self.backup_dir)
            path.unlink(missing_ok=True)
        self.verify(path, None)
        self.written.append(path)

    def digest(self, path: Path) -> str | None:
        """sha256 of what ``path`` holds now (None: absent); a file this user may not read is
        read by the isolated privileged helper."""
        try:
            return fileops.digest(path)
        except PermissionError:
            if is_root():
                raise
        from labctl.privileged import run_helper

        out = run_helper(self.runner, "labctl.fileops", ["digest", str(path)]).stdout.strip()
        return None if out == "absent" else out

    def verify(self, path: Path, data: bytes | None) -> None:
        """The file holds ``data`` (None: it is gone), or a clear error."""
        import hashlib

        want = None if data is None else hashlib.sha256(data).hexdigest()
        try:
            have = self.digest(path)
        except OSError as exc:
            raise LabctlError(f"cannot read {path} back after changing it: {exc.strerror or exc}",
                              "check the file, then run the command again") from exc
        if have != want:
            what = "still exists" if data is None else (
                "is missing" if have is None else "does not hold the new content")
            raise LabctlError(
                f"the change to {path} did not take effect: the file {what} although the "
                "privileged write reported success",
                "run the command again with --debug to see how sudo ran labctl's helper")


def execute(plan: Plan, runner: Runner, backup_dir: Path,
            progress: Callable[[Change], Any] | None = None,
            data: dict[str, Any] | None = None,
            done: Callable[[Change], None] | None = None) -> ExecContext:
    """Apply a plan in order: ask for root once up front, then run each change.  ``data``
    hands the changes what they need beyond the Runner (e.g. the docker-machine adapter);
    ``done`` hears of each change once it has been applied."""
    ctx = ExecContext(runner=runner, backup_dir=backup_dir, data=dict(data or {}))
    if plan.privileged:
        runner.ensure_privilege()
    for change in plan.changes:
        if progress is not None and not getattr(change, "quiet", False):
            with progress(change):
                change.apply(ctx)
        else:
            change.apply(ctx)
        if done is not None:
            done(change)
    return ctx
