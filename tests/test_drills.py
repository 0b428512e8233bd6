"""Drills: labctl killed with SIGKILL at random moments during reserve/release cycles leaves the
dhcpd.conf either exactly as it was or exactly as planned (and valid for the real `dhcpd -t`);
concurrent reserve runs are serialised by the lock and all land."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from conftest import one_error as error_line
from dhcp_helpers import (
    PREFS,
    STATE,
    assert_dhcpd_ok,
    conf_path,
    docker_machine_ip,
    install_fake_vmnet_cli,
    make_fusion_root,
    need_dhcpd,
)

from labctl.hypervisor.vmware.dhcpd import DhcpdConf

POOL = {"lab": "00:50:56:2a:bb:cc", "web": "00:50:56:2a:bb:cd", "db": "00:0c:29:aa:bb:01"}
SEED = int(os.environ.get("LABCTL_DRILL_SEED", "20261123"))


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "LABCTL_ROOT": str(root), "LABCTL_PLATFORM": "darwin",
           "PYTHONPATH": str(REPO)}
    for var in ("LABCTL_STATE_DIR", "LABCTL_DEBUG"):
        env.pop(var, None)
    return env


def fork_labctl(root: Path, args: list[str]) -> int:
    """Run labctl's real entry point in a forked child (labctl already imported, so a random
    kill lands in labctl's own work rather than in interpreter start-up).  Returns the pid."""
    from labctl import cli  # imported before the fork

    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            os.environ.update(_env(root))
            devnull = open(os.devnull, "w")  # noqa: SIM115 - the child exits with os._exit
            sys.stdout = sys.stderr = devnull
            sys.argv = ["labctl", *args]
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    return pid


def spawn_labctl(root: Path, args: list[str]) -> int:
    """A real `python3 -m labctl` process."""
    proc = subprocess.Popen([sys.executable, "-m", "labctl", *args], env=_env(root), cwd=str(REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.pid


def wait(pid: int) -> tuple[bool, int]:
    """(killed by a signal?, exit code or signal)."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return True, os.WTERMSIG(status)
    return False, os.WEXITSTATUS(status)


def next_step(text: str, rng: random.Random) -> tuple[list[str], str]:
    """Pick a name from the pool: release it if reserved, else reserve it.  Returns the argv
    and the exact text labctl must write (computed by the planner, independently of the run)."""
    conf = DhcpdConf(text)
    name = rng.choice(sorted(POOL))
    restart = [] if rng.random() < 0.5 else ["--no-restart"]
    if conf.host(name) is not None:
        return ["dhcp", "release", name, "--vmnet", "vmnet1", *restart], conf.plan_release(name)
    new_text, _ = conf.plan_reserve(name, POOL[name], None)
    return (["dhcp", "reserve", name, "--mac", POOL[name], "--ip", "auto", "--vmnet", "vmnet1",
             *restart], new_text)


def leftovers(root: Path) -> list[str]:
    d = conf_path(root, 1).parent
    return sorted(p.name for p in d.iterdir() if p.name != "dhcpd.conf")


def backup_leftovers(root: Path) -> list[str]:
    d = root / STATE / "backups"
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".")) if d.exists() else []


def drill(root: Path, cycles: int, launch, rng: random.Random, dhcpd_every: int = 1) -> dict[str, int]:
    conf = conf_path(root, 1)
    original = conf.read_bytes()
    stats: dict[str, int] = {"cycles": 0, "killed": 0, "killed_after_write": 0, "completed": 0, "changed": 0,
             "dhcpd_checks": 0}
    # how long one run takes here, with and without the restart: kills are spread uniformly
    # over that window (+20 %)
    durations: dict[bool, float] = {True: 0.0, False: 0.0}
    for _ in range(4):
        args, expect = next_step(conf.read_text("utf-8", "surrogateescape"), rng)
        t = time.monotonic()
        killed, code = wait(launch(root, args))
        restarting = "--no-restart" not in args
        durations[restarting] = max(durations[restarting], time.monotonic() - t)
        assert not killed and code == 0
        assert conf.read_bytes() == expect.encode("utf-8", "surrogateescape")
    window = {k: (v or max(durations.values())) * 1.2 for k, v in durations.items()}
    stats["window_ms_restart"] = int(window[True] * 1000)
    stats["window_ms_no_restart"] = int(window[False] * 1000)
    for i in range(cycles):
        before = conf.read_bytes()
        args, expect = next_step(before.decode("utf-8", "surrogateescape"), rng)
        new = expect.encode("utf-8", "surrogateescape")
        pid = launch(root, args)
        time.sleep(rng.uniform(0, window["--no-restart" not in args]))
        os.kill(pid, signal.SIGKILL)  # a zombie (already exited) ignores it: that run completed
        killed, code = wait(pid)
        after = conf.read_bytes()
        stats["cycles"] += 1
        if killed:
            stats["killed"] += 1
            stats["killed_after_write"] += after == new
        else:
            stats["completed"] += 1
            assert code == 0, f"cycle {i}: labctl {' '.join(args)} exited {code}"
            assert after == new, f"cycle {i}: run completed but the file is not the planned one"
        assert after in (before, new), f"cycle {i} ({' '.join(args)}): file is neither old nor new"
        stats["changed"] += after != before
        if i % dhcpd_every == 0 or i == cycles - 1:
            assert_dhcpd_ok(conf)
            stats["dhcpd_checks"] += 1
        parsed = DhcpdConf(after.decode("utf-8", "surrogateescape"))
        assert parsed.protected_text.encode() == original
        for h in parsed.hosts:
            if h.managed:
                assert docker_machine_ip([conf], POOL[h.name]) == h.ip
        stray = [n for n in leftovers(root) + backup_leftovers(root)]
        # a kill between the temp file and the rename may leave a temp file; never anything else
        assert all(".labctl-" in n for n in stray), stray
        stats["temp_seen"] = max(stats.get("temp_seen", 0), len(stray))
    # the lock is not left held, and the next write removes the dead runs' temp files
    for args in (["reserve", "lab", "--mac", POOL["lab"]], *(["release", n] for n in POOL)):
        res = subprocess.run([sys.executable, "-m", "labctl", "dhcp", *args, "--vmnet", "vmnet1",
                              "--no-restart"], env=_env(root), cwd=str(REPO),
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
    assert leftovers(root) == [] and backup_leftovers(root) == []
    assert conf.read_bytes() == original
    return stats


@pytest.fixture
def drill_root(tmp_path):
    need_dhcpd()
    root = make_fusion_root(tmp_path / "root")
    install_fake_vmnet_cli(root, sleep=0.005)
    lease = root / "var/db/vmware/vmnet-dhcpd-vmnet1.leases"
    lease.parent.mkdir(parents=True)
    lease.write_bytes(b"lease 172.16.141.130 {\n  hardware ethernet 00:50:56:2a:bb:cc;\n}\n")
    return root


def warm_up(tmp_path: Path, monkeypatch) -> None:
    """Run reserve/release once in-process so every module a run imports lazily is already
    loaded when the drill forks."""
    from typer.testing import CliRunner

    from labctl.cli import app

    scratch = make_fusion_root(tmp_path / "warm")
    install_fake_vmnet_cli(scratch)
    monkeypatch.setenv("LABCTL_ROOT", str(scratch))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    for args in (["reserve", "lab", "--mac", POOL["lab"]], ["release", "lab"]):
        assert CliRunner().invoke(app, ["dhcp", *args]).exit_code == 0


def test_kill9_drill_100_cycles(drill_root, tmp_path, monkeypatch, capsys):
    warm_up(tmp_path, monkeypatch)
    rng = random.Random(SEED)
    t = time.monotonic()
    stats = drill(drill_root, 100, fork_labctl, rng)
    took = time.monotonic() - t
    with capsys.disabled():
        print(f"\nkill -9 drill (forked labctl, seed {SEED}): {stats}, {took:.1f}s")
    assert stats["cycles"] == 100
    # the drill must really interrupt runs, some of them after the write
    assert stats["killed"] >= 30 and stats["changed"] >= 20


def test_kill9_drill_real_processes(drill_root, capsys):
    """The same drill on real `python3 -m labctl` processes (kills land anywhere, start-up
    included)."""
    rng = random.Random(SEED + 1)
    t = time.monotonic()
    stats = drill(drill_root, 20, spawn_labctl, rng, dhcpd_every=1)
    took = time.monotonic() - t
    with capsys.disabled():
        print(f"\nkill -9 drill (python3 -m labctl, seed {SEED + 1}): {stats}, {took:.1f}s")
    assert stats["killed"] >= 5


@pytest.mark.slow
def test_kill9_drill_real_processes_100(drill_root, capsys):
    rng = random.Random(SEED + 2)
    t = time.monotonic()
    stats = drill(drill_root, 100, spawn_labctl, rng, dhcpd_every=10)
    with capsys.disabled():
        print(f"\nkill -9 drill (python3 -m labctl x100): {stats}, {time.monotonic() - t:.1f}s")


def test_eight_concurrent_reserves_all_land(tmp_path, capsys):
    need_dhcpd()
    root = make_fusion_root(tmp_path / "root")
    conf = conf_path(root, 1)
    original = conf.read_bytes()
    names = {f"vm{i}": f"00:50:56:00:10:{i:02x}" for i in range(8)}
    t = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "labctl", "dhcp", "reserve", name, "--mac", mac,
                               "--ip", "auto", "--no-restart"], env=_env(root), cwd=str(REPO),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, mac in names.items()]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    took = time.monotonic() - t
    for (_out, err, rc), name in zip(results, names, strict=True):
        assert rc == 0, f"{name}: {err}"
    parsed = DhcpdConf.parse(conf.read_bytes())
    mine = {h.name: h for h in parsed.hosts if h.managed}
    assert sorted(mine) == sorted(names)
    ips = [h.ip for h in mine.values()]
    assert len(set(ips)) == 8
    assert parsed.protected_text.encode() == original
    for name, mac in names.items():
        assert mine[name].mac == mac
        assert docker_machine_ip(sorted((root / PREFS).glob("vmnet*/dhcpd.conf")), mac) == mine[name].ip
    assert_dhcpd_ok(conf)
    assert leftovers(root) == []
    with capsys.disabled():
        print(f"\n8 concurrent reserves: {sorted(ips)} in {took:.1f}s")


# ---- kill -9 during a route batch (issue 10, item 2) ------------------------------------------
ROUTE_VM = "192.168.99.100"


def _route_table(lab, ns: str) -> dict[str, str | None]:
    import json

    out = lab.run(ns, ["ip", "-4", "-j", "route", "show", "table", "main"]).stdout
    return {r["dst"]: r.get("gateway") for r in json.loads(out or "[]")}


def _route_records(state_dir: Path) -> dict[str, dict]:
    import json

    path = state_dir / "state.json"
    if not path.exists():
        return {}
    return {r["destination"]: r for r in json.loads(path.read_text()).get("routes", [])}


@pytest.mark.lab
def test_kill9_drill_route_batches(tmp_path, capsys):
    """`route add` of 200 subnets (one `ip -batch`) killed with SIGKILL at random moments in
    the lab's desktop namespace: no route may ever be in the kernel without labctl's record
    (written ahead), and the next run settles the records — `route rm --all` gives the table
    back exactly, or a repeated `route add` adopts what is there and adds the rest."""
    from tests.lab.netns import Lab, require_lab

    require_lab()
    rng = random.Random(SEED + 3)
    subnets = [f"10.{100 + i // 256}.{i % 256}.0/24" for i in range(200)]
    add_args = ["route", "add", "--via", ROUTE_VM, *[a for s in subnets for a in ("--subnet", s)]]
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABCTL_", "DOCKER_"))}
    env.update(LABCTL_PLATFORM="linux", LABCTL_STATE_DIR=str(state_dir), PYTHONPATH=str(REPO))
    stats = {"cycles": 0, "killed": 0, "killed_with_routes_in_kernel": 0, "orphans": 0,
             "completed": 0, "settled_by_rm": 0, "settled_by_add": 0}
    with Lab() as lab:
        desk = lab.netns("desk")
        vm = lab.netns("vm")
        lab.veth(desk, "vmnet2", vm, "eth1")
        lab.addr(desk, "vmnet2", "192.168.99.1/24")
        lab.addr(vm, "eth1", f"{ROUTE_VM}/24")
        before = _route_table(lab, desk)

        def labctl(*args: str) -> subprocess.CompletedProcess[str]:
            return lab.run(desk, [sys.executable, "-m", "labctl", *args], check=False, timeout=120,
                           env=env, cwd=REPO)

        def spawn() -> subprocess.Popen[bytes]:
            # `ip netns exec` execs labctl itself: the pid is labctl's
            return subprocess.Popen(["ip", "netns", "exec", desk, sys.executable, "-m", "labctl",
                                     *add_args], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)

        def settle_ns() -> None:  # the killed run's `ip -batch` may still be finishing
            deadline = time.monotonic() + 20
            while lab.ns_pids(desk) and time.monotonic() < deadline:
                time.sleep(0.02)

        t = time.monotonic()
        r = labctl(*add_args)
        window = (time.monotonic() - t) * 1.2
        assert r.returncode == 0, r.stderr
        assert labctl("route", "rm", "--all").returncode == 0
        assert _route_table(lab, desk) == before and _route_records(state_dir) == {}
        # kills spread over the later part of a run (interpreter start-up takes the first):
        # until at least 3 landed with routes already in the kernel, 10 to 24 cycles
        for i in range(24):
            if i >= 10 and stats["killed_with_routes_in_kernel"] >= 3:
                break
            proc = spawn()
            time.sleep(rng.uniform(0.45 * window, 1.05 * window))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            settle_ns()
            stats["cycles"] += 1
            killed = proc.returncode == -signal.SIGKILL
            ours = {d for d, gw in _route_table(lab, desk).items() if d in subnets and gw == ROUTE_VM}
            recorded = set(_route_records(state_dir))
            if killed:
                stats["killed"] += 1
                stats["killed_with_routes_in_kernel"] += bool(ours)
            else:
                stats["completed"] += 1
                assert proc.returncode == 0
            stats["orphans"] += len(ours - recorded)
            assert ours <= recorded, f"cycle {i}: {len(ours - recorded)} routes without a record"
            if i % 2 == 0:  # the next run removes everything labctl made
                r = labctl("route", "rm", "--all")
                assert r.returncode == 0, r.stderr
                stats["settled_by_rm"] += 1
            else:  # the next run adopts what is there, adds the rest, then goes
                r = labctl(*add_args)
                assert r.returncode == 0, r.stderr
                assert "will never remove" not in r.stderr
                records = _route_records(state_dir)
                assert set(records) == set(subnets)
                assert not any(x.get("pending") for x in records.values())
                assert all(_route_table(lab, desk).get(s) == ROUTE_VM for s in subnets)
                r = labctl("route", "rm", "--all")
                assert r.returncode == 0, r.stderr
                stats["settled_by_add"] += 1
            assert _route_table(lab, desk) == before, f"cycle {i}: the table is not as before"
            assert _route_records(state_dir) == {}
    with capsys.disabled():
        print(f"\nkill -9 drill, route batches of 200 (seed {SEED + 3}): {stats}")
    assert stats["killed"] >= 5 and stats["killed_with_routes_in_kernel"] >= 2


# ---- files labctl did not expect (issue 10, items 5 and 7) -------------------------------------
def run_labctl(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", *args], env={**_env(root), **env},
                          cwd=str(REPO), capture_output=True, text=True, timeout=120)


def one_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "internal error" not in r.stderr, r.stderr
    return error_line(r.stderr)  # "labctl: error: … (fix: …)"


@pytest.fixture
def fusion(tmp_path):
    need_dhcpd()
    root = make_fusion_root(tmp_path / "root")
    install_fake_vmnet_cli(root)
    return root


USER_BLOCK = "host web {\n\thardware ethernet 00:0c:29:aa:bb:02;\n\tfixed-address 172.16.141.9;\n}\n"


def test_a_users_block_between_labctls_markers_is_kept(fusion):
    """Item 5: someone put their own host block inside labctl's begin/end markers; release
    and a re-reserve remove only labctl's block, keep theirs, and say so."""
    conf = conf_path(fusion, 1)
    original = conf.read_text()
    end = "# labctl: end reservation lab\n"

    def reserve(ip: str) -> subprocess.CompletedProcess[str]:
        return run_labctl(fusion, "dhcp", "reserve", "lab", "--mac", POOL["lab"], "--ip", ip,
                          "--vmnet", "vmnet1", "--no-restart")

    assert reserve("172.16.141.5").returncode == 0
    conf.write_text(conf.read_text().replace(end, USER_BLOCK + end))
    assert_dhcpd_ok(conf)
    r = run_labctl(fusion, "dhcp", "release", "lab", "--vmnet", "vmnet1", "--no-restart")
    assert r.returncode == 0, r.stderr
    assert "host web (line" in r.stderr and "stays" in r.stderr
    after = conf.read_text()
    assert after.startswith(original) and USER_BLOCK in after
    assert "labctl:" not in after and "host lab" not in after
    assert docker_machine_ip([conf], "00:0c:29:aa:bb:02") == "172.16.141.9"
    assert_dhcpd_ok(conf)
    # the same inside a block that is replaced (another address)
    with_web = conf.read_text()
    assert reserve("172.16.141.5").returncode == 0
    web2 = USER_BLOCK.replace("web", "web2").replace("02;", "03;").replace(".9;", ".8;")
    conf.write_text(conf.read_text().replace(end, web2 + end))
    r = reserve("172.16.141.6")
    assert r.returncode == 0, r.stderr
    assert "host web2 (line" in r.stderr and web2 in conf.read_text()
    assert docker_machine_ip([conf], POOL["lab"]) == "172.16.141.6"
    assert_dhcpd_ok(conf)
    r = run_labctl(fusion, "dhcp", "release", "lab", "--vmnet", "vmnet1", "--no-restart")
    assert r.returncode == 0, r.stderr
    assert conf.read_text().startswith(with_web) and web2 in conf.read_text()
    assert "host lab" not in conf.read_text()


def test_a_symlinked_dhcpd_conf_stays_a_symlink(fusion, tmp_path):
    """Item 7: the file the symlink points to is edited; the symlink stays; a dangling one is
    refused."""
    conf = conf_path(fusion, 1)
    original = conf.read_bytes()
    real = tmp_path / "dotfiles" / "vmnet1-dhcpd.conf"
    real.parent.mkdir()
    conf.rename(real)
    conf.symlink_to(real)
    r = run_labctl(fusion, "dhcp", "reserve", "lab", "--mac", POOL["lab"], "--vmnet", "vmnet1",
                   "--no-restart")
    assert r.returncode == 0, r.stderr
    assert conf.is_symlink() and os.readlink(conf) == str(real)
    assert docker_machine_ip([real], POOL["lab"]) and "is a symlink" in r.stderr
    assert_dhcpd_ok(real)
    assert [p.name for p in real.parent.iterdir()] == [real.name]  # no temp file left beside it
    r = run_labctl(fusion, "dhcp", "release", "lab", "--vmnet", "vmnet1", "--no-restart")
    assert r.returncode == 0, r.stderr
    assert conf.is_symlink() and real.read_bytes() == original
    real.rename(tmp_path / "moved")  # now the symlink dangles
    r = run_labctl(fusion, "dhcp", "reserve", "lab", "--mac", POOL["lab"], "--vmnet", "vmnet1",
                   "--no-restart")
    assert r.returncode in (2, 3) and conf.is_symlink() and not real.exists()
    one_error(r)


BROKEN = {
    "duplicate host": lambda t: t + USER_BLOCK + USER_BLOCK.replace("02;", "03;").replace(".9;", ".8;"),
    "byte-order mark": lambda t: "\ufeff" + t,
    "dash-separated MAC": lambda t: t + USER_BLOCK.replace("00:0c:29:aa:bb:02", "00-0c-29-aa-bb-02"),
}


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_a_dhcpd_conf_dhcpd_rejects_is_not_edited(fusion, fault):
    """Item 7: a file the real `dhcpd -t` already rejects is refused with the reason, not
    edited (the edit would look like labctl's fault)."""
    conf = conf_path(fusion, 1)
    conf.write_text(BROKEN[fault](conf.read_text()))
    broken = conf.read_bytes()
    from dhcp_helpers import dhcpd_check

    assert dhcpd_check(conf).returncode != 0  # the premise: dhcpd rejects it as it is
    r = run_labctl(fusion, "dhcp", "reserve", "lab", "--mac", POOL["lab"], "--vmnet", "vmnet1",
                   "--no-restart")
    assert r.returncode == 2, r.stderr
    line = one_error(r)
    reason = {"duplicate host": "host web is declared twice", "byte-order mark": "byte-order mark",
              "dash-separated MAC": "00-0c-29-aa-bb-02"}[fault]
    assert "dhcpd would reject" in line and reason in line and "fix:" in line
    assert conf.read_bytes() == broken


def test_crlf_files_keep_their_line_endings(fusion):
    """Item 7: a CRLF networking file gets CRLF lines; a CRLF dhcpd.conf is refused (a block
    in it would mix line endings, and docker-machine cannot read CRLF lines), unchanged."""
    networking = fusion / PREFS / "networking"
    networking.write_bytes(networking.read_bytes().replace(b"\n", b"\r\n"))
    r = run_labctl(fusion, "vmnet", "create", "--subnet", "192.168.99.0/24")
    assert r.returncode == 0, r.stderr
    data = networking.read_bytes()
    assert b"VNET_2_HOSTONLY_SUBNET 192.168.99.0\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n")
    conf = conf_path(fusion, 1)
    conf.write_bytes(conf.read_bytes().replace(b"\n", b"\r\n"))
    crlf = conf.read_bytes()
    assert_dhcpd_ok(conf)
    r = run_labctl(fusion, "dhcp", "reserve", "lab", "--mac", POOL["lab"], "--vmnet", "vmnet1",
                   "--no-restart")
    assert r.returncode == 2 and "CRLF" in one_error(r)
    assert conf.read_bytes() == crlf


def test_crlf_vmx_gets_crlf_lines():
    from labctl.hypervisor.vmware.vmx import Vmx

    vmx = Vmx.parse(b'.encoding = "UTF-8"\r\nethernet0.present = "TRUE"\r\n')
    vmx.set("ethernet0.connectionType", "nat")
    assert vmx.dump() == (b'.encoding = "UTF-8"\r\nethernet0.present = "TRUE"\r\n'
                          b'ethernet0.connectionType = "nat"\r\n')


DAMAGED_STATES = ["[]", '"state"', '{"routes": {}}', '{"machines": []}', '{"machines": {"lab": 5}}',
                  '{"machines": {"lab": {"vmnet": "two", "ip": "192.168.99.3"}}}',
                  '{"machines": {"lab": {"vmnet": 2, "ip": 7}}}', '{"routes": [{"destination": "x"}]}',
                  '{"default_vmnet": "vmnet2"}', '{"vmnets": {"two": {}}}', '{"units": {"x": 1}}']


@pytest.mark.parametrize("content", DAMAGED_STATES)
def test_a_damaged_state_file_is_a_clear_error(fusion, content):
    """Item 7: a state.json of the wrong shape is one line with the fix, exit 2, for every
    command that reads it, and nothing changes."""
    state = fusion / STATE / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(content)
    conf = conf_path(fusion, 1)
    before = conf.read_bytes()
    for args in (["status"], ["route", "ls"], ["route", "rm", "--all"], ["down", "lab"],
                 ["dhcp", "reserve", "lab", "--mac", POOL["lab"], "--no-restart"]):
        r = run_labctl(fusion, *args)
        assert r.returncode == 2, (args, r.stderr)
        line = one_error(r)
        assert "state file" in line and "is damaged" in line and "fix: restore" in line, line
    assert conf.read_bytes() == before and state.read_text() == content


def test_an_unreadable_dhcpd_conf_is_a_missing_precondition(tmp_path):
    """Item 7: a dhcpd.conf this user may not read: exit 3 with the fix, not 2."""
    if os.geteuid() != 0:
        pytest.skip("needs root to play another user")
    import shutil
    import tempfile

    from labctl.errors import EXIT_PRECONDITION
    from labctl.hypervisor.vmware import facts
    from labctl.paths import Paths

    public = Path(tempfile.mkdtemp(prefix="labctl-test-"))
    try:
        public.chmod(0o755)
        root = make_fusion_root(public / "root")
        for d in [public / "root", *sorted((public / "root").rglob("*"))]:
            if d.is_dir():
                d.chmod(0o755)
        conf_path(root, 1).chmod(0o600)
        paths = Paths("darwin", root)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            out = "?"
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                try:
                    facts.read_dhcpd(paths, 1)
                    out = "read it"
                except Exception as exc:  # noqa: BLE001 - reported to the parent
                    out = f"{type(exc).__name__} {getattr(exc, 'exit_code', '')} {exc} | {exc.remedy}"
                os.write(w, out.encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as fh:
            got = fh.read()
        os.waitpid(pid, 0)
        assert got.startswith(f"PreconditionMissing {EXIT_PRECONDITION} cannot read"), got
        assert "permission denied" in got and "sudo" in got.split("|")[1]
    finally:
        shutil.rmtree(public, ignore_errors=True)


# ---- hostile names, every command that takes one (issue 10, item 6) ----------------------------
HOSTILE = ["evil;}", "lab;reboot", "lab}", "lab'", 'lab"', "lab\nExecStartPre=/bin/sh -c id",
           "lab x", "$(reboot)", "-rf", "lab%n", "../etc", "x" * 64]
_MAC = POOL["lab"]
_GW = "172.16.141.100"
# (command with NAME where the hostile value goes); vmnet-valued options get vmnet-shaped junk
NAME_COMMANDS = [
    ["up", "NAME", "--dry-run"], ["down", "NAME"], ["down", "NAME", "--dry-run"], ["status", "NAME"],
    ["doctor", "NAME"], ["doctor", "--vmnet", "NAME"],
    ["route", "add", "NAME", "--via", _GW, "--subnet", "172.17.0.0/16"], ["route", "ls", "NAME"],
    ["route", "sync", "NAME", "--offline"], ["route", "rm", "NAME", "--all"], ["route", "watch", "NAME"],
    ["route", "persist", "NAME"], ["route", "persist", "NAME", "--remove"],
    ["dhcp", "reserve", "NAME", "--mac", _MAC], ["dhcp", "release", "NAME"],
    ["dhcp", "ls", "--vmnet", "NAME"], ["dhcp", "reserve", "lab", "--mac", _MAC, "--vmnet", "NAME"],
    ["vmnet", "create", "--subnet", "192.168.99.0/24", "--vmnet", "NAME"], ["up", "--vmnet", "NAME"],
]
# a VM may be a .vmx path or a display name ("Photon 4"): not found is exit 2, or 3 when vmrun
# was needed to look and is not installed; never more than one line, never a change
VM_COMMANDS = [["console-help", "NAME"], ["photon", "reset-password", "NAME"]]


def run_forked(root: Path, args: list[str], extra_env: dict[str, str]) -> tuple[int, str]:
    """labctl's real entry point in a forked child (no interpreter start-up per run): exit
    code and stderr."""
    from labctl import cli

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read_fd)
            os.environ.update({**_env(root), **extra_env})
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child exits with os._exit
            sys.stderr = os.fdopen(write_fd, "w")
            sys.argv = ["labctl", *args]
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        err = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status), err


def _tree(*dirs: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for d in dirs:
        for p in sorted(d.rglob("*")) if d.exists() else []:
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file() and p.name != "labctl.lock":
                out[str(p)] = p.read_bytes()
    return out


def test_hostile_names_in_every_command(fusion, tmp_path, capsys):
    """Every command that takes a name (or a vmnet) refuses each hostile value with one line and
    exit 2 before anything is read or written: no file, unit, route or record changes.  A
    valid name with the same arguments goes through (the drill can tell)."""
    from labctl.errors import InvalidInput
    from labctl.paths import Paths
    from labctl.routes.persist import render_unit

    units = tmp_path / "units"
    extra = {"LABCTL_STATE_DIR": str(tmp_path / "state"), "PATH": f"{tmp_path / 'nobin'}:/usr/bin:/bin"}
    # a labctl record for "lab" so that route/dhcp commands with a valid name have work to do
    r = run_forked(fusion, ["dhcp", "reserve", "lab", "--mac", _MAC, "--no-restart"], extra)
    assert r[0] == 0, r[1]
    before = _tree(fusion, tmp_path / "state", units)
    from typer.testing import CliRunner

    import labctl.commands.common  # noqa: F401 - loaded once, before the forks
    import labctl.guides  # noqa: F401
    import labctl.validate  # noqa: F401
    from labctl.cli import app

    CliRunner().invoke(app, ["route", "ls", "a;b"])  # typer loads its parameter machinery here

    runs = 0
    for template in NAME_COMMANDS + VM_COMMANDS:
        for name in HOSTILE:
            args = [name if a == "NAME" else a for a in template]
            code, err = run_forked(fusion, args, extra)
            runs += 1
            # labctl's one line, or (a value starting with "-") the usage error of the parser
            lines = [ln for ln in err.splitlines() if ln.startswith(("labctl: ", "Error: "))]
            assert code == (2 if template in NAME_COMMANDS else code in (2, 3) and code), (args, code, err)
            assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, (args, err)
            if lines[0].startswith("labctl: ") and template in NAME_COMMANDS:
                assert repr(name)[1:-1] in lines[0] or name in lines[0], (args, lines)
    assert _tree(fusion, tmp_path / "state", units) == before
    # the unit renderer itself refuses what could break out of its line
    for name in ("lab\nExecStartPre=/bin/sh", "lab%n"):
        with pytest.raises(InvalidInput):
            render_unit(Paths("linux", Path("/")), name, "192.168.99.3", "vmnet2")
    # control: the same commands with a valid name get past the name check
    for args in (["route", "ls", "lab"], ["status", "lab"], ["dhcp", "release", "lab", "--no-restart"]):
        code, err = run_forked(fusion, args, extra)
        assert code == 0, (args, err)
    with capsys.disabled():
        print(f"\nhostile names: {len(HOSTILE)} values x {len(NAME_COMMANDS + VM_COMMANDS)} commands = "
              f"{runs} runs, all refused with one line (exit 2; a VM not found: 2 or 3), nothing changed")
