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


def load(paths: Paths) -> dict[str, Any]:
    path = state_path(paths)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return copy.deepcopy(EMPTY)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedFile(f"labctl's state file {path} is damaged: {exc}",
                            f"restore it from {paths.backup_dir} or remove it") from exc
    except PermissionError:
        return copy.deepcopy(EMPTY)
    for key, value in EMPTY.items():
        data.setdefault(key, copy.deepcopy(value))
    return dict(data)


def dump(state: dict[str, Any]) -> bytes:
    return (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()


def update_step(paths: Paths, description: str, mutate: Callable[[dict[str, Any]], None]):
    """A plan Step that re-reads the state, applies ``mutate`` and writes it back."""
    from labctl.plan import ExecContext, Step

    def fn(ctx: ExecContext) -> None:
        state = load(paths)
        mutate(state)
        ctx.write(state_path(paths), dump(state), privileged=True, mode=0o644)

    return Step(description=description, fn=fn, privileged=True, quiet=True)
