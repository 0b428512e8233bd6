"""The core every command uses: plans, safe file writes, the lock, the runner, the state."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from labctl import fileops, state
from labctl.errors import CommandFailed, CommandTimeout, LabctlError, LockBusy, PreconditionMissing
from labctl.paths import Paths, parse_vmnet
from labctl.plan import Command, DeleteFile, Plan, Run, Step, WriteFile, execute
from labctl.runner import Runner


def test_atomic_write_keeps_mode_and_replaces(tmp_path):
    f = tmp_path / "conf"
    f.write_text("old\n")
    os.chmod(f, 0o640)
    fileops.atomic_write(f, b"new\n")
    assert f.read_bytes() == b"new\n"
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["conf"]  # no temp file left behind


def test_atomic_write_keeps_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file another owner")
    f = tmp_path / "conf"
    f.write_text("old\n")
    os.chown(f, 1234, 4321)
    fileops.atomic_write(f, b"new\n")
    st = f.stat()
    assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_backup_is_timestamped_and_bounded(tmp_path):
    f = tmp_path / "etc" / "file"
    f.parent.mkdir()
    backups = tmp_path / "backups"
    for i in range(fileops.KEEP_BACKUPS + 5):
        f.write_text(f"v{i}\n")
        fileops.backup(f, backups)
    kept = sorted(backups.iterdir())
    assert len(kept) == fileops.KEEP_BACKUPS
    assert kept[-1].read_text() == f"v{fileops.KEEP_BACKUPS + 4}\n"
    assert stat.S_IMODE(kept[-1].stat().st_mode) == 0o600


def _hold_lock(state_dir: str, seconds: float, ready) -> None:
    with fileops.locked(Path(state_dir)):
        ready.set()
        time.sleep(seconds)


def test_lock_serialises_and_times_out(tmp_path):
    ready = multiprocessing.Event()
    p = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), 1.0, ready))
    p.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockBusy), fileops.locked(tmp_path, timeout=0.2):
            pass
        started = time.monotonic()
        with fileops.locked(tmp_path, timeout=10):
            waited = time.monotonic() - started
        assert 0.3 < waited < 5
    finally:
        p.join(10)


def test_runner_captures_and_fails_cleanly():
    r = Runner()
    res = r.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    with pytest.raises(CommandFailed) as info:
        r.run(["sh", "-c", "echo boom >&2; exit 4"])
    assert "boom" in info.value.message and info.value.returncode == 4
    with pytest.raises(CommandTimeout):
        r.run(["sleep", "5"], timeout=0.3)
    with pytest.raises(PreconditionMissing):
        r.run(["/nonexistent/tool", "--x"])
    assert [h.argv[0] for h in r.history] == ["sh", "sh"]


def test_runner_never_uses_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    res = Runner().run(["echo", f"x; touch {marker}"])
    assert res.stdout == f"x; touch {marker}\n"
    assert not marker.exists()


def test_plan_render_shows_commands_and_diffs(tmp_path):
    f = tmp_path / "a.conf"
    f.write_text("one\n")
    plan = Plan("demo")
    plan.add(WriteFile(f, b"one\n", b"one\ntwo\n", description="add two", privileged=False))
    plan.add(Run([Command(["echo", "it's"], sudo=False)], description="say it"))
    text = plan.render()
    assert "1. add two" in text and "+two" in text
    assert "$ echo 'it'\"'\"'s'" in text
    assert plan.as_dict()["changes"][1]["commands"] == [{"argv": ["echo", "it's"], "sudo": False}]
    assert f.read_text() == "one\n"  # rendering changes nothing


def test_execute_writes_validates_and_refuses_stale_plans(tmp_path):
    f = tmp_path / "a.conf"
    f.write_text("one\n")
    backups = tmp_path / "b"

    def refuse(data: bytes) -> None:
        if b"bad" in data:
            raise LabctlError("invalid")

    ok = Plan("ok", [WriteFile(f, b"one\n", b"two\n", privileged=False, validate=refuse)])
    execute(ok, Runner(), backups)
    assert f.read_text() == "two\n"
    assert len(list(backups.iterdir())) == 1
    bad = Plan("bad", [WriteFile(f, b"two\n", b"bad\n", privileged=False, validate=refuse)])
    with pytest.raises(LabctlError):
        execute(bad, Runner(), backups)
    assert f.read_text() == "two\n"
    stale = Plan("stale", [WriteFile(f, b"one\n", b"three\n", privileged=False)])
    with pytest.raises(LabctlError, match="changed while labctl was planning"):
        execute(stale, Runner(), backups)
    assert f.read_text() == "two\n"
    execute(Plan("rm", [DeleteFile(f, b"two\n", privileged=False)]), Runner(), backups)
    assert not f.exists()


def test_steps_run_in_order(tmp_path):
    seen: list[str] = []
    plan = Plan("steps", [Step("a", lambda ctx: seen.append("a")), Step("b", lambda ctx: seen.append("b"))])
    execute(plan, Runner(), tmp_path)
    assert seen == ["a", "b"]


def test_paths_follow_labctl_root_and_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("LABCTL_ROOT", str(tmp_path))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    p = Paths.detect()
    assert p.hypervisor.networking == tmp_path / "Library/Preferences/VMware Fusion/networking"
    assert p.hypervisor.dhcpd_conf(2) == tmp_path / "Library/Preferences/VMware Fusion/vmnet2/dhcpd.conf"
    assert p.hypervisor.leases(2) == tmp_path / "var/db/vmware/vmnet-dhcpd-vmnet2.leases"
    assert p.hypervisor.network_tool == tmp_path / "Applications/VMware Fusion.app/Contents/Library/vmnet-cli"
    assert p.unit_dir == tmp_path / "Library/LaunchDaemons"
    monkeypatch.setenv("LABCTL_PLATFORM", "linux")
    p = Paths.detect()
    assert p.hypervisor.networking == tmp_path / "etc/vmware/networking"
    assert p.hypervisor.dhcpd_conf(2) == tmp_path / "etc/vmware/vmnet2/dhcpd/dhcpd.conf"
    assert p.hypervisor.leases(2) == tmp_path / "etc/vmware/vmnet2/dhcpd/dhcpd.leases"
    assert p.hypervisor.network_tool == tmp_path / "usr/bin/vmware-networks"
    assert p.unit_dir == tmp_path / "etc/systemd/system"
    assert str(p.state_dir).startswith(str(tmp_path))
    monkeypatch.setenv("LABCTL_PLATFORM", "windows")
    with pytest.raises(LabctlError):
        Paths.detect()


@pytest.mark.parametrize("bad", ["vmnet", "vmnet-1", "vmnet256", "eth0", "", "vmnet2;rm"])
def test_parse_vmnet_rejects(bad):
    with pytest.raises(LabctlError):
        parse_vmnet(bad)


def test_state_round_trip_and_damage(monkeypatch, tmp_path):
    monkeypatch.setenv("LABCTL_ROOT", str(tmp_path))
    paths = Paths.detect()
    assert state.load(paths)["routes"] == []
    step = state.update_step(paths, "record", lambda s: s["vmnets"].update({"2": {"created": True}}))
    execute(Plan("s", [step]), Runner(), paths.backup_dir)
    assert state.load(paths)["vmnets"] == {"2": {"created": True}}
    state.state_path(paths).write_text("{not json")
    with pytest.raises(LabctlError, match="damaged"):
        state.load(paths)
