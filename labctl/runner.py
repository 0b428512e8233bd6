"""The one way labctl runs an external command.

argv lists only (never a shell string), a timeout on every call, privilege as a field
(``sudo=True`` prefixes ``sudo -n`` when not root, after one ``sudo -v`` up front), output
captured and logged.  The ``sh`` library does the process work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.errors import CommandFailed, CommandTimeout, PreconditionMissing

log = logging.getLogger("labctl.runner")

DEFAULT_TIMEOUT = 60.0
# what a command run through sudo gets: a fixed PATH, the locale, nothing else (and "/" as its
# working directory), whatever the caller's shell had
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
KEEP_ENV = ("LANG", "LC_ALL", "LC_CTYPE")


def root_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": SAFE_PATH}
    env.update({k: os.environ[k] for k in KEEP_ENV if os.environ.get(k)})
    env.update(extra or {})
    return env


def is_root() -> bool:
    """Whether labctl runs with root's rights (else privileged steps go through ``sudo -n``).
    ``LABCTL_ACT_AS_USER=1`` makes a root process take the user's path (a test seam: the
    suite runs as root and checks what a user's run does, through a sudo stand-in)."""
    if os.environ.get("LABCTL_ACT_AS_USER") == "1":
        return False
    return os.geteuid() == 0


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def display(argv: Sequence[str], sudo: bool = False) -> str:
    """The command as a user would paste it."""
    prefix = "sudo " if sudo and not is_root() else ""
    return prefix + shlex.join(argv)


@dataclass
class Runner:
    """Runs commands; remembers what it ran (``history``) for summaries and audits."""

    default_timeout: float = DEFAULT_TIMEOUT
    history: list[Result] = field(default_factory=list)
    _sudo_ready: bool = False

    def ensure_privilege(self) -> None:
        """Ask for root once, up front, before the first change of a plan."""
        if is_root() or self._sudo_ready:
            return
        import sh

        try:
            sh.Command("sudo")("-v", _fg=True)
        except sh.CommandNotFound as exc:
            raise PreconditionMissing(
                "this change needs root and sudo is not installed", "run labctl as root"
            ) from exc
        except sh.ErrorReturnCode as exc:
            raise PreconditionMissing(
                "this change needs root and sudo refused", "run it again and enter your password"
            ) from exc
        self._sudo_ready = True

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        timeout: float | None = None,
        check: bool = True,
        input: str | bytes | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        clean_env: bool = False,
        show: bool = True,
    ) -> Result:
        """``env`` adds to labctl's environment, or with ``clean_env`` is the whole of it;
        ``cwd`` is the command's working directory (default: labctl's).  A command run through
        sudo always starts in ``/`` with a cleaned environment (``root_env``, plus ``env``).
        ``show=False``: the output is data to parse (a routing table as JSON), not progress a
        running step should show line by line."""
        import sh

        argv = [str(a) for a in argv]
        full = list(argv)
        if sudo:
            audit(argv)
            if not is_root():
                full = ["sudo", "-n", *argv]
                env, clean_env, cwd = root_env(env), True, cwd or "/"
        limit = self.default_timeout if timeout is None else timeout
        log.info("run%s: %s", " (privileged)" if sudo else "", shlex.join(argv))
        started = time.monotonic()
        # _bg + wait(timeout) instead of sh's _timeout, whose watcher thread adds ~100 ms to
        # every call; on a timeout the command's whole process group is killed.
        kwargs: dict[str, Any] = {
            "_ok_code": list(range(256)),
            "_return_cmd": True,
            "_bg": True,
            "_bg_exc": False,
            "_new_group": True,
            "_decode_errors": "replace",
        }
        if input is not None:
            kwargs["_in"] = input
        if clean_env:
            kwargs["_env"] = dict(env or {})
        elif env is not None:
            kwargs["_env"] = {**os.environ, **env}
        if cwd is not None:
            kwargs["_cwd"] = cwd
        tapped = _tap(kwargs) if show else None  # a running ui.step shows the latest line
        try:
            proc = sh.Command(full[0])(*full[1:], **kwargs)
            _wait(proc, limit, full)
        except sh.CommandNotFound as exc:
            raise PreconditionMissing(
                f"{argv[0]} not found", f"install it or check your PATH ({shlex.join(argv)})"
            ) from exc
        except sh.TimeoutException as exc:
            raise CommandTimeout(
                f"{shlex.join(argv)} did not finish within {limit:g} s", argv=argv
            ) from exc
        except PermissionError as exc:
            raise PreconditionMissing(f"{argv[0]} is not executable: {exc}") from exc
        result = Result(
            argv=argv,
            returncode=int(proc.exit_code or 0),
            stdout="".join(tapped[0]) if tapped else _text(proc.stdout),
            stderr="".join(tapped[1]) if tapped else _text(proc.stderr),
            seconds=time.monotonic() - started,
        )
        self.history.append(result)
        log.debug("rc=%s in %.3fs stdout=%r stderr=%r", result.returncode, result.seconds,
                  result.stdout[-2000:], result.stderr[-2000:])
        if check and not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit status {result.returncode}"
            raise CommandFailed(
                f"{shlex.join(argv)} failed: {last}",
                argv=argv,
                returncode=result.returncode,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return result


def _tap(kwargs: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """When a step listens (labctl.progress), every output line goes to it as it comes, and
    is kept for the Result as usual."""
    from labctl import progress

    feed = progress.current()
    if feed is None:
        return None
    out: list[str] = []
    err: list[str] = []

    def tap(store: list[str], line: str | bytes) -> None:
        text = _text(line)
        store.append(text)
        with contextlib.suppress(Exception):  # showing progress must never break a command
            feed(text)

    kwargs["_out"] = lambda line: tap(out, line)
    kwargs["_err"] = lambda line: tap(err, line)
    return out, err


def _wait(proc: Any, limit: float, full: list[str]) -> None:
    """Block until the command ends (sh's output readers joined, so stdout/stderr are
    complete); at ``limit`` kill its process group and raise sh's TimeoutException.  sh's own
    ``wait(timeout=)`` polls every 100 ms, which rounds every command up to the next tenth of
    a second; a timer thread cancelled at exit costs nothing measurable."""
    import threading

    import sh

    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        with contextlib.suppress(OSError):
            proc.kill_group()

    timer = threading.Timer(limit, on_timeout)
    timer.daemon = True
    timer.start()
    try:
        proc.wait()
        proc.process.wait()
    except sh.ErrorReturnCode:  # killed by a signal (ours on a timeout, or someone else's)
        if not timed_out.is_set():
            raise
    finally:
        timer.cancel()
    if timed_out.is_set():
        raise sh.TimeoutException(None, shlex.join(full))


def audit(argv: Sequence[str]) -> None:
    """With ``LABCTL_AUDIT_LOG=FILE``, append each privileged action (a command run as root,
    or ``write PATH`` / ``delete PATH`` for a file changed with root's rights) as one JSON line:
    the observable behind "a converged ``up`` runs no privileged command"."""
    path = os.environ.get("LABCTL_AUDIT_LOG")
    if not path:
        return
    import json

    with contextlib.suppress(OSError), open(path, "a") as fh:
        fh.write(json.dumps({"argv": [str(a) for a in argv], "pid": os.getpid()}) + "\n")


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data or "")
