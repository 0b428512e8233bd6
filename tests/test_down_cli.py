"""`labctl down` owns only its own: which machines it acts on (NAME, default lab, --all), the
question on a terminal before it removes machines (--yes skips it), and finding every .vmx
that may still use a vmnet.  A Fusion desktop under LABCTL_ROOT with the docker-machine
stand-in; machines made by the stand-in, labctl's records written as ``up`` writes them."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import one_error
from tests.test_preflight import Desk


@pytest.fixture
def desk(tmp_path, fusion_root) -> Desk:
    d = Desk(tmp_path, fusion_root)
    d.state.mkdir(parents=True, exist_ok=True)
    return d


def make_machine(desk: Desk, name: str) -> None:
    dm = str(desk.root / "usr/local/bin/docker-machine")
    r = subprocess.run([dm, "create", "-d", "vmwarefusion", name], capture_output=True, text=True,
                       env=desk.env, timeout=120)
    assert r.returncode == 0, r.stderr


def record(desk: Desk, *names: str, created: bool = True) -> None:
    """labctl's records of machines it set up (--nic existing on vmnet8: no vmnet of its own)."""
    state = {"version": 1, "vmnets": {}, "routes": [], "units": {}, "machines": {
        n: {"vmnet": 8, "nic": "existing", "created_by_labctl": created, "driver": "vmwarefusion"}
        for n in names}}
    (desk.state / "state.json").write_text(json.dumps(state))


def labctl(desk: Desk, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True,
                          env=desk.env, timeout=120, cwd=desk.tmp)


def in_terminal(desk: Desk, args: list[str], answer: str | None) -> tuple[int, str]:
    """Run labctl on a pseudo-terminal; type ``answer`` when it asks.  (exit status, output)"""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(desk.tmp)
        os.execve(sys.executable, [sys.executable, "-m", "labctl", *args], desk.env)
    out = b""
    deadline = time.monotonic() + 120
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if answer is not None and not answered and b"?" in out:
                os.write(fd, answer.encode() + b"\n")
                answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_down_without_name_is_the_default_machine(desk):
    make_machine(desk, "lab")
    make_machine(desk, "other")
    record(desk, "lab", "other")
    r = labctl(desk, "down", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "remove machine lab" in r.stdout and "other" not in r.stdout
    r = labctl(desk, "down", "--all", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "remove machine lab" in r.stdout and "remove machine other" in r.stdout


def test_down_without_name_and_no_lab_machine_names_the_ones_it_knows(desk):
    make_machine(desk, "other")
    record(desk, "other")
    before = desk.files()
    r = labctl(desk, "down")
    assert r.returncode == 2, r.stderr
    line = one_error(r.stderr)
    assert "no lab machine named lab (it knows other)" in line and "--all" in line
    assert desk.files() == before
    r = labctl(desk, "down", "other", "--all")
    assert r.returncode == 2 and "either a machine name or --all" in one_error(r.stderr)


def test_down_asks_on_a_terminal_and_no_keeps_everything(desk):
    make_machine(desk, "lab")
    record(desk, "lab")
    before = desk.files()
    code, out = in_terminal(desk, ["down", "lab"], answer="n")
    assert "remove the machine lab and its VM?" in out
    assert code == 1 and "stopped before removing anything; nothing was changed" in out
    after = {k: v for k, v in desk.files().items() if not k.endswith("/labctl.lock")}  # the lock it held
    assert after == before


def test_down_yes_on_a_terminal_does_not_ask(desk):
    make_machine(desk, "lab")
    record(desk, "lab")
    code, out = in_terminal(desk, ["down", "lab", "--yes"], answer=None)
    assert code == 0, out
    assert "VM?" not in out and "lab: removed" in out
    assert not (desk.store / "machines" / "lab").exists()
    assert json.loads((desk.state / "state.json").read_text())["machines"] == {}


def test_down_in_a_pipe_does_not_ask(desk):
    make_machine(desk, "lab")
    record(desk, "lab")
    r = labctl(desk, "down", "lab")
    assert r.returncode == 0, r.stderr
    assert not (desk.store / "machines" / "lab").exists()


def test_down_keeps_a_machine_it_did_not_create_and_does_not_ask(desk):
    make_machine(desk, "lab")
    record(desk, "lab", created=False)
    code, out = in_terminal(desk, ["down", "lab"], answer=None)
    assert code == 0, out
    assert "VM?" not in out
    assert (desk.store / "machines" / "lab" / "config.json").exists()
    assert json.loads((desk.state / "state.json").read_text())["machines"] == {}


def test_every_vmx_labctl_can_find(tmp_path):
    """The .vmx files that may still use a vmnet: docker-machine's store, ``vmrun list``,
    VMware's VM inventory and the user's VM folders (Fusion layout)."""
    from labctl.facts import Facts
    from labctl.paths import Paths

    root = tmp_path / "root"
    home = tmp_path / "home"
    store = home / ".docker/machine"
    (store / "machines/lab").mkdir(parents=True)
    (store / "machines/lab/config.json").write_text("{}")
    running = tmp_path / "elsewhere/running.vmx"
    vmrun = root / "Applications/VMware Fusion.app/Contents/Library/vmrun"
    vmrun.parent.mkdir(parents=True)
    vmrun.write_text(f"#!/bin/sh\necho 'Total running VMs: 1'\necho '{running}'\n")
    vmrun.chmod(0o755)
    inv = home / "Library/Application Support/VMware Fusion/vmInventory"
    inv.parent.mkdir(parents=True)
    inv.write_text('index0.field0.name = "x"\nvmlist1.config = "/Volumes/ext/win.vmwarevm/win.vmx"\n')
    folder = home / "Virtual Machines.localized/debian.vmwarevm"
    folder.mkdir(parents=True)
    (folder / "debian.vmx").write_text("")
    facts = Facts(Paths("darwin", root), env={"HOME": str(home), "MACHINE_STORAGE_PATH": str(store),
                                             "PATH": os.environ["PATH"]})
    found = {str(p) for p in facts.vmx_files()}
    assert found == {str(store / "machines/lab/lab.vmx"), str(running), "/Volumes/ext/win.vmwarevm/win.vmx",
                     str(folder / "debian.vmx")}


def test_a_vmx_on_a_vmnet_keeps_it(tmp_path):
    """World facts: a .vmx with a NIC on vmnet2 (custom vnet) counts as a user of vmnet2."""
    from labctl.world import vmx_users

    vmx = tmp_path / "web.vmx"
    vmx.write_text('ethernet0.present = "TRUE"\nethernet0.connectionType = "custom"\n'
                   'ethernet0.vnet = "vmnet2"\nethernet1.present = "TRUE"\n'
                   'ethernet1.connectionType = "nat"\n')

    class Found:
        def vmx_files(self) -> tuple[Path, ...]:
            return (vmx, tmp_path / "gone.vmx")

    assert vmx_users(Found()) == {str(vmx): (2, 8)}
