"""What `route add` accepts as a gateway and how it tells a VPN from a LAN (issue 10, item 7):
--via must be another host on a directly connected network (not its network or broadcast
address, not this host's own address); a route through a point-to-point interface is a VPN
whatever the interface is called.  Real tables: a macOS netstat sample through the stand-ins,
and the kernel's own in a lab namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from labctl.routes.analysis import Wanted, analyze_add, own_addresses
from labctl.routes.model import IPv4Address, IPv4Network
from labctl.routes.parse import parse_ip_json
from tests.conftest import REPO, fixtures_dir

STANDINS = REPO / "tests" / "standins"
BASE = "macos-netstat-rn-with-vmnet1-2-3-4-8"  # vmnet1 192.168.51/24, the host is .1 (lo0 entry)


@pytest.fixture
def mac(tmp_path):
    root = tmp_path / "root"
    for rel, name in (("sbin/route", "route"), ("usr/sbin/netstat", "netstat")):
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(STANDINS / name, dest)
        dest.chmod(0o755)
    table = tmp_path / "kernel-routes.json"
    table.write_text(json.dumps({"routes": [], "iface": "vmnet1"}))
    base = [p for p in fixtures_dir("routes").iterdir() if BASE in p.name][0]
    env = {**os.environ, "LABCTL_ROOT": str(root), "LABCTL_PLATFORM": "darwin",
           "LABCTL_STATE_DIR": str(tmp_path / "state"), "STANDIN_ROUTES": str(table),
           "STANDIN_NETSTAT_BASE": str(base), "PYTHONPATH": str(REPO)}
    env.pop("DOCKER_HOST", None)

    def labctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "labctl", *args], env=env, capture_output=True,
                              text=True, timeout=60, cwd=REPO)

    labctl.table = table  # type: ignore[attr-defined]
    return labctl


@pytest.mark.parametrize("via,why", [("192.168.51.0", "network address of 192.168.51.0/24"),
                                     ("192.168.51.255", "broadcast address of 192.168.51.0/24"),
                                     ("192.168.51.1", "this host's own address")])
def test_via_must_be_another_host_on_the_link_macos(mac, via, why):
    r = mac("route", "add", "--via", via, "--subnet", "172.17.0.0/16")
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("labctl: ")]
    assert len(errors) == 1 and why in errors[0], r.stderr
    assert json.loads(mac.table.read_text())["routes"] == []
    ok = mac("route", "add", "--via", "192.168.51.100", "--subnet", "172.17.0.0/16")
    assert ok.returncode == 0, ok.stderr


def test_own_addresses_from_a_linux_table():
    table = parse_ip_json(json.dumps([
        {"dst": "192.168.99.0/24", "dev": "vmnet2", "protocol": "kernel", "scope": "link",
         "prefsrc": "192.168.99.1", "flags": []},
        {"dst": "default", "gateway": "10.0.2.2", "dev": "eth0", "flags": []}]))
    assert own_addresses(table) == {IPv4Address("192.168.99.1")}
    an = analyze_add([Wanted(IPv4Network("172.17.0.0/16"), IPv4Address("192.168.99.1"))], table, [])
    assert an.conflicts and "own address" in an.conflicts[0][0]


@pytest.mark.lab
def test_vpn_by_interface_flags_and_via_in_a_real_table(tmp_path):
    """In a lab namespace: a tun interface named "corpvpn" is a VPN (overlap: a warning), a veth
    "office0" is a LAN (overlap: refused); --via the host's own, network or broadcast address
    is refused against the kernel's real table."""
    from tests.lab.netns import Lab, require_lab

    require_lab()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABCTL_", "DOCKER_"))}
    env.update(LABCTL_PLATFORM="linux", LABCTL_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    with Lab() as lab:
        desk = lab.netns("desk")
        vm = lab.netns("vm")
        lab.veth(desk, "vmnet2", vm, "eth1")
        lab.addr(desk, "vmnet2", "192.168.99.1/24")
        lab.addr(vm, "eth1", "192.168.99.100/24")
        other = lab.netns("office")
        lab.veth(desk, "office0", other, "eth0")
        lab.addr(desk, "office0", "10.50.0.1/24")
        lab.run(desk, ["ip", "tuntap", "add", "dev", "corpvpn", "mode", "tun"])
        lab.run(desk, ["ip", "link", "set", "corpvpn", "up"])
        lab.run(desk, ["ip", "route", "add", "10.40.0.0/16", "dev", "corpvpn"])

        def labctl(*args: str) -> subprocess.CompletedProcess[str]:
            return lab.run(desk, [sys.executable, "-m", "labctl", *args], check=False, env=env, cwd=REPO)

        r = labctl("route", "add", "--via", "192.168.99.100", "--subnet", "10.40.1.0/24")
        assert r.returncode == 0, r.stderr
        assert "overlaps the VPN route 10.40.0.0/16 dev corpvpn" in r.stderr
        r = labctl("route", "add", "--via", "192.168.99.100", "--subnet", "10.50.0.0/25")
        assert r.returncode == 2 and "overlaps the host network 10.50.0.0/24 on office0" in r.stderr
        for via, why in (("192.168.99.1", "own address"), ("192.168.99.0", "network address"),
                         ("192.168.99.255", "broadcast address")):
            r = labctl("route", "add", "--via", via, "--subnet", "10.60.0.0/24")
            assert r.returncode == 2 and why in r.stderr, (via, r.stderr)
        assert labctl("route", "rm", "--all").returncode == 0
        routes = lab.run(desk, ["ip", "-4", "route"]).stdout
        assert "10.40.1.0/24" not in routes and "10.60.0.0" not in routes
