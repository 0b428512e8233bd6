"""macOS command paths, end to end through labctl as a subprocess, against stand-ins for
/sbin/route and /usr/sbin/netstat (tests/standins/) that answer with the real texts: success,
"File exists", "not in table".  The base table is a real sample from fixtures/routes/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, document, fixtures_dir, one_error

STANDINS = REPO / "tests" / "standins"
BASE = "macos-netstat-rn-with-vmnet1-2-3-4-8"  # vmnet1 192.168.51/24, VPN 0/1 on utun0, en0 10.0.1/24
GW = "192.168.51.100"


class Mac:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        for rel, name in (("sbin/route", "route"), ("usr/sbin/netstat", "netstat")):
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(STANDINS / name, dest)
            dest.chmod(0o755)
        self.table = tmp / "kernel-routes.json"
        self.state_dir = tmp / "state"
        base = [p for p in fixtures_dir("routes").iterdir() if BASE in p.name][0]
        self.env = {**os.environ, "LABCTL_ROOT": str(self.root), "LABCTL_PLATFORM": "darwin",
                    "LABCTL_STATE_DIR": str(self.state_dir), "STANDIN_ROUTES": str(self.table),
                    "STANDIN_NETSTAT_BASE": str(base), "PYTHONPATH": str(REPO)}
        self.env.pop("DOCKER_HOST", None)
        self.write_table([])

    def write_table(self, routes: list[dict]) -> None:
        self.table.write_text(json.dumps({"routes": routes, "iface": "vmnet1"}))

    def kernel(self) -> list[dict]:
        return json.loads(self.table.read_text())["routes"]

    def calls(self, tool: str = "route") -> list[list[str]]:
        log = Path(str(self.table) + ".log")
        if not log.exists():
            return []
        return [e["args"] for e in map(json.loads, log.read_text().splitlines()) if e["tool"] == tool]

    def labctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "labctl", *args], env=self.env, capture_output=True,
                              text=True, timeout=60, cwd=REPO)

    def records(self) -> list[dict]:
        path = self.state_dir / "state.json"
        return json.loads(path.read_text())["routes"] if path.exists() else []


@pytest.fixture
def mac(tmp_path):
    return Mac(tmp_path)


FOREIGN = {"dest": "172.18.0.0/16", "gw": "192.168.51.7", "flags": "UGSc", "iface": "vmnet1"}


def test_add_ls_rm_with_real_texts(mac):
    mac.write_table([FOREIGN])
    r = mac.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16", "--subnet", "10.96.0.0/12")
    assert r.returncode == 0, r.stderr
    assert mac.calls() == [["-n", "add", "-net", "172.17.0.0/16", GW],
                           ["-n", "add", "-net", "10.96.0.0/12", GW]]
    assert all(c == ["-nr", "-f", "inet"] for c in mac.calls("netstat"))
    assert {r["destination"] for r in mac.records()} == {"172.17.0.0/16", "10.96.0.0/12"}
    # netstat shows them as "172.17" and "10.96/12": labctl expands them back
    ls = mac.labctl("route", "ls", "--offline", "--json")
    assert ls.returncode == 0, ls.stderr
    rows = {row["destination"]: row for row in document(ls.stdout, "routes")["routes"]}
    assert {d: row["state"] for d, row in rows.items()} == {"172.17.0.0/16": "present",
                                                            "10.96.0.0/12": "present"}
    # idempotent: nothing to run the second time
    again = mac.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16")
    assert again.returncode == 0 and len(mac.calls()) == 2
    rm = mac.labctl("route", "rm", "--all")
    assert rm.returncode == 0, rm.stderr
    assert sorted(mac.calls()[2:]) == [["-n", "delete", "-net", "10.96.0.0/12", GW],
                                       ["-n", "delete", "-net", "172.17.0.0/16", GW]]
    assert mac.kernel() == [FOREIGN]  # the foreign route survived every command
    assert mac.records() == []


def test_conflicting_foreign_route_is_refused(mac):
    mac.write_table([FOREIGN])
    r = mac.labctl("route", "add", "--via", GW, "--subnet", "172.18.0.0/16")
    assert r.returncode == 2
    lines = [one_error(r.stderr)]
    assert "172.18.0.0/16 via 192.168.51.7 dev vmnet1" in lines[0]
    assert "did not make" in lines[0]
    assert mac.calls() == [] and mac.kernel() == [FOREIGN] and mac.records() == []


def test_same_route_made_by_someone_else_is_left_alone(mac):
    mine = {**FOREIGN, "gw": GW}
    mac.write_table([mine])
    r = mac.labctl("route", "add", "--via", GW, "--subnet", "172.18.0.0/16")
    assert r.returncode == 0, r.stderr
    assert "not made by labctl" in r.stderr
    assert mac.calls() == [] and mac.records() == []
    assert mac.labctl("route", "rm", "--all").returncode == 0
    assert mac.kernel() == [mine]


def test_overlap_with_host_network_is_refused_with_a_fix(mac):
    r = mac.labctl("route", "add", "--via", GW, "--subnet", "10.0.0.0/16")
    assert r.returncode == 2
    assert "overlaps the host network 10.0.1.0/24 on en0" in r.stderr
    assert "bip=" in r.stderr and mac.calls() == []


def test_vpn_overlap_is_a_warning(mac, tmp_path):
    base = tmp_path / "vpn-table.txt"
    base.write_text([p for p in fixtures_dir("routes").iterdir()
                     if "modern-no-refs-use-cols" in p.name][0].read_text()
                    + "192.168.51           link#6             UC              vmnet1\n")
    mac.env["STANDIN_NETSTAT_BASE"] = str(base)
    r = mac.labctl("route", "add", "--via", GW, "--subnet", "172.31.0.0/16")
    assert r.returncode == 0, r.stderr
    assert "overlaps the VPN route 172.31.0.0/20 via 10.10.10.5 dev utun7" in r.stderr
    assert mac.calls() == [["-n", "add", "-net", "172.31.0.0/16", GW]]


def test_file_exists_race_is_reported_and_not_recorded(mac):
    # in the kernel but not (yet) shown by netstat: route says "File exists"
    mac.write_table([{"dest": "172.19.0.0/16", "gw": "192.168.51.9", "hidden": True}])
    r = mac.labctl("route", "add", "--via", GW, "--subnet", "172.19.0.0/16", "--subnet", "172.20.0.0/16")
    assert r.returncode == 1
    assert "172.19.0.0/16" in r.stderr and "File exists" in r.stderr
    # the other route took effect and is recorded; the refused one is not
    assert [x["destination"] for x in mac.records()] == ["172.20.0.0/16"]


def test_not_in_table_text(mac):
    from labctl.paths import Paths
    from labctl.routes.tables import DarwinTable, RouteOp, outcome
    from labctl.runner import Runner

    old = os.environ.copy()
    os.environ.update({k: v for k, v in mac.env.items() if k.startswith("STANDIN")})
    try:
        table = DarwinTable(Paths("darwin", mac.root))
        op = RouteOp("delete", __import__("ipaddress").IPv4Network("172.21.0.0/16"),
                     __import__("ipaddress").IPv4Address(GW))
        res = Runner().run(table.op_argvs(op)[0], check=False)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert res.returncode == 1
    assert res.stdout.strip() == f"delete net 172.21.0.0: gateway {GW}: not in table"
    assert res.stderr.strip() == "route: writing to routing socket: not in table"
    assert outcome(op, res.returncode, res.stdout, res.stderr) == "absent"


def test_rm_only_own_and_forgets_vanished(mac):
    assert mac.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16").returncode == 0
    mac.write_table([FOREIGN])  # someone removed ours meanwhile
    ls = document(mac.labctl("route", "ls", "--offline", "--json").stdout, "routes")["routes"]
    assert [row["state"] for row in ls] == ["missing"]
    r = mac.labctl("route", "rm", "--subnet", "172.17.0.0/16")
    assert r.returncode == 0, r.stderr
    assert "already gone" in r.stderr
    assert mac.records() == [] and mac.kernel() == [FOREIGN]
    bad = mac.labctl("route", "rm", "--subnet", "172.18.0.0/16")
    assert bad.returncode == 2 and "labctl made no route to 172.18.0.0/16" in bad.stderr
    assert mac.kernel() == [FOREIGN]


def test_sync_offline_reapplies_recorded_routes(mac):
    assert mac.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16").returncode == 0
    mac.write_table([FOREIGN])  # a reboot: the kernel forgot
    r = mac.labctl("route", "sync", "--offline")
    assert r.returncode == 0, r.stderr
    assert mac.calls()[-1] == ["-n", "add", "-net", "172.17.0.0/16", GW]
    assert {k["dest"] for k in mac.kernel()} == {"172.17.0.0/16", "172.18.0.0/16"}


def test_conflicting_state_in_ls(mac):
    assert mac.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16").returncode == 0
    mac.write_table([{"dest": "172.17.0.0/16", "gw": "192.168.51.8"}])
    rows = document(mac.labctl("route", "ls", "--offline", "--json").stdout, "routes")["routes"]
    assert [row["state"] for row in rows] == ["conflicting"]
    # sync --offline refuses to take it back
    r = mac.labctl("route", "sync", "--offline")
    assert r.returncode == 2 and "192.168.51.8" in r.stderr


def test_dry_run_prints_exact_commands_and_changes_nothing(mac):
    r = mac.labctl("route", "add", "--via", GW, "--subnet", "172.17.0.0/16", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"$ {mac.root}/sbin/route -n add -net 172.17.0.0/16 {GW}" in r.stdout.replace("'", "")
    assert mac.calls() == [] and mac.records() == []


def test_privileged_batch_helper_runs_only_route(mac):
    """What `sudo -n python -m labctl.routes.batch` does for a non-root user: each route argv
    run once, results as JSON; anything but route is refused."""
    route = str(mac.root / "sbin/route")
    argvs = [[route, "-n", "add", "-net", "172.17.0.0/16", GW],
             [route, "-n", "add", "-net", "172.17.0.0/16", GW]]
    r = subprocess.run([sys.executable, "-m", "labctl.routes.batch"], input=json.dumps(argvs),
                       capture_output=True, text=True, env=mac.env, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    first, second = json.loads(r.stdout)
    assert (first["rc"], first["stdout"].strip()) == (0, f"add net 172.17.0.0: gateway {GW}")
    assert second["rc"] == 1
    assert second["stdout"].strip() == f"add net 172.17.0.0: gateway {GW}: File exists"
    assert second["stderr"].strip() == "route: writing to routing socket: File exists"
    bad = subprocess.run([sys.executable, "-m", "labctl.routes.batch"],
                         input=json.dumps([["/bin/echo", "not a route command"]]),
                         capture_output=True, text=True, env=mac.env, timeout=60, cwd=REPO)
    assert bad.returncode == 2 and "only route commands" in bad.stderr


def test_via_defaults_to_the_machines_fixed_ip(mac):
    """`route add lab --subnet …` with no --via: the fixed IP labctl recorded for the machine
    (its DHCP reservation), no docker-machine needed."""
    mac.state_dir.mkdir(parents=True, exist_ok=True)
    (mac.state_dir / "state.json").write_text(json.dumps(
        {"version": 1, "routes": [], "machines": {"lab": {"ip": GW, "vmnet": 1}}}))
    r = mac.labctl("route", "add", "lab", "--subnet", "172.17.0.0/16")
    assert r.returncode == 0, r.stderr
    assert mac.calls() == [["-n", "add", "-net", "172.17.0.0/16", GW]]
    assert [(x["destination"], x["machine"]) for x in mac.records()] == [("172.17.0.0/16", "lab")]
    machine_only = document(mac.labctl("route", "ls", "other", "--offline", "--json").stdout,
                            "routes")["routes"]
    assert machine_only == []
