"""Converger behaviour that needs no lab: asking before a networking restart; the vmnet an
existing NIC is really on."""

from __future__ import annotations

import shutil

import pytest

from labctl.converge import Converger
from labctl.errors import Conflict, InvalidInput, LabctlError
from labctl.labspec import from_flags
from labctl.machine import DockerMachine
from labctl.paths import Paths
from labctl.plan import Command, Plan, Run
from labctl.runner import Runner
from tests.conftest import fixtures_dir


def _converger(tmp_path, monkeypatch, answer):
    monkeypatch.setenv("LABCTL_ROOT", str(tmp_path))
    monkeypatch.setenv("LABCTL_PLATFORM", "linux")
    paths = Paths.detect()
    runner = Runner()
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return answer

    conv = Converger(paths, runner, DockerMachine(runner, "docker-machine", tmp_path / "store"),
                     say=lambda s: None, confirm=confirm)
    return conv, asked


def _restart_plan(tmp_path):
    marker = tmp_path / "ran"
    plan = Plan("reserve lab")
    plan.add(Run([Command(["sh", "-c", f"touch {marker}", "--stop"])], description="restart"))
    return plan, marker


def test_declined_restart_changes_nothing(tmp_path, monkeypatch):
    conv, asked = _converger(tmp_path, monkeypatch, answer=False)
    plan, marker = _restart_plan(tmp_path)
    with pytest.raises(LabctlError, match="stopped before restarting"):
        conv.do(plan)
    assert asked and "restarts VMware Workstation networking" in asked[0]
    assert not marker.exists()


def test_accepted_restart_runs(tmp_path, monkeypatch):
    conv, asked = _converger(tmp_path, monkeypatch, answer=True)
    plan, marker = _restart_plan(tmp_path)
    conv.do(plan)
    assert asked and marker.exists()


def test_plans_without_restart_are_not_asked_about(tmp_path, monkeypatch):
    conv, asked = _converger(tmp_path, monkeypatch, answer=False)
    marker = tmp_path / "ran"
    conv.do(Plan("x", [Run([Command(["touch", str(marker)])])]))
    assert marker.exists() and asked == []


# ---- --nic existing: the network the NIC is really on (issue 10, item 4) ----------------------
NETWORKING = ("VERSION=1,0\nanswer VNET_1_DHCP yes\nanswer VNET_1_HOSTONLY_NETMASK 255.255.255.0\n"
              "answer VNET_1_HOSTONLY_SUBNET 172.16.141.0\nanswer VNET_1_VIRTUAL_ADAPTER yes\n"
              "answer VNET_3_DHCP yes\nanswer VNET_3_HOSTONLY_NETMASK 255.255.255.0\n"
              "answer VNET_3_HOSTONLY_SUBNET 192.168.97.0\nanswer VNET_3_VIRTUAL_ADAPTER yes\n"
              "answer VNET_4_DHCP no\nanswer VNET_4_HOSTONLY_NETMASK 255.255.255.0\n"
              "answer VNET_4_HOSTONLY_SUBNET 192.168.96.0\n"
              "answer VNET_8_DHCP yes\nanswer VNET_8_HOSTONLY_NETMASK 255.255.255.0\n"
              "answer VNET_8_HOSTONLY_SUBNET 172.16.99.0\nanswer VNET_8_NAT yes\n"
              "add_bridge_mapping eth1 2\n")


def _machine_with_vmx(tmp_path, monkeypatch, vmx: str | bytes):
    conv, _ = _converger(tmp_path, monkeypatch, answer=True)
    (tmp_path / "etc/vmware").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/vmware/networking").write_text(NETWORKING)
    d = tmp_path / "store/machines/lab"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text("{}")
    (d / "lab.vmx").write_bytes(vmx.encode() if isinstance(vmx, str) else vmx)
    return conv


NIC = 'ethernet0.present = "TRUE"\nethernet0.addressType = "generated"\n' \
      'ethernet0.generatedAddress = "00:0c:29:aa:bb:01"\n'


@pytest.mark.parametrize("lines,vmnet", [
    ('ethernet0.connectionType = "nat"\n', 8),
    ('ethernet0.connectionType = "hostonly"\n', 1),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet3"\n', 3),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "/dev/vmnet3"\n', 3),
])
def test_existing_nic_is_reserved_where_it_is(tmp_path, monkeypatch, lines, vmnet):
    conv = _machine_with_vmx(tmp_path, monkeypatch, NIC + lines)
    spec = from_flags("linux", "lab", nic="existing").machines[0]
    assert conv.existing_nic(spec) == ("00:0c:29:aa:bb:01", vmnet)


@pytest.mark.parametrize("lines,message", [
    ("", "ethernet0 is bridged (vmnet0)"),  # no connectionType: VMware bridges it
    ('ethernet0.connectionType = "bridged"\n', "ethernet0 is bridged (vmnet0)"),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet2"\n', "vmnet2 is bridged to eth1"),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet4"\n', "vmnet4 is without DHCP"),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet9"\n', "not in the networking file"),
    ('ethernet0.connectionType = "pvn"\nethernet0.pvnID = "52 1b"\n', "pvn (no vmnet)"),
])
def test_existing_nic_where_labctl_cannot_reserve_is_refused(tmp_path, monkeypatch, lines, message):
    conv = _machine_with_vmx(tmp_path, monkeypatch, NIC + lines)
    spec = from_flags("linux", "lab", nic="existing").machines[0]
    with pytest.raises(Conflict, match="cannot reserve") as info:
        conv.existing_nic(spec)
    assert message in info.value.message and info.value.remedy and "--nic dedicated" in info.value.remedy


def test_existing_nic_with_another_vmnet_is_refused_not_ignored(tmp_path, monkeypatch):
    conv = _machine_with_vmx(tmp_path, monkeypatch, NIC + 'ethernet0.connectionType = "nat"\n')
    spec = from_flags("linux", "lab", nic="existing", vmnet="vmnet3").machines[0]
    with pytest.raises(InvalidInput, match="--vmnet vmnet3 does not match lab's ethernet0, which is nat"):
        conv.existing_nic(spec)
    with pytest.raises(InvalidInput, match="--vmnet vmnet3"):
        conv._check_existing_vmnet(spec)  # preflight: before anything changes


def test_real_bridged_vmx_sample_is_refused(tmp_path, monkeypatch):
    sample = [p for p in fixtures_dir("vmx").iterdir() if "2nic-bridged" in p.name][0]
    conv = _machine_with_vmx(tmp_path, monkeypatch, sample.read_bytes())
    shutil.copy(sample, tmp_path / "store/machines/lab/lab.vmx")
    spec = from_flags("linux", "lab", nic="existing").machines[0]
    with pytest.raises(Conflict, match="bridged"):
        conv.existing_nic(spec)
