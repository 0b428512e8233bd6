"""Shared parameter types: fixed choices (listed in --help, refused early by the parser,
completed by the shell) and completions from labctl's own records.  Light: nothing here
imports more than labctl's paths and state."""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Any

import typer


class Nic(StrEnum):
    dedicated = "dedicated"
    existing = "existing"


class Driver(StrEnum):
    vmwarefusion = "vmwarefusion"
    vmware = "vmware"


class Format(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


class Photon(StrEnum):
    v1 = "1"
    v2 = "2"
    v3 = "3"
    v4 = "4"
    v5 = "5"


def repeatable(flag: str, metavar: str, help: str) -> Any:
    """A ``--flag VALUE`` option that may be given several times (a list; None when not given).
    ``help`` says that it repeats, in the command's own words."""
    return typer.Option(None, flag, metavar=metavar, help=help)


def value(choice: Enum | None) -> str | None:
    return None if choice is None else str(choice.value)


def _matching(words: list[str], incomplete: str) -> list[str]:
    return sorted(w for w in set(words) if w.startswith(incomplete))


def recorded_machines() -> list[str]:
    """The machines labctl has records of (its state file), for completion: never an error."""
    try:
        from labctl import state
        from labctl.paths import Paths

        data = state.load(Paths.detect())
    except Exception:  # a completion must not fail or print
        return []
    names = [str(n) for n in (data.get("machines") or {})]
    names += [str(r.get("machine")) for r in data.get("routes") or []
              if isinstance(r, dict) and r.get("machine")]
    return names


def complete_machine(incomplete: str) -> list[str]:
    return _matching(recorded_machines(), incomplete)


def complete_vmnet(incomplete: str) -> list[str]:
    """vmnetN from VMware's networking file, and 'auto'."""
    words = ["auto"]
    try:
        from labctl.paths import Paths

        hv = Paths.detect().hypervisor
        net = hv.parse_networks(hv.networking.read_bytes())
        words += [f"vmnet{n}" for n in net.vmnets]
    except Exception:
        pass
    return _matching(words, incomplete)


def complete_schema(incomplete: str) -> list[str]:
    from labctl.documents import NAMES

    return _matching(list(NAMES), incomplete)


def complete_check(incomplete: str) -> list[str]:
    try:
        from labctl import doctor

        ids = [c.id for c in doctor.all_checks()]
    except Exception:
        return []
    return _matching(ids, incomplete)
