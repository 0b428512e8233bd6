"""Machine output: every ``--json`` document is an object that names its schema and its
``schema_version``.  The JSON schemas ship inside the package (``labctl/schemas/NAME.json``)
and ``labctl schema NAME`` prints one.  A document's version changes only when the document
changes incompatibly (a field removed or its meaning changed); new fields may appear at any
time, so consumers should ignore what they do not know."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMAS = Path(__file__).resolve().parent / "schemas"

#: document name -> the command that prints it
NAMES = {
    "vmnets": "labctl vmnet ls --json",
    "reservations": "labctl dhcp ls --json",
    "routes": "labctl route ls --json",
    "doctor": "labctl doctor --json",
    "checks": "labctl doctor --list-checks --json",
    "up": "labctl up --json",
    "down": "labctl down --json",
    "status": "labctl status --json",
    "guide": "labctl photon reset-password / console-help --format json",
    "plan": "a plan as JSON",
}


def document(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the document ``name``: ``{"schema": name, "schema_version": N, ...}``."""
    if name not in NAMES:
        raise KeyError(name)
    return {"schema": name, "schema_version": SCHEMA_VERSION, **body}


def schema_text(name: str) -> str:
    from labctl.errors import InvalidInput

    if name not in NAMES:
        raise InvalidInput(f"no schema {name!r}: the documents are {', '.join(NAMES)}",
                           "list them with: labctl schema")
    return (SCHEMAS / f"{name}.json").read_text()


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text(name))
    return data
