"""Lossless text: bytes are decoded with surrogateescape so any file round-trips exactly."""

from __future__ import annotations

from pathlib import Path

from labctl.errors import MalformedFile, PreconditionMissing


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def read(path: Path, what: str, *, missing: str | None = None) -> bytes:
    """The file's bytes.  A missing file is malformed input (exit 2), or, with ``missing``
    (the remedy: the file belongs to software that is not installed or never ran), a missing
    precondition (exit 3); so is a file labctl may not read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        if missing:
            raise PreconditionMissing(f"{what} not found: {path}", missing) from exc
        raise MalformedFile(f"{what} not found: {path}") from exc
    except IsADirectoryError as exc:
        raise MalformedFile(f"{what} is a directory, not a file: {path}") from exc
    except PermissionError as exc:
        raise PreconditionMissing(f"cannot read {what} {path}: permission denied",
                                  "run labctl with sudo") from exc
