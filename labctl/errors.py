"""One error tree.  Every failure labctl reports is a LabctlError: a one-line message,
a remedy the user can act on, and the process exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PRECONDITION = 3


class LabctlError(Exception):
    """Base error: printed as one line (plus an optional remedy line), never a traceback."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = " ".join(message.split("\n")).strip()
        self.remedy = remedy

    def __str__(self) -> str:
        return self.message


class InvalidInput(LabctlError):
    """Bad user input or a malformed file: nothing was changed."""

    exit_code = EXIT_USAGE


class MalformedFile(InvalidInput):
    """A file labctl must read is missing a part it needs or does not parse."""


class Conflict(InvalidInput):
    """The request clashes with something labctl did not create."""


class PreconditionMissing(LabctlError):
    """A tool, a file or a privilege the command needs is not there."""

    exit_code = EXIT_PRECONDITION


class CommandFailed(LabctlError):
    """An external command failed."""

    def __init__(
        self,
        message: str,
        remedy: str | None = None,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        super().__init__(message, remedy)
        self.argv = argv or []
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class CommandTimeout(CommandFailed):
    """An external command did not finish within its time limit."""


class LockBusy(LabctlError):
    """Another labctl run holds the lock."""
