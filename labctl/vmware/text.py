"""Lossless text: bytes are decoded with surrogateescape so any file round-trips exactly."""

from __future__ import annotations

from pathlib import Path

from labctl.errors import MalformedFile


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise MalformedFile(f"{what} not found: {path}") from exc
    except IsADirectoryError as exc:
        raise MalformedFile(f"{what} is a directory, not a file: {path}") from exc
    except PermissionError as exc:
        raise MalformedFile(f"cannot read {what} {path}: permission denied",
                            "run labctl with sudo") from exc
