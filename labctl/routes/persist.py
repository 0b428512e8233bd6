"""Routes that survive reboots: a launchd daemon (macOS) or a systemd unit (Linux) that runs
``labctl route sync [MACHINE] --offline`` (labctl's recorded routes, no Engine needed) at boot
and when the vmnet interface comes up.  Rendered from templates/persist/, validated before it
is written (plistlib always, ``plutil -lint`` / ``systemd-analyze verify`` where available)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from labctl.errors import MalformedFile
from labctl.paths import Paths
from labctl.plan import Command, DeleteFile, Plan, Run, WriteFile
from labctl.runner import Runner

INTERVAL = 60
PASS_ENV = ("LABCTL_STATE_DIR", "LABCTL_ROOT", "LABCTL_PLATFORM")


def slug(machine: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", machine) or "default"


def label(machine: str) -> str:
    return f"io.labctl.routes.{slug(machine)}"


def unit_path(paths: Paths, machine: str) -> Path:
    if paths.platform == "darwin":
        return paths.unit_dir / f"{label(machine)}.plist"
    return paths.unit_dir / f"labctl-routes-{slug(machine)}.service"


def sync_argv(machine: str) -> list[str]:
    argv = [sys.executable, "-m", "labctl", "route", "sync"]
    if machine:
        argv.append(machine)
    return [*argv, "--offline"]


def device_unit(iface: str) -> str:
    """systemd's device unit for a network interface (systemd-escape of the name)."""
    esc = "".join(c if c.isalnum() or c in ":_." else f"\\x{ord(c):02x}" for c in iface)
    return f"sys-subsystem-net-devices-{esc}.device"


def _env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASS_ENV if os.environ.get(k)}


def render_unit(paths: Paths, machine: str, gateway: str, iface: str | None) -> bytes:
    """The unit's bytes.  Every value is checked or quoted for where it goes: the machine name
    and gateway are validated; ExecStart's words and Environment= values are quoted by
    systemd's rules (%, $, quotes, backslashes), XML-escaped in the plist."""
    from labctl import validate
    from labctl.render import render

    if machine:
        validate.machine_name(machine)
    gateway = str(validate.gateway(gateway))
    argv = sync_argv(machine)
    ctx = {"machine_label": machine or "the lab", "gateway": gateway, "env": _env(), "argv": argv,
           "iface": iface}
    if paths.platform == "darwin":
        log = "/var/log/labctl-routes.log"
        return render("persist/launchd.plist.j2", label=label(machine), interval=INTERVAL, log=log,
                      **ctx).encode()
    ctx.update(machine_label=validate.systemd_text(ctx["machine_label"]),
               iface=validate.systemd_text(iface) if iface else None,
               env_lines=[validate.systemd_assignment(k, v) for k, v in _env().items()])
    return render("persist/systemd.service.j2", exec_start=validate.systemd_command(argv),
                  device=device_unit(iface) if iface else None, **ctx).encode()


def validate_plist(data: bytes, runner: Runner | None = None) -> None:
    import plistlib

    try:
        doc = plistlib.loads(data)
    except Exception as exc:  # plistlib raises several types
        raise MalformedFile(f"the rendered launchd plist does not parse: {exc}") from exc
    if not isinstance(doc, dict) or not doc.get("Label") or not isinstance(doc.get("ProgramArguments"), list):
        raise MalformedFile("the rendered launchd plist lacks Label or ProgramArguments")
    plutil = shutil.which("plutil")
    if plutil:
        _check_file(runner, [plutil, "-lint"], data, "unit.plist")


def validate_systemd(data: bytes, name: str = "labctl-routes.service", runner: Runner | None = None) -> None:
    text = data.decode()
    for section in ("[Unit]", "[Service]", "[Install]"):
        if section not in text:
            raise MalformedFile(f"the rendered systemd unit lacks {section}")
    if not re.search(r"^ExecStart=/", text, re.M):
        raise MalformedFile("the rendered systemd unit has no absolute ExecStart")
    analyze = shutil.which("systemd-analyze")
    if analyze:
        _check_file(runner, [analyze, "verify", "--man=no"], data, name)


def _check_file(runner: Runner | None, argv: list[str], data: bytes, name: str) -> None:
    """Run a linter on the rendered bytes; any failure or any complaint about a line of the
    file (systemd only warns about an unknown setting and "ignores" it) rejects it."""
    with tempfile.TemporaryDirectory(prefix="labctl-unit-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        res = (runner or Runner()).run([*argv, str(path)], timeout=60, check=False)
    detail = f"{res.stderr}\n{res.stdout}".replace(str(path), name)
    complaints = [ln for ln in detail.splitlines() if re.match(rf"^{re.escape(name)}:\d+:", ln)]
    if not res.ok or complaints:
        lines = complaints or [ln for ln in detail.splitlines() if ln.strip()][-1:]
        raise MalformedFile(f"{Path(argv[0]).name} rejected the rendered unit: {'; '.join(lines)}")


def validator(paths: Paths, name: str):
    if paths.platform == "darwin":
        return lambda data: validate_plist(data)
    return lambda data: validate_systemd(data, name)


def _launchctl(paths: Paths) -> str:
    return str(paths.host("/bin/launchctl"))


def _systemctl(paths: Paths) -> str:
    return str(paths.which("systemctl", "/bin/systemctl"))


_READ: Any = object()  # plan_persist/plan_unpersist read the unit file themselves


def plan_persist(paths: Paths, machine: str, gateway: str, iface: str | None,
                 old: bytes | None = _READ) -> Plan:
    """The unit that keeps the routes; ``old``: the unit file's bytes now (None: absent; by
    default read from disk)."""
    from labctl import state as labstate

    path = unit_path(paths, machine)
    new = render_unit(paths, machine, gateway, iface)
    if old is _READ:
        old = path.read_bytes() if path.exists() else None
    plan = Plan(f"keep {machine or 'the lab'}'s routes across reboots ({path})")
    if old == new:
        plan.noops.append(f"{path} is already in place; nothing to do")
        return plan
    plan.add(WriteFile(path, old, new, description=f"write {path}", validate=validator(paths, path.name)))
    if paths.platform == "darwin":
        lc = _launchctl(paths)
        if old is not None:
            plan.add(Run([Command([lc, "bootout", f"system/{label(machine)}"], sudo=True)], check=False,
                         description=f"unload the previous {label(machine)}"))
        plan.add(Run([Command([lc, "bootstrap", "system", str(path)], sudo=True)],
                     description=f"load {label(machine)} into launchd"))
    else:
        sc = _systemctl(paths)
        plan.add(Run([Command([sc, "daemon-reload"], sudo=True),
                      Command([sc, "enable", "--now", "--no-block", path.name], sudo=True)],
                     description=f"enable {path.name}"))

    def record(state: dict) -> None:
        state.setdefault("units", {})[f"routes:{machine}"] = str(path)

    plan.add(labstate.update_step(paths, f"record {path.name} as labctl's", record))
    return plan


def plan_unpersist(paths: Paths, machine: str, old: bytes | None = _READ) -> Plan:
    from labctl import state as labstate

    path = unit_path(paths, machine)
    plan = Plan(f"stop keeping {machine or 'the lab'}'s routes across reboots")
    if old is _READ:
        old = path.read_bytes() if path.exists() else None
    if old is None:
        plan.noops.append(f"{path} does not exist; nothing to do")
        return plan
    if paths.platform == "darwin":
        plan.add(Run([Command([_launchctl(paths), "bootout", f"system/{label(machine)}"], sudo=True)],
                     check=False, description=f"unload {label(machine)}"))
        plan.add(DeleteFile(path, old))
    else:
        sc = _systemctl(paths)
        plan.add(Run([Command([sc, "disable", "--now", path.name], sudo=True)], check=False,
                     description=f"disable {path.name}"))
        plan.add(DeleteFile(path, old))
        plan.add(Run([Command([sc, "daemon-reload"], sudo=True)], description="reload systemd"))

    def forget(state: dict) -> None:
        state.setdefault("units", {}).pop(f"routes:{machine}", None)

    plan.add(labstate.update_step(paths, f"forget {path.name}", forget))
    return plan
