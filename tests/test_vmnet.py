"""labctl vmnet: listing and creating host-only vmnets, with VMware's network tool stand-ins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from labctl.hypervisor.vmware.dhcpd import DhcpdConf
from labctl.hypervisor.vmware.networking import NetworkingFile
from tests.conftest import REPO, document

STANDINS = REPO / "tests" / "standins"


def labctl(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True,
                          env=env, timeout=60, **kw)


def install_tool(root, platform="darwin"):
    if platform == "darwin":
        dest = root / "Applications/VMware Fusion.app/Contents/Library/vmnet-cli"
        src = STANDINS / "vmnet-cli"
    else:
        dest = root / "usr/bin/vmware-networks"
        src = STANDINS / "vmware-networks"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    os.chmod(dest, 0o755)
    (root / ".standin").mkdir(exist_ok=True)
    return dest


def calls(root) -> list[list[str]]:
    log = root / ".standin/calls.log"
    if not log.exists():
        return []
    return [json.loads(line)["args"] for line in log.read_text().splitlines() if line.strip()]


def test_vmnet_ls_reports_the_networking_file(fusion_root):
    r = labctl("vmnet", "ls", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["vmnet"]: row for row in document(r.stdout, "vmnets")["vmnets"]}
    assert rows["vmnet1"]["kind"] == "host-only" and rows["vmnet1"]["subnet"] == "172.16.141.0/24"
    assert rows["vmnet8"]["kind"] == "nat" and rows["vmnet8"]["dhcp"] is True
    assert rows["vmnet1"]["virtual_adapter"] is True


def test_vmnet_create_dry_run_changes_nothing(fusion_root):
    install_tool(fusion_root)
    networking = fusion_root / "Library/Preferences/VMware Fusion/networking"
    before = networking.read_bytes()
    r = labctl("vmnet", "create", "--subnet", "192.168.99.0/24", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "+answer VNET_2_HOSTONLY_SUBNET 192.168.99.0" in r.stdout
    assert "vmnet-cli' --configure" in r.stdout and "--stop" in r.stdout
    assert networking.read_bytes() == before and calls(fusion_root) == []


def test_vmnet_create_writes_networking_and_configures(fusion_root):
    install_tool(fusion_root)
    r = labctl("vmnet", "create", "--subnet", "192.168.99.0/24")
    assert r.returncode == 0, r.stderr
    prefs = fusion_root / "Library/Preferences/VMware Fusion"
    v = NetworkingFile.parse((prefs / "networking").read_bytes()).get(2)
    assert v is not None and v.kind == "host-only" and v.dhcp and v.virtual_adapter
    assert str(v.network) == "192.168.99.0/24"
    assert [c[0] for c in calls(fusion_root)] == ["--configure", "--stop", "--start"]
    conf = DhcpdConf.parse((prefs / "vmnet2/dhcpd.conf").read_bytes())  # made by --configure
    assert str(conf.subnet.network) == "192.168.99.0/24"
    # the same again is a no-op: nothing written, nothing restarted
    n = len(calls(fusion_root))
    r = labctl("vmnet", "create", "--subnet", "192.168.99.0/24", "--vmnet", "vmnet2")
    assert r.returncode == 0 and "nothing to do" in r.stderr
    assert len(calls(fusion_root)) == n


def test_vmnet_create_refuses_overlaps_and_foreign_vmnets(fusion_root):
    install_tool(fusion_root)
    networking = fusion_root / "Library/Preferences/VMware Fusion/networking"
    before = networking.read_bytes()
    r = labctl("vmnet", "create", "--subnet", "172.16.141.0/24")
    assert r.returncode == 2 and "overlaps vmnet1" in r.stderr
    r = labctl("vmnet", "create", "--subnet", "192.168.50.0/24", "--vmnet", "vmnet8")
    assert r.returncode == 2 and "did not create" in r.stderr
    for bad in ("300.1.1.0/24", "8.8.8.0/24", "192.168.1.7/24", "10.0.0.0/8", "x"):
        r = labctl("vmnet", "create", "--subnet", bad)
        assert r.returncode == 2 and r.stderr.startswith("labctl: error:"), (bad, r.stderr)
    assert networking.read_bytes() == before


def test_configure_that_drops_reservations_gets_them_back(fusion_root):
    """Fusion regenerates dhcpd.conf on --configure when it finds its section edited; labctl
    puts its reservations back and says so."""
    install_tool(fusion_root)
    r = labctl("dhcp", "reserve", "lab", "--mac", "00:50:56:2a:bb:cc", "--vmnet", "vmnet1", "--no-restart")
    assert r.returncode == 0, r.stderr
    (fusion_root / ".standin/vmnets.json").write_text(json.dumps({"1": {"configure": "regenerate"}}))
    r = labctl("vmnet", "create", "--subnet", "192.168.99.0/24")
    assert r.returncode == 0, r.stderr
    assert "restored" in r.stderr and "lab" in r.stderr
    conf = DhcpdConf.parse((fusion_root / "Library/Preferences/VMware Fusion/vmnet1/dhcpd.conf").read_bytes())
    lab = conf.host("lab")
    assert lab is not None and lab.managed and conf.docker_machine_lookup("00:50:56:2a:bb:cc") == lab.ip


def test_workstation_vmnet_create_writes_dhcpd_conf(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "etc/vmware").mkdir(parents=True)
    (root / "etc/vmware/networking").write_text(
        "VERSION=1,0\nanswer VNET_1_DHCP yes\nanswer VNET_1_HOSTONLY_NETMASK 255.255.255.0\n"
        "answer VNET_1_HOSTONLY_SUBNET 192.168.5.0\nanswer VNET_1_VIRTUAL_ADAPTER yes\n")
    monkeypatch.setenv("LABCTL_ROOT", str(root))
    monkeypatch.setenv("LABCTL_PLATFORM", "linux")
    install_tool(root, "linux")
    r = labctl("vmnet", "create", "--subnet", "192.168.99.0/24")
    assert r.returncode == 0, r.stderr
    conf = DhcpdConf.parse((root / "etc/vmware/vmnet2/dhcpd/dhcpd.conf").read_bytes())
    assert conf.has_protected_section and str(conf.subnet.network) == "192.168.99.0/24"
    assert [c[0] for c in calls(root)] == ["--stop", "--start"]
    if os.path.exists("/usr/sbin/dhcpd"):
        conf_path = root / "etc/vmware/vmnet2/dhcpd/dhcpd.conf"
        check = subprocess.run(["/usr/sbin/dhcpd", "-t", "-cf", str(conf_path)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


# ---- bridged vmnets are in use (issue 10, item 3) ----------------------------------------------
def _workstation_root(tmp_path, monkeypatch, text: bytes | None = None):
    from tests.conftest import fixtures_dir

    root = tmp_path / "root"
    (root / "etc/vmware").mkdir(parents=True)
    src = [p for p in fixtures_dir("workstation").iterdir() if "bridge-mappings" in p.name][0]
    (root / "etc/vmware/networking").write_bytes(text if text is not None else src.read_bytes())
    monkeypatch.setenv("LABCTL_ROOT", str(root))
    monkeypatch.setenv("LABCTL_PLATFORM", "linux")
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    install_tool(root, "linux")
    return root


def test_vmnet_ls_shows_bridged_vmnets(tmp_path, monkeypatch):
    """The real Workstation file bridges vmnet0 to br0 and vmnet2 to eth1 (add_bridge_mapping)."""
    _workstation_root(tmp_path, monkeypatch)
    r = labctl("vmnet", "ls", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["vmnet"]: (row["kind"], row["bridge"]) for row in document(r.stdout, "vmnets")["vmnets"]}
    assert rows == {"vmnet0": ("bridged", "br0"), "vmnet1": ("host-only", None),
                    "vmnet2": ("bridged", "eth1"), "vmnet8": ("nat", None)}
    table = labctl("vmnet", "ls")
    line = [ln for ln in table.stdout.splitlines() if ln.startswith("vmnet2 ")][0]
    assert "bridged" in line and "eth1" in line


def test_vmnet_create_never_takes_a_bridged_vmnet(tmp_path, monkeypatch):
    root = _workstation_root(tmp_path, monkeypatch)
    networking = root / "etc/vmware/networking"
    before = networking.read_bytes()
    r = labctl("vmnet", "create", "--subnet", "192.168.99.0/24", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "VNET_3_HOSTONLY_SUBNET 192.168.99.0" in r.stdout and "VNET_2_" not in r.stdout
    r = labctl("vmnet", "create", "--subnet", "192.168.99.0/24", "--vmnet", "vmnet2")
    assert r.returncode == 2 and "vmnet2 already exists (bridged to eth1)" in r.stderr
    assert networking.read_bytes() == before


def test_every_vmnet_the_file_names_is_in_use():
    from labctl.hypervisor.vmware.lab import pick_vmnet_number

    nf = NetworkingFile.parse(b"VERSION=1,0\nanswer VNET_1_DHCP yes\nanswer VNL_DEFAULT_BRIDGE_VNET 3\n"
                              b"add_bridge_mapping en0 2\nadd_nat_portfwd 4 tcp 2200 10.0.0.5 22\n"
                              b"add_dhcp_mac_to_ip 5 00:50:56:00:00:01 10.0.5.9\n"
                              b"# vmnet6 is kept for the lab upstairs\n")
    assert nf.in_use == {1, 2, 3, 4, 5, 6}
    assert pick_vmnet_number(nf) == 7


def test_vmnet_subnets_that_are_not_for_vmnets_are_refused(fusion_root):
    """Issue 10, item 7: link-local and benchmark (198.18/15) ranges count as private to
    Python, but are no network for a vmnet."""
    install_tool(fusion_root)
    networking = fusion_root / "Library/Preferences/VMware Fusion/networking"
    before = networking.read_bytes()
    for subnet, why in (("169.254.10.0/24", "link-local"), ("198.18.0.0/24", "benchmark"),
                        ("198.19.200.0/24", "benchmark")):
        r = labctl("vmnet", "create", "--subnet", subnet)
        assert r.returncode == 2 and why in r.stderr, r.stderr
        r = labctl("up", "--subnet", subnet, "--dry-run")
        assert r.returncode == 2 and why in r.stderr, r.stderr
    assert networking.read_bytes() == before
