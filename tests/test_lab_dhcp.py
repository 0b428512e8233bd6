"""Lab in a box, step 1: `labctl dhcp reserve/release` against a real ISC dhcpd and dhclient.

In network namespaces, a real dhcpd serves a vmnet from the dhcpd.conf under LABCTL_ROOT that
labctl edits; the vmnet-cli / vmware-networks stand-in (tests/standins) restarts that dhcpd
the way the real tool restarts vmnet-dhcpd; a real dhclient with the reserved MAC in the
"VM" namespace must get exactly the reserved address, and after `release` must not.

Also here: the harness's own self-test and the stand-ins' conformance with the recorded
outputs of the real tools (../shared/fixtures/tools).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, fixture_files, fixtures_dir

from tests.lab.netns import (
    FUSION_TOOL,
    WORKSTATION_TOOL,
    Lab,
    install_standin,
    register_vmnet,
    require_lab,
    require_tools,
    standin_calls,
)
from tests.lab.world import networking_text

MAC = "00:50:56:2a:bb:cc"
FUSION_PREFS = "Library/Preferences/VMware Fusion"


# ---- helpers ------------------------------------------------------------------------------------
def labctl(root: Path, platform: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI as a subprocess, against LABCTL_ROOT=root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env.update(LABCTL_ROOT=str(root), LABCTL_PLATFORM=platform, NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "labctl", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def dhcpd_syntax_ok(path: Path) -> None:
    """The real ISC server's syntax check (Debian isc-dhcp-server)."""
    r = subprocess.run(["dhcpd", "-4", "-t", "-q", "-cf", str(path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"dhcpd -t rejected {path}:\n{r.stdout}{r.stderr}"


def docker_machine_ip(text: str, mac: str) -> str | None:
    """docker-machine's Fusion driver lookup (DESIGN.md §2 patterns), reimplemented here
    independently of labctl's parser."""
    current_ip = current_mac = None
    for line in text.splitlines():
        if re.match(r"^host (.+?) {", line):
            current_ip = current_mac = None
        m = re.match(r"^\s*hardware ethernet (.+?);$", line)
        if m:
            current_mac = m.group(1)
        m = re.match(r"^\s*fixed-address (.+?);$", line)
        if m:
            current_ip = m.group(1)
        if re.match(r"^}", line) and current_mac and current_mac.lower() == mac.lower():
            return current_ip
    return None


@dataclass
class Vmnet:
    root: Path
    platform: str
    number: int
    net: ipaddress.IPv4Network
    conf: Path
    leases: Path
    dynamic: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]

    @property
    def name(self) -> str:
        return f"vmnet{self.number}"

    @property
    def host_cidr(self) -> str:
        return f"{self.net.network_address + 1}/{self.net.prefixlen}"

    def reserved(self, last: int) -> str:
        return str(self.net.network_address + last)

    def in_dynamic_range(self, ip: str) -> bool:
        return self.dynamic[0] <= ipaddress.IPv4Address(ip) <= self.dynamic[1]


def make_vmnet(root: Path, platform: str, layout: str) -> Vmnet:
    """Write a VMware layout under root.  layout 'template': vmnet2 on 192.168.99.0/24 with
    the dhcpd.conf labctl renders for vmnets it creates; 'fixture': vmnet1 exactly as the
    real Fusion sample (networking + vmnet1 dhcpd.conf from ../shared/fixtures/fusion)."""
    from labctl.hypervisor.vmware.lab import render_dhcpd_conf
    from labctl.paths import Paths

    paths = Paths(platform=platform, root=root)
    if layout == "fixture":
        fx = fixtures_dir("fusion")
        number, net = 1, ipaddress.IPv4Network("172.16.141.0/24")
        networking = (fx / "networking.clean.from-sirn-vagrant-vmware-networking-logs").read_bytes()
        conf = (fx / "vmnet1-dhcpd.conf.from-sirn-vagrant-vmware-networking-logs").read_bytes()
    else:
        number, net = 2, ipaddress.IPv4Network("192.168.99.0/24")
        networking = networking_text({2: (str(net), False), 8: ("192.168.177.0/24", True)}).encode()
        conf = render_dhcpd_conf(number, net)
    paths.hypervisor.networking.parent.mkdir(parents=True, exist_ok=True)
    paths.hypervisor.networking.write_bytes(networking)
    conf_path = paths.hypervisor.dhcpd_conf(number)
    conf_path.parent.mkdir(parents=True, exist_ok=True)
    conf_path.write_bytes(conf)
    m = re.search(rb"range ([\d.]+) ([\d.]+);", conf)
    assert m, "the dhcpd.conf under test has no dynamic range"
    dynamic = (ipaddress.IPv4Address(m.group(1).decode()), ipaddress.IPv4Address(m.group(2).decode()))
    paths.hypervisor.leases(number).parent.mkdir(parents=True, exist_ok=True)
    return Vmnet(root, platform, number, net, conf_path, paths.hypervisor.leases(number), dynamic)


@pytest.fixture
def lab():
    require_lab()
    with Lab() as lab:
        yield lab


def boot(lab: Lab, v: Vmnet):
    """desk <-> vm over a veth named like the vmnet; the real dhcpd on the desk side; the
    stand-in tool installed and told about that dhcpd."""
    desk, vm = lab.netns("desk"), lab.netns("vm")
    lab.veth(desk, v.name, vm, "eth1", mac=MAC)
    lab.addr(desk, v.name, v.host_cidr)
    server = lab.start_dhcpd(desk, v.conf, v.name, leases_path=v.leases)
    install_standin(v.root, v.platform)
    register_vmnet(v.root, v.number, server)
    return desk, vm, server


def restarts(root: Path) -> list[list[str]]:
    return [c for c in standin_calls(root) if c in (["--stop"], ["--start"])]


# ---- the harness itself -------------------------------------------------------------------------
@pytest.mark.lab
def test_harness_self_test(tmp_path):
    require_lab()
    conf = tmp_path / "dhcpd.conf"
    conf.write_text("subnet 192.168.77.0 netmask 255.255.255.0 {\n"
                    "  range 192.168.77.100 192.168.77.110;\n}\n"
                    f"host fixed {{\n  hardware ethernet {MAC};\n  fixed-address 192.168.77.5;\n}}\n")
    with Lab() as lab:
        assert re.fullmatch(r"l[0-9a-f]{4}", lab.prefix)
        desk, vm = lab.netns("desk"), lab.netns("vm")
        assert desk == f"{lab.prefix}-desk"
        lab.veth(desk, "vmnet7", vm, "eth1", mac=MAC)
        lab.addr(desk, "vmnet7", "192.168.77.1/24")
        link = lab.run(vm, ["ip", "-br", "link", "show", "eth1"]).stdout
        assert MAC in link and "UP" in link
        server = lab.start_dhcpd(desk, conf, "vmnet7")
        first_pid = server.pid
        assert first_pid and lab.ns_pids(desk) == [first_pid]
        assert lab.dhclient(vm, "eth1") == "192.168.77.5"
        assert lab.run(desk, ["ping", "-c1", "-W2", "192.168.77.5"], check=False).returncode == 0
        lab.dhclient_release(vm, "eth1")
        assert lab.addresses(vm, "eth1") == []
        server.restart()
        assert server.pid and server.pid != first_pid
        # a MAC with no reservation gets a dynamic address
        lab.run(vm, ["ip", "link", "set", "eth1", "address", "00:50:56:2a:00:01"])
        got = lab.dhclient(vm, "eth1")
        assert got and 100 <= int(got.split(".")[-1]) <= 110
        # nothing answers: None, within the timeout
        server.stop()
        assert server.pid is None
        assert lab.dhclient(vm, "eth1", timeout=3) is None
        sleepers = [lab.spawn(vm, ["sleep", "300"], lab.tmp / "sleep.log"),
                    lab.spawn(vm, ["sleep", "301"], lab.tmp / "sleep.log", nsenter=True)]
        # `ip netns exec` enters the namespace after it starts: give it a moment
        deadline = time.monotonic() + 5
        while not {p.pid for p in sleepers} <= set(lab.ns_pids(vm)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {p.pid for p in sleepers} <= set(lab.ns_pids(vm))
        namespaces, tmp = [desk, vm], lab.tmp
    # teardown: namespaces, processes and the tmp dir are gone
    assert all(p.poll() is not None for p in sleepers)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed.split() for ns in namespaces)
    assert not tmp.exists()
    for ns in namespaces:
        assert not Path(f"/run/netns/{ns}").exists()


@pytest.mark.lab
def test_harness_tears_down_after_a_failure():
    require_lab()
    names: list[str] = []
    with pytest.raises(RuntimeError, match="dhcpd exited"), Lab() as lab:
        names.append(lab.netns("desk"))
        bad = lab.tmp / "bad.conf"
        bad.write_text("subnet 10.0.0.0 netmask 255.255.255.0 { range 10.0.0.5 ; }\n")
        lab.start_dhcpd(names[0], bad, "lo")
    assert not Path(f"/run/netns/{names[0]}").exists()


# ---- lab in a box, step 1 -----------------------------------------------------------------------
LAYOUTS = [
    pytest.param("darwin", "template", id="fusion-vmnet2-labctl-template"),
    pytest.param("darwin", "fixture", id="fusion-vmnet1-real-sample"),
    pytest.param("linux", "template", id="workstation-vmnet2"),
]


@pytest.mark.lab
@pytest.mark.parametrize(("platform", "layout"), LAYOUTS)
def test_reserve_gives_the_vm_its_fixed_ip_and_release_takes_it_back(lab, tmp_path, platform,
                                                                       layout):
    v = make_vmnet(tmp_path / "root", platform, layout)
    desk, vm, server = boot(lab, v)
    original = v.conf.read_bytes()
    fixed = v.reserved(10)

    # before: the VM's MAC gets a dynamic address
    before = lab.dhclient(vm, "eth1")
    assert before and v.in_dynamic_range(before), f"{before}\n{server.log_tail()}"
    lab.dhclient_release(vm, "eth1")

    # reserve: one write, one restart (--stop then --start), the real dhcpd hands out .10
    pid = server.pid
    r = labctl(v.root, platform, "dhcp", "reserve", "lab", "--mac", MAC, "--ip", fixed,
               "--vmnet", v.name)
    assert r.returncode == 0, r.stderr
    assert restarts(v.root) == [["--stop"], ["--start"]]
    assert server.pid and server.pid != pid, "the stand-in did not restart dhcpd"
    written = v.conf.read_bytes()
    assert written != original
    assert written.startswith(original[: original.index(b'End of "DO NOT MODIFY SECTION"')])
    dhcpd_syntax_ok(v.conf)
    assert docker_machine_ip(written.decode(), MAC) == fixed
    from labctl.paths import Paths

    backups = Paths(platform=platform, root=v.root).backup_dir
    assert list(backups.glob(f"*{v.leases.name}.*")), "lease file not backed up before the restart"
    assert lab.dhclient(vm, "eth1") == fixed, server.log_tail()
    assert lab.run(desk, ["ping", "-c1", "-W2", fixed], check=False).returncode == 0
    lab.dhclient_release(vm, "eth1")

    # the same reserve again: nothing written, nothing restarted
    pid = server.pid
    calls = standin_calls(v.root)
    again = labctl(v.root, platform, "dhcp", "reserve", "lab", "--mac", MAC, "--ip", fixed,
                   "--vmnet", v.name)
    assert again.returncode == 0, again.stderr
    assert v.conf.read_bytes() == written
    assert standin_calls(v.root) == calls
    assert server.pid == pid

    # listed as labctl's
    ls = labctl(v.root, platform, "dhcp", "ls", "--vmnet", v.name, "--json")
    assert ls.returncode == 0, ls.stderr
    assert '"name": "lab"' in ls.stdout and fixed in ls.stdout

    # release: the original bytes, one more restart, and the VM no longer gets .10
    r = labctl(v.root, platform, "dhcp", "release", "lab", "--vmnet", v.name)
    assert r.returncode == 0, r.stderr
    assert v.conf.read_bytes() == original
    assert restarts(v.root) == [["--stop"], ["--start"]] * 2
    dhcpd_syntax_ok(v.conf)
    after = lab.dhclient(vm, "eth1")
    assert after and after != fixed and v.in_dynamic_range(after), server.log_tail()


@pytest.mark.lab
@pytest.mark.parametrize("platform", ["darwin", "linux"])
def test_no_restart_leaves_dhcpd_alone_and_says_what_to_run(lab, tmp_path, platform):
    v = make_vmnet(tmp_path / "root", platform, "template")
    desk, vm, server = boot(lab, v)
    fixed = v.reserved(20)
    pid = server.pid
    r = labctl(v.root, platform, "dhcp", "reserve", "lab", "--mac", MAC, "--ip", fixed,
               "--vmnet", v.name, "--no-restart")
    assert r.returncode == 0, r.stderr
    assert standin_calls(v.root) == []
    assert server.pid == pid
    dhcpd_syntax_ok(v.conf)
    assert docker_machine_ip(v.conf.read_text(), MAC) == fixed
    tool_path = str(v.root / (FUSION_TOOL if platform == "darwin" else WORKSTATION_TOOL))
    out = r.stdout + r.stderr
    assert shlex.join([tool_path, "--stop"]) in out and shlex.join([tool_path, "--start"]) in out, out
    # dhcpd has not re-read the file, so the VM still gets a dynamic address ...
    got = lab.dhclient(vm, "eth1")
    assert got and v.in_dynamic_range(got)
    lab.dhclient_release(vm, "eth1")
    # ... until the printed commands are run
    for argv in ([tool_path, "--stop"], [tool_path, "--start"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    assert lab.dhclient(vm, "eth1") == fixed, server.log_tail()


@pytest.mark.lab
def test_auto_ip_is_served_and_valid(lab, tmp_path):
    v = make_vmnet(tmp_path / "root", "darwin", "template")
    desk, vm, server = boot(lab, v)
    r = labctl(v.root, "darwin", "dhcp", "reserve", "lab", "--mac", MAC, "--ip", "auto",
               "--vmnet", v.name)
    assert r.returncode == 0, r.stderr
    chosen = docker_machine_ip(v.conf.read_text(), MAC)
    assert chosen is not None
    ip = ipaddress.IPv4Address(chosen)
    assert ip in v.net and not v.in_dynamic_range(chosen)
    assert ip not in (v.net.network_address, v.net.broadcast_address, v.net.network_address + 1,
                      v.net.network_address + 2)
    dhcpd_syntax_ok(v.conf)
    assert lab.dhclient(vm, "eth1") == chosen, server.log_tail()


@pytest.mark.lab
def test_a_failed_start_is_reported(lab, tmp_path):
    """If dhcpd cannot start on the edited file, the stand-in fails like the real tool and
    labctl reports the failure (exit 1), not success."""
    v = make_vmnet(tmp_path / "root", "darwin", "template")
    desk, vm, server = boot(lab, v)
    # point the stand-in at an interface dhcpd cannot serve
    entry = server.as_standin_entry()
    entry["interface"] = "nosuchif0"
    (v.root / ".standin" / "vmnets.json").write_text(json.dumps({str(v.number): entry}))
    r = labctl(v.root, "darwin", "dhcp", "reserve", "lab", "--mac", MAC, "--ip", v.reserved(10),
               "--vmnet", v.name)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "--start" in r.stderr and len(r.stderr.strip().splitlines()[-1]) < 400


# ---- stand-ins: answers like the real tools ----------------------------------------------------
def run_tool(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LABCTL_ROOT"}
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60, env=env)


def test_fusion_standin_status_matches_the_real_output(tmp_path):
    expected = (fixtures_dir("tools") /
                "fusion10-vmnet-cli-status.vmnet1-2-8-all-running.from-hashicorp-vagrant-issue-9224.txt")
    root = tmp_path / "root"
    (root / FUSION_PREFS).mkdir(parents=True)
    (root / FUSION_PREFS / "networking").write_text(networking_text(
        {1: ("172.16.141.0/24", False), 2: ("192.168.99.0/24", False), 8: ("172.16.99.0/24", True)}))
    tool = install_standin(root, "darwin")
    r = run_tool(tool, "--status")
    assert (r.returncode, r.stdout) == (0, expected.read_text())
    assert standin_calls(root) == [["--status"]]


def workstation_root(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "etc/vmware").mkdir(parents=True)
    (root / "etc/vmware/networking").write_text(
        networking_text({1: ("192.168.5.0/24", False), 8: ("192.168.168.0/24", True)})
        + "add_bridge_mapping eth0 0\n")
    return root, install_standin(root, "linux")


def test_workstation_standin_start_and_status_match_the_real_output(tmp_path):
    fixtures_dir("tools")
    root, tool = workstation_root(tmp_path)
    assert tool == root / "usr/bin/vmware-networks"
    r = run_tool(tool, "--start")
    start = fixture_files("tools", "vmware-networks-start.output")
    assert len(start) == 1
    assert (r.returncode, r.stdout) == (0, start[0].read_text())
    r = run_tool(tool, "--status")
    status = fixture_files("tools", "vmware-networks-status.output")
    assert len(status) == 1
    assert (r.returncode, r.stdout) == (0, status[0].read_text())
    assert standin_calls(root) == [["--start"], ["--status"]]


def test_standin_stop_then_status_says_not_running(tmp_path):
    root, tool = workstation_root(tmp_path)
    r = run_tool(tool, "--stop")
    assert r.returncode == 0
    assert r.stdout.splitlines()[-1] == "Stopped all configured services on all networks"
    r = run_tool(tool, "--status")
    assert r.returncode != 0
    assert "DHCP service on vmnet1 is not running" in r.stdout
    # labctl's own parser reads the stand-in's answer
    from labctl.hypervisor.vmware.tools import parse_status

    status = parse_status(r.stdout)
    assert status.vmnets[1].dhcp is False and not status.all_running
    run_tool(tool, "--start")
    assert parse_status(run_tool(tool, "--status").stdout).all_running


def test_workstation_standin_has_no_configure(tmp_path):
    root, tool = workstation_root(tmp_path)
    r = run_tool(tool, "--configure")
    assert r.returncode != 0 and "Usage" in r.stderr


@pytest.mark.parametrize("mode", ["keep", "regenerate"])
def test_fusion_configure_rewrites_the_protected_section(tmp_path, monkeypatch, mode):
    """--configure regenerates the DO NOT MODIFY section from the networking file; what
    follows its End line (labctl's blocks) survives unless the stand-in is told to behave
    like a Fusion that regenerates the whole file."""
    require_tools("dhcpd")
    v = make_vmnet(tmp_path / "root", "darwin", "template")
    install_standin(v.root, "darwin")
    if mode == "regenerate":
        (v.root / ".standin" / "vmnets.json").write_text(json.dumps({"2": {"configure": "regenerate"}}))
    r = labctl(v.root, "darwin", "dhcp", "reserve", "lab", "--mac", MAC, "--ip", v.reserved(10),
               "--vmnet", v.name, "--no-restart")
    assert r.returncode == 0, r.stderr
    edited = v.conf.read_text()
    tail = edited[edited.index('End of "DO NOT MODIFY SECTION"'):]
    # a networking-file change the section must follow: a new subnet for vmnet2
    nw = v.root / FUSION_PREFS / "networking"
    nw.write_text(nw.read_text().replace("192.168.99.0", "192.168.98.0"))
    r = run_tool(v.root / FUSION_TOOL, "--configure")
    assert r.returncode == 0, r.stderr
    text = v.conf.read_text()
    dhcpd_syntax_ok(v.conf)
    assert "subnet 192.168.98.0 netmask 255.255.255.0" in text
    assert "range 192.168.98.128 192.168.98.254;" in text
    assert re.search(r"^# Written at: \d\d/\d\d/\d{4} \d\d:\d\d:\d\d$", text, re.M)
    if mode == "keep":
        assert text.endswith(tail)
        assert docker_machine_ip(text, MAC) == v.reserved(10)
    else:
        assert docker_machine_ip(text, MAC) is None
        assert (v.conf.parent / "dhcpd.conf.bak").read_text() == edited
    monkeypatch.setenv("LABCTL_ROOT", str(v.root))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    from labctl.hypervisor.vmware.lab import read_dhcpd
    from labctl.paths import Paths

    _, conf = read_dhcpd(Paths.detect(), 2)
    assert conf.has_protected_section
    assert [h.name for h in conf.hosts if h.managed] == (["lab"] if mode == "keep" else [])


def test_require_lab_skips_without_root_and_fails_in_ci(monkeypatch):
    from tests.lab import netns

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="root"):
        netns.require_lab()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        netns.require_lab()
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-xyz"):
        netns.require_tools("no-such-tool-xyz")


@pytest.mark.lab
@pytest.mark.parametrize("mode", ["keep", "regenerate"])
def test_reservation_survives_vmnet_create_configure(lab, tmp_path, mode):
    """`vmnet create` on Fusion runs vmnet-cli --configure; whether Fusion keeps the text after
    the End line (keep) or rewrites the whole file (regenerate), the VM still gets its fixed
    address afterwards."""
    v = make_vmnet(tmp_path / "root", "darwin", "template")
    desk, vm, server = boot(lab, v)
    register_vmnet(v.root, v.number, server, configure=mode)
    fixed = v.reserved(10)
    r = labctl(v.root, "darwin", "dhcp", "reserve", "lab", "--mac", MAC, "--ip", fixed,
               "--vmnet", v.name)
    assert r.returncode == 0, r.stderr
    assert lab.dhclient(vm, "eth1") == fixed
    lab.dhclient_release(vm, "eth1")
    before = len(standin_calls(v.root))
    r = labctl(v.root, "darwin", "vmnet", "create", "--vmnet", "vmnet3", "--subnet", "192.168.97.0/24")
    assert r.returncode == 0, r.stderr
    assert standin_calls(v.root)[before:] == [["--configure"], ["--stop"], ["--start"]]
    assert ("restored" in r.stderr) == (mode == "regenerate"), r.stderr
    dhcpd_syntax_ok(v.conf)
    dhcpd_syntax_ok(v.conf.parent.parent / "vmnet3" / "dhcpd.conf")
    assert docker_machine_ip(v.conf.read_text(), MAC) == fixed
    assert lab.dhclient(vm, "eth1") == fixed, server.log_tail()
