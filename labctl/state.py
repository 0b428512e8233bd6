"""labctl's own records: what it created (vmnets, routes, units, machines), so it only ever
changes or removes its own things.  One JSON file in the state dir, written atomically."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.errors import MalformedFile
from labctl.paths import Paths

STATE_FILE = "state.json"
EMPTY: dict[str, Any] = {"version": 1, "vmnets": {}, "routes": [], "machines": {}, "units": {}}


def state_path(paths: Paths) -> Path:
    return paths.state_dir / STATE_FILE


# The last state text that passed shape_problem in this process: a command reads the file
# several times, and checking 2,000 route records again each time made it quadratic-looking.
_checked: str | None = None


def load(paths: Paths) -> dict[str, Any]:
    global _checked
    path = state_path(paths)
    try:
        text = path.read_text()
        data = json.loads(text)
    except FileNotFoundError:
        return copy.deepcopy(EMPTY)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _damaged(paths, str(exc)) from exc
    except PermissionError:
        return copy.deepcopy(EMPTY)
    if text != _checked:
        problem = shape_problem(data)
        if problem:
            raise _damaged(paths, problem)
        _checked = text
    for key, value in EMPTY.items():
        data.setdefault(key, copy.deepcopy(value))
    return dict(data)


def _damaged(paths: Paths, what: str) -> MalformedFile:
    return MalformedFile(f"labctl's state file {state_path(paths)} is damaged: {what}",
                         f"restore its newest good copy from {paths.backup_dir}, or remove it "
                         "(labctl then forgets what it set up)")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def shape_problem(data: Any) -> str | None:
    """Why ``data`` is not a state labctl wrote (None: it is)."""
    if not isinstance(data, dict):
        return f"expected a JSON object, found {_kind(data)}"
    containers = {"vmnets": dict, "machines": dict, "units": dict, "routes": list}
    for key, want in containers.items():
        if key in data and not isinstance(data[key], want):
            return f'"{key}" should be a {"list" if want is list else "object"}, found {_kind(data[key])}'
    default = data.get("default_vmnet")
    if default is not None and (not isinstance(default, int) or isinstance(default, bool)):
        return f'"default_vmnet" should be a number, found {_kind(default)}'
    for key, info in data.get("vmnets", {}).items():
        if not str(key).isdigit() or not isinstance(info, dict):
            return f'vmnets: entry {key!r} should be a vmnet number with an object'
    from labctl.validate import MACHINE_NAME_RE

    for name, rec in data.get("machines", {}).items():
        if not MACHINE_NAME_RE.fullmatch(name) or len(name) > 63:
            return f"machine name {name!r} is not one labctl accepts"
        if not isinstance(rec, dict):
            return f"machine {name!r} should be an object, found {_kind(rec)}"
        vmnet = rec.get("vmnet")
        if vmnet is not None and not (isinstance(vmnet, int) and not isinstance(vmnet, bool)
                                      or isinstance(vmnet, str) and vmnet.isdigit()):
            return f'machine {name!r}: "vmnet" should be a number, found {_kind(vmnet)}'
        for key in ("mac", "ip", "vmx", "nic", "driver", "context"):
            if rec.get(key) is not None and not isinstance(rec[key], str):
                return f'machine {name!r}: "{key}" should be text, found {_kind(rec[key])}'
        for key in ("engine", "firewall"):
            if rec.get(key) is not None and not isinstance(rec[key], dict):
                return f'machine {name!r}: "{key}" should be an object, found {_kind(rec[key])}'
    from labctl.routes.records import Record

    for i, item in enumerate(data.get("routes", [])):
        if not isinstance(item, dict) or Record.from_dict(item) is None:
            return f"route record {i + 1} is not a destination and gateway"
        owner = item.get("machine") or ""
        if not isinstance(owner, str) or owner and not MACHINE_NAME_RE.fullmatch(owner):
            return f"route record {i + 1} names the machine {owner!r}, not one labctl accepts"
    for key, value in data.get("units", {}).items():
        if not isinstance(value, str):
            return f"unit {key!r} should be a path, found {_kind(value)}"
    return None


_ROUTES_SLOT = "\x00labctl-routes\x00"


def dump(state: dict[str, Any]) -> bytes:
    """The state as JSON (keys sorted, indented), each route record on one line: thousands of
    records stay readable and are written at the JSON encoder's C speed."""
    global _checked
    routes = state.get("routes")
    if not isinstance(routes, list) or not routes:
        return (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()
    text = json.dumps({**state, "routes": _ROUTES_SLOT}, indent=2, sort_keys=True)
    encode = json.JSONEncoder(sort_keys=True).encode  # one encoder (json.dumps makes one per call)
    lines = ",\n    ".join(map(encode, routes))
    text = text.replace(json.dumps(_ROUTES_SLOT), "[\n    " + lines + "\n  ]", 1) + "\n"
    _checked = text  # what labctl itself writes needs no check when it is read back
    return text.encode()


def update_step(paths: Paths, description: str, mutate: Callable[[dict[str, Any]], None]):
    """A plan Step that re-reads the state, applies ``mutate`` and writes it back."""
    from labctl.plan import ExecContext, Step

    def fn(ctx: ExecContext) -> None:
        state = load(paths)
        mutate(state)
        ctx.write(state_path(paths), dump(state), privileged=True, mode=0o644)

    return Step(description=description, fn=fn, privileged=True, quiet=True)
