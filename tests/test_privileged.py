"""What a user's (non-root) labctl does when it needs root: its helpers run under sudo
isolated from the caller's working directory and environment, and every privileged change is
checked afterwards (issue 10, item 1).

The suite runs as root, so ``LABCTL_ACT_AS_USER=1`` makes labctl take the user's path, and a
sudo stand-in first on PATH (tests/standins/sudo) runs each command as root in the caller's
working directory with whatever environment it is given.  The reproduction of the issue: a
``labctl/`` package in the directory the user runs labctl from must never be imported as root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, fixtures_dir
from dhcp_helpers import PREFS, STATE, assert_dhcpd_ok, conf_path, docker_machine_ip, make_fusion_root

STANDINS = REPO / "tests" / "standins"
MAC = "00:50:56:2a:bb:cc"
GW = "192.168.51.100"
NETSTAT_BASE = "macos-netstat-rn-with-vmnet1-2-3-4-8"


class UserWorld:
    """A Fusion LABCTL_ROOT, a sudo stand-in first on PATH, and a hostile working directory
    whose ``labctl`` package writes PWNED when imported."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = make_fusion_root(tmp / "root")
        self.bin = tmp / "bin"
        self.bin.mkdir()
        shutil.copy(STANDINS / "sudo", self.bin / "sudo")
        (self.bin / "sudo").chmod(0o755)
        self.pwned = tmp / "PWNED"
        self.evil = tmp / "evil"
        payload = f"open({str(self.pwned)!r}, 'a').write(__name__ + '\\n')\n"
        for rel in ("labctl/__init__.py", "labctl/fileops.py", "labctl/routes/__init__.py",
                    "labctl/routes/batch.py", "labctl/runner.py", "labctl/errors.py"):
            f = self.evil / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(payload + "def main(argv=None):\n    return 0\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LABCTL_", "DOCKER_"))}
        self.env.update(PATH=f"{self.bin}:{os.environ['PATH']}", LABCTL_ROOT=str(self.root),
                        LABCTL_PLATFORM="darwin", LABCTL_ACT_AS_USER="1",
                        # labctl itself comes from the repo; a hostile entry follows it
                        PYTHONPATH=f"{REPO}:{self.evil}", PYTHONSAFEPATH="")

    def labctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        # -P: like the installed `labctl` script, the caller does not import from its cwd
        return subprocess.run([sys.executable, "-P", "-m", "labctl", *args], env=self.env,
                              cwd=self.evil, capture_output=True, text=True, timeout=120)

    def sudo_calls(self) -> list[dict]:
        log = self.bin / "sudo.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def helper_calls(self) -> list[dict]:
        return [c for c in self.sudo_calls() if c["args"][:1] == ["-n"]]


@pytest.fixture
def world(tmp_path):
    return UserWorld(tmp_path)


def assert_isolated(call: dict, world: UserWorld) -> None:
    args = call["args"]
    if args[1] == sys.executable:  # labctl's own helper
        assert args[2] == "-I", args
    assert call["cwd"] == "/", call
    assert set(call["env"]) <= {"PATH", "LANG", "LC_ALL", "LC_CTYPE"}, sorted(call["env"])
    assert str(world.evil) not in json.dumps(call)


def test_reserve_from_a_hostile_directory_runs_labctls_own_helper(world):
    conf = conf_path(world.root, 1)
    before = conf.read_bytes()
    r = world.labctl("dhcp", "reserve", "lab", "--mac", MAC, "--ip", "auto", "--vmnet", "vmnet1",
                     "--no-restart")
    assert r.returncode == 0, r.stderr
    assert not world.pwned.exists(), world.pwned.read_text()
    after = conf.read_bytes()
    assert after != before and after.startswith(before)
    assert docker_machine_ip([conf], MAC) is not None
    assert_dhcpd_ok(conf)
    assert "add host lab" in r.stderr
    calls = world.helper_calls()
    assert calls, world.sudo_calls()
    for call in calls:
        assert_isolated(call, world)
    assert [c["args"][6:8] for c in calls if "labctl.fileops" in c["args"]] == [
        ["labctl.fileops", "lock"], ["labctl.fileops", "write"]]
    # the state the helper wrote for the reservation's vmnet is labctl's, in the state dir
    assert not (world.root / STATE / "PWNED").exists()


def test_release_and_lease_backup_from_a_hostile_directory(world):
    lease = world.root / "var/db/vmware/vmnet-dhcpd-vmnet1.leases"
    lease.parent.mkdir(parents=True)
    lease.write_text("lease 172.16.141.130 {\n}\n")
    tool = world.root / "Applications/VMware Fusion.app/Contents/Library/vmnet-cli"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    conf = conf_path(world.root, 1)
    original = conf.read_bytes()
    r = world.labctl("dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", "vmnet1")
    assert r.returncode == 0, r.stderr
    r = world.labctl("dhcp", "release", "lab", "--vmnet", "vmnet1")
    assert r.returncode == 0, r.stderr
    assert conf.read_bytes() == original
    assert not world.pwned.exists()
    backups = sorted(p.name for p in (world.root / STATE / "backups").iterdir())
    assert any("leases" in name for name in backups), backups
    for call in world.helper_calls():
        assert_isolated(call, world)


def test_a_helper_that_does_nothing_is_caught(world):
    """A privileged write that "succeeds" without changing the file is an error, not a ✓."""
    (world.bin / "sudo.noop").write_text("write\n")
    conf = conf_path(world.root, 1)
    before = conf.read_bytes()
    r = world.labctl("dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", "vmnet1", "--no-restart")
    assert r.returncode == 1, r.stderr
    assert conf.read_bytes() == before
    assert "did not take effect" in r.stderr and "✓ add host" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("labctl: error")]) == 1
    assert "Traceback" not in r.stderr


def _darwin_routes(world: UserWorld) -> Path:
    """route/netstat stand-ins under LABCTL_ROOT; the route one is wrapped so that it finds its
    table without any variable from the caller (the helper's environment is cleaned)."""
    table = world.tmp / "kernel-routes.json"
    table.write_text(json.dumps({"routes": [], "iface": "vmnet1"}))
    route = world.root / "sbin/route"
    route.parent.mkdir(parents=True)
    route.write_text(f"#!/bin/sh\nSTANDIN_ROUTES={table} exec {sys.executable} "
                     f"{STANDINS / 'route'} \"$@\"\n")
    route.chmod(0o755)
    netstat = world.root / "usr/sbin/netstat"
    netstat.parent.mkdir(parents=True)
    shutil.copy(STANDINS / "netstat", netstat)
    netstat.chmod(0o755)
    base = [p for p in fixtures_dir("routes").iterdir() if NETSTAT_BASE in p.name][0]
    world.env.update(STANDIN_ROUTES=str(table), STANDIN_NETSTAT_BASE=str(base),
                     LABCTL_STATE_DIR=str(world.tmp / "state"))
    return table


def test_macos_route_batch_from_a_hostile_directory(world):
    table = _darwin_routes(world)
    r = world.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16",
                     "--subnet", "10.96.0.0/12")
    assert r.returncode == 0, r.stderr
    assert not world.pwned.exists(), world.pwned.read_text()
    assert {x["dest"] for x in json.loads(table.read_text())["routes"]} == {
        "172.17.0.0/16", "10.96.0.0/12"}
    batch = [c for c in world.helper_calls() if "labctl.routes.batch" in c["args"]]
    assert len(batch) == 1
    for call in world.helper_calls():
        assert_isolated(call, world)
    r = world.labctl("route", "rm", "--all")
    assert r.returncode == 0, r.stderr
    assert json.loads(table.read_text())["routes"] == []


def test_macos_route_batch_that_does_nothing_is_caught(world):
    table = _darwin_routes(world)
    (world.bin / "sudo.noop").write_text("labctl.routes.batch\n")
    r = world.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16")
    assert r.returncode == 1, r.stderr
    assert "did not all take effect" in r.stderr
    assert json.loads(table.read_text())["routes"] == []


# ---- the lock: one per state dir, inside it (issue 10, item 7) ---------------------------------
def _as_nobody(fn) -> str:
    """Run ``fn()`` in a forked child with uid/gid 65534 (a real other user); its result or
    the name of the exception it raised."""
    import sh  # noqa: F401 - loaded here: the other user may not read this Python's site-packages

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        out = "?"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.environ["PATH"] = "/usr/bin:/bin"  # no sudo (stand-in) there
            try:
                out = str(fn())
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out = f"{type(exc).__name__}: {exc}"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return out


def _lock_files_in_tmp() -> set[str]:
    return {p.name for p in Path("/tmp").glob("labctl-*.lock")}


@pytest.fixture
def public_dir():
    """A directory other users can enter (pytest's tmp_path is root's alone)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="labctl-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_lock_is_in_the_state_dir_and_no_other_user_can_hold_it(public_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to play another user")
    import fcntl

    from labctl import fileops

    state_dir = public_dir / "state"
    tmp_locks = _lock_files_in_tmp()
    with fileops.locked(state_dir, timeout=1):
        lock = state_dir / "labctl.lock"
        st = lock.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)
        assert (state_dir.stat().st_mode & 0o777) == 0o755

        def read_state_dir() -> str:
            return ",".join(sorted(os.listdir(state_dir)))

        assert _as_nobody(read_state_dir) == "labctl.lock"  # the dir is readable ...

        def try_hold() -> str:
            fd = os.open(lock, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return "held it"

        assert _as_nobody(try_hold).startswith("PermissionError")  # ... the lock is not

        def take_labctls_lock() -> str:  # a user's labctl while root's run holds the lock
            with fileops.locked(state_dir, timeout=0.5):
                return "got the lock"

        got = _as_nobody(take_labctls_lock)
        # without sudo it cannot take the lock at all (with sudo: the same file as root's)
        assert got.startswith("PreconditionMissing"), got
    assert _lock_files_in_tmp() == tmp_locks


def test_a_lock_file_prepared_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to play another user")
    from labctl import fileops
    from labctl.errors import PreconditionMissing

    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o755)
    (state_dir / "labctl.lock").touch()
    os.chown(state_dir / "labctl.lock", 65534, 65534)
    with pytest.raises(PreconditionMissing, match="not a file owned by"), fileops.locked(state_dir):
        pass
    os.unlink(state_dir / "labctl.lock")
    os.symlink("/etc/passwd", state_dir / "labctl.lock")
    with pytest.raises(PreconditionMissing), fileops.locked(state_dir):
        pass
    os.unlink(state_dir / "labctl.lock")
    state_dir.chmod(0o777)
    with pytest.raises(PreconditionMissing, match="written by other users"), fileops.locked(state_dir):
        pass


def test_root_and_user_runs_queue_on_one_lock(world):
    """A user's run (through sudo) waits for root's run on the same lock, says whom it waits
    for, and goes ahead when that run ends: runs queue, they do not fail."""
    state_dir = world.root / STATE
    state_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from labctl import fileops\n"
         "with fileops.locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(2.5)",
         str(state_dir)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        import time

        started = time.monotonic()
        r = world.labctl("dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", "vmnet1", "--no-restart")
        waited = time.monotonic() - started
    finally:
        holder.wait(30)
    assert r.returncode == 0, r.stderr
    assert f"waiting for another labctl run (pid {holder.pid}) to finish" in r.stderr
    assert waited > 1.0
    locks = [c for c in world.helper_calls() if "lock" in c["args"]]
    assert len(locks) == 1 and locks[0]["args"][-2:] == [str(state_dir), locks[0]["args"][-1]]
    assert_isolated(locks[0], world)
    assert not world.pwned.exists()


def test_a_concurrent_up_queues_behind_the_running_one(tmp_path):
    """`up` takes the same lock as every changing command: a second run waits, saying for
    whom, as long as the first one runs (it used to give up after 60 s)."""
    import signal
    import time

    from dhcp_helpers import install_fake_vmnet_cli

    root = make_fusion_root(tmp_path / "root")
    install_fake_vmnet_cli(root)
    state_dir = root / STATE
    state_dir.mkdir(parents=True)
    bindir = root / "usr/local/bin"  # where labctl looks for it under LABCTL_ROOT
    bindir.mkdir(parents=True)
    (bindir / "docker-machine").write_text("#!/bin/sh\necho 'docker-machine version 0.16.2, "
                                           "build bd45ab13'\n")
    (bindir / "docker-machine").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABCTL_", "DOCKER_"))}
    env.update(LABCTL_ROOT=str(root), LABCTL_PLATFORM="darwin", PYTHONPATH=str(REPO),
               MACHINE_STORAGE_PATH=str(tmp_path / "store"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from labctl import fileops\n"
         "with fileops.locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
         str(state_dir)], stdout=subprocess.PIPE, text=True, env=env)
    log = tmp_path / "up.log"
    up = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with open(log, "w") as fh:
            up = subprocess.Popen([sys.executable, "-m", "labctl", "up", "lab", "--yes"], env=env,
                                  stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 30
        while "waiting for" not in log.read_text() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
        assert up.poll() is None, log.read_text()  # still queued, not failed
        assert f"waiting for another labctl run (pid {holder.pid}) to finish" in log.read_text()
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(30)
        holder.kill()
        holder.wait(30)
    assert not (root / PREFS / "vmnet2").exists()  # the queued run changed nothing
