"""labctl doctor on the lab in a box: a real ISC dhcpd serving the vmnet from the dhcpd.conf
under LABCTL_ROOT (restarted by the vmware-networks stand-in), a real dhclient in the "VM"
namespace holding the reserved address, a real dockerd there with TLS and a busybox httpd
container, and a real route on the "desktop" to the container subnet.  Doctor runs in the
desktop namespace.  Healthy is all ✓; each fault is injected alone, reported by the right
check with the right fix; after the printed fix is run, doctor is green again.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.lab.engine as lab_engine
from labctl import vmpath
from tests.conftest import document
from tests.lab.engine import DockerEngine, require_engine
from tests.lab.netns import Lab, install_standin, register_vmnet, require_lab
from tests.test_doctor import IP, MAC, World, make_certs

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def long_lived_certs(d: Path, server_ip: str, ca: object = None) -> dict[str, Path]:
    """tests.lab.engine's certificate set, valid for 800 days (its own are valid for 2, which
    doctor rightly reports as expiring)."""
    make_certs(d, f"IP:{server_ip},IP:127.0.0.1", 800)
    client = d / "client"
    client.mkdir(exist_ok=True)
    for src, dst in (("ca.pem", "ca.pem"), ("cert.pem", "cert.pem"), ("key.pem", "key.pem")):
        (client / dst).write_bytes((d / src).read_bytes())
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server-key.pem",
            "client_dir": client}


class LabWorld:
    def __init__(self, lab: Lab, base: Path) -> None:
        self.lab = lab
        self.desk = lab.netns("desk")
        self.vm = lab.netns("vm")
        lab.veth(self.desk, "vmnet2", self.vm, "eth1", mac=MAC)
        lab.addr(self.desk, "vmnet2", "192.168.99.1/24")
        self.w = World(base, platform="linux")
        w = self.w
        # the real tools where labctl looks for them under LABCTL_ROOT
        (w.root / "sbin/ip").unlink()
        (w.root / "sbin/ip").symlink_to("/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else "/sbin/ip")
        w.leases.unlink()
        self.server = lab.start_dhcpd(self.desk, w.conf, "vmnet2", leases_path=w.leases)
        w.tool.unlink()
        install_standin(w.root, "linux")
        register_vmnet(w.root, 2, self.server)
        # docker-machine: ssh runs in the VM namespace, whose persistent disk (as on boot2docker,
        # /var/lib/boot2docker) holds the bootsync.sh block labctl up writes
        persist = base / "persist"
        persist.mkdir()
        (persist / "bootsync.sh").write_text(vmpath.with_block(None, "lab", vmpath.Rule(
            "eth1", ipaddress.IPv4Network("192.168.99.0/24"))))
        Path(vmpath.BOOTSYNC).parent.mkdir(parents=True, exist_ok=True)
        w.dm_script(f"""\
if [ "$1" = ssh ] && [ "$2" = lab ]; then
  shift 2
  exec ip netns exec {self.vm} unshare --mount --propagation private sh -c \\
    "mount --bind {persist} /var/lib/boot2docker && sudo() {{ \\"\\$@\\"; }}; $*"
fi
""")
        # the VM: its reserved address by DHCP, dockerd with TLS on it, an httpd container
        assert lab.dhclient(self.vm, "eth1") == IP, lab.dhclient_log(self.vm, "eth1")
        self.engine = DockerEngine(lab, self.vm, IP)
        self.engine.start()
        self.engine.open_path("eth1", "192.168.99.0/24")  # labctl up's VM-side rule
        self.engine.import_busybox()
        _, self.container_ip = self.engine.run_httpd(name="web")
        mdir = w.store / "machines/lab"
        certs = self.engine.certs
        for src, dst in ((certs["ca"], "ca.pem"), (certs["client_dir"] / "cert.pem", "cert.pem"),
                         (certs["client_dir"] / "key.pem", "key.pem"), (certs["cert"], "server.pem"),
                         (certs["key"], "server-key.pem")):
            (mdir / dst).write_bytes(Path(src).read_bytes())
        # the desktop's route to the containers, made and recorded by labctl
        w.state["routes"], w.state["units"] = [], {}
        w.write_state()
        r = self.labctl("route", "add", "lab", "--via", IP, "--subnet", "172.17.0.0/16", "--offline")
        if r.returncode != 0:  # older route CLI: add it by hand and record it
            lab.run(self.desk, ["ip", "route", "replace", "172.17.0.0/16", "via", IP])
            w.state["routes"] = [{"destination": "172.17.0.0/16", "gateway": IP, "machine": "lab",
                                  "network": "bridge", "created": "2026-11-23T10:00:00Z"}]
            w.write_state()

    def labctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.desk, sys.executable, "-m", "labctl", *args],
                              env=self.w.env, capture_output=True, text=True, timeout=60,
                              cwd=self.w.base)

    def doctor(self) -> tuple[int, dict, float]:
        started = time.monotonic()
        r = self.labctl("doctor", "--json")
        wall = time.monotonic() - started
        assert r.stderr == "", r.stderr
        return r.returncode, document(r.stdout, "doctor"), wall

    def apply_fix(self, fix: str) -> None:
        """Run a printed fix as the user would paste it (we are root: no sudo)."""
        cmd = fix.replace("sudo ", "")
        env = {**self.w.env, "PATH": f"{self.w.root / 'usr/local/bin'}:{self.w.env['PATH']}"}
        labctl = f"{shlex.quote(sys.executable)} -m labctl"
        cmd = cmd.replace("labctl ", labctl + " ") if cmd.startswith("labctl") or " labctl " in cmd \
            else cmd
        r = subprocess.run(["ip", "netns", "exec", self.desk, "sh", "-c", cmd], env=env,
                           capture_output=True, text=True, timeout=60, cwd=self.w.base)
        assert r.returncode == 0, (fix, r.stdout, r.stderr)


def red(data: dict) -> dict[str, tuple[str, str, str]]:
    return {c["id"]: (c["status"], c["detail"], c["fix"]) for c in data["checks"]
            if c["status"] in ("warn", "fail")}


@pytest.fixture(scope="module")
def labworld(tmp_path_factory):
    require_lab()
    require_engine()
    mp = pytest.MonkeyPatch()
    mp.setattr(lab_engine, "make_certs", long_lived_certs)
    with Lab() as lab:
        try:
            yield LabWorld(lab, tmp_path_factory.mktemp("doctor-lab"))
        finally:
            mp.undo()


def assert_green(lw: LabWorld) -> dict:
    rc, data, wall = lw.doctor()
    assert red(data) == {}, red(data)
    assert rc == 0
    return data


def test_lab_healthy_is_all_green_and_fast(labworld):
    data = assert_green(labworld)
    statuses = {c["id"]: c["status"] for c in data["checks"]}
    assert statuses["end-to-end.tcp"] == "ok"
    assert statuses["routes.persist"] == "skip"  # not asked for
    walls = [labworld.doctor()[2] for _ in range(3)]
    print(f"lab doctor wall time: best {min(walls):.3f}s")
    assert min(walls) <= 1.5  # `ip netns exec` + interpreter start included


def expect(lw: LabWorld, cid: str, status: str, fix_part: str) -> str:
    rc, data, wall = lw.doctor()
    got = red(data)
    assert set(got) == {cid}, got
    assert got[cid][0] == status, got[cid]
    assert fix_part in got[cid][2], got[cid]
    assert rc == (1 if status == "fail" else 0)
    assert wall <= 3.0
    return got[cid][2]


def test_lab_dhcpd_stopped(labworld):
    labworld.server.stop()
    fix = expect(labworld, "vmnet.services", "fail", "vmware-networks --stop")
    labworld.apply_fix(fix)
    assert_green(labworld)


def test_lab_route_deleted(labworld):
    labworld.lab.run(labworld.desk, ["ip", "route", "del", "172.17.0.0/16"])
    fix = expect(labworld, "routes.labctl", "fail", "labctl route sync lab --offline")
    labworld.apply_fix(fix)
    assert_green(labworld)


def test_lab_conflicting_route(labworld):
    labworld.lab.run(labworld.desk, ["ip", "route", "replace", "172.17.0.0/16", "via", "192.168.99.77"])
    fix = expect(labworld, "routes.labctl", "fail", "ip route del 172.17.0.0/16")
    labworld.apply_fix(fix)
    assert_green(labworld)


def test_lab_vpn_route_on_a_tun_interface(labworld):
    lab, desk = labworld.lab, labworld.desk
    lab.run(desk, ["ip", "tuntap", "add", "dev", "tun7", "mode", "tun"])
    lab.run(desk, ["ip", "link", "set", "tun7", "up"])
    lab.run(desk, ["ip", "route", "add", "172.17.5.0/24", "dev", "tun7"])
    try:
        rc, data, _ = labworld.doctor()
        got = red(data)
        assert set(got) == {"routes.overlap"} and got["routes.overlap"][0] == "warn"
        assert "dev tun7" in got["routes.overlap"][1]
        assert rc == 0
    finally:
        lab.run(desk, ["ip", "link", "del", "tun7"])
    assert_green(labworld)


def test_lab_ip_forwarding_off(labworld):
    labworld.lab.run(labworld.vm, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
    fix = expect(labworld, "forwarding.ip_forward", "fail", "sysctl -w net.ipv4.ip_forward=1")
    labworld.apply_fix(fix)
    assert_green(labworld)


def test_lab_dockerd_hung(labworld):
    pid = int(labworld.engine.pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        expect(labworld, "engine.reachable", "fail", "docker-machine restart lab")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert_green(labworld)


def test_lab_reservation_wrong_mac(labworld):
    w = labworld.w
    original = w.conf.read_text()
    w.conf.write_text(original.replace(f"hardware ethernet {MAC};", "hardware ethernet 00:50:56:2a:bb:dd;"))
    fix = expect(labworld, "reservation.mac", "fail", f"labctl dhcp reserve lab --mac {MAC}")
    labworld.apply_fix(fix)  # rewrites the block and restarts networking (the real dhcpd)
    assert labworld.server.running
    assert_green(labworld)


def test_lab_firewall_rule_deleted(labworld):
    """The VM as strict as boot2docker (FORWARD DROP): without labctl's DOCKER-USER rule the
    container is unreachable, and doctor says so with the fix."""
    labworld.engine.close_path("eth1", "192.168.99.0/24")
    try:
        fix = expect(labworld, "forwarding.firewall", "fail", "labctl up lab")
        assert fix == "labctl up lab"
    finally:
        labworld.engine.open_path("eth1", "192.168.99.0/24")
    assert_green(labworld)
