"""The convergence loop's behaviour that needs no lab: asking before a networking restart,
and refusing a phase that does not take effect (instead of looping)."""

from __future__ import annotations

import pytest

from labctl.changes import RestartNetworking
from labctl.converge import Lab
from labctl.errors import CommandFailed, LabctlError
from labctl.machine import DockerMachine
from labctl.paths import Paths
from labctl.plan import Command, Run
from labctl.planner import LabPlan, Phase
from labctl.runner import Runner
from labctl.world import World


def _lab(tmp_path, monkeypatch, answer):
    monkeypatch.setenv("LABCTL_ROOT", str(tmp_path))
    monkeypatch.setenv("LABCTL_PLATFORM", "linux")
    paths = Paths.detect()
    runner = Runner()
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return answer

    lab = Lab(paths, runner, DockerMachine(runner, "docker-machine", tmp_path / "store"),
              say=lambda s: None, confirm=confirm)
    return lab, asked


def _restart_phase(tmp_path, paths):
    marker = tmp_path / "ran"
    phase = Phase("reserve lab", key="reserve:lab")
    phase.add(RestartNetworking(paths, (), [Command(["touch", str(marker)])]))
    return phase, marker


def test_declined_restart_changes_nothing(tmp_path, monkeypatch):
    lab, asked = _lab(tmp_path, monkeypatch, answer=False)
    phase, marker = _restart_phase(tmp_path, lab.paths)
    with pytest.raises(LabctlError, match="stopped before restarting"):
        lab.apply(phase)
    assert asked and "restarts VMware Workstation networking" in asked[0]
    assert not marker.exists()


def test_accepted_restart_runs(tmp_path, monkeypatch):
    lab, asked = _lab(tmp_path, monkeypatch, answer=True)
    phase, marker = _restart_phase(tmp_path, lab.paths)
    lab.apply(phase)
    assert asked and marker.exists()
    assert [s["kind"] for s in lab.applied] == ["RestartNetworking"]


def test_phases_without_restart_are_not_asked_about(tmp_path, monkeypatch):
    lab, asked = _lab(tmp_path, monkeypatch, answer=False)
    marker = tmp_path / "ran"
    lab.apply(Phase("x", [Run([Command(["touch", str(marker)])])], key="x"))
    assert marker.exists() and asked == []


def test_a_phase_that_does_not_take_effect_is_an_error_not_a_loop(tmp_path, monkeypatch):
    """The loop applies a phase, observes again and plans anew; a phase still planned right
    after it ran is reported (with what it tried), never run a second time."""
    lab, _ = _lab(tmp_path, monkeypatch, answer=True)
    marker = tmp_path / "count"

    def plan() -> LabPlan:
        phase = Phase("stubborn", [Run([Command(["sh", "-c", f"echo x >> {marker}"])],
                                       description="append to the counter")], key="stubborn:lab")
        return LabPlan([phase], {}, World(lab.paths, "docker-machine", "/store", {}, None, {}))

    with pytest.raises(CommandFailed, match="stubborn: still not done right after it ran"):
        lab.converge(plan(), lambda facts: plan())
    assert marker.read_text() == "x\n"


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
NIC = 'ethernet0.present = "TRUE"\nethernet0.addressType = "generated"\n' \
      'ethernet0.generatedAddress = "00:0c:29:aa:bb:01"\n'


def _existing_nic(vmx: str | bytes, **flags: str) -> tuple[str, int]:
    """The planner's NIC phase for --nic existing on a running machine with this .vmx: the MAC
    and the vmnet it reserves on."""
    from labctl import planner
    from labctl.labspec import from_flags
    from labctl.world import World

    data = vmx.decode("utf-8", "surrogateescape") if isinstance(vmx, bytes) else vmx
    world = World.from_data({"networking": NETWORKING, "machines": {"lab": {
        "exists": True, "state": "Running", "vmx": data}}}, Paths("linux", tmp_root()))
    spec = from_flags("linux", "lab", nic="existing", **flags)
    it = planner.Intent("lab", "existing")
    planner.phase_nic(world, spec.machines[0], it, planner.UpOptions())
    return it.mac, it.vmnet


def tmp_root():
    from pathlib import Path

    return Path("/r")


@pytest.mark.parametrize("lines,vmnet", [
    ('ethernet0.connectionType = "nat"\n', 8),
    ('ethernet0.connectionType = "hostonly"\n', 1),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet3"\n', 3),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "/dev/vmnet3"\n', 3),
])
def test_existing_nic_is_reserved_where_it_is(lines, vmnet):
    assert _existing_nic(NIC + lines) == ("00:0c:29:aa:bb:01", vmnet)


@pytest.mark.parametrize("lines,message", [
    ("", "ethernet0 is bridged (vmnet0)"),  # no connectionType: VMware bridges it
    ('ethernet0.connectionType = "bridged"\n', "ethernet0 is bridged (vmnet0)"),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet2"\n', "vmnet2 is bridged to eth1"),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet4"\n', "vmnet4 is without DHCP"),
    ('ethernet0.connectionType = "custom"\nethernet0.vnet = "vmnet9"\n', "not in the networking file"),
    ('ethernet0.connectionType = "pvn"\nethernet0.pvnID = "52 1b"\n', "pvn (no vmnet)"),
])
def test_existing_nic_where_labctl_cannot_reserve_is_refused(lines, message):
    from labctl.errors import Conflict

    with pytest.raises(Conflict, match="cannot reserve") as info:
        _existing_nic(NIC + lines)
    assert message in info.value.message and info.value.remedy and "--nic dedicated" in info.value.remedy


def test_existing_nic_with_another_vmnet_is_refused_not_ignored(tmp_path, monkeypatch):
    from labctl.converge import check_existing_vmnet
    from labctl.errors import InvalidInput
    from labctl.facts import Facts
    from labctl.hypervisor.vmware.networking import NetworkingFile
    from labctl.labspec import from_flags

    with pytest.raises(InvalidInput, match="--vmnet vmnet3 does not match lab's ethernet0, which is nat"):
        _existing_nic(NIC + 'ethernet0.connectionType = "nat"\n', vmnet="vmnet3")
    # the preflight refuses it too, before anything changes
    store = tmp_path / "store"
    d = store / "machines/lab"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "lab.vmx").write_text(NIC + 'ethernet0.connectionType = "nat"\n')
    facts = Facts(Paths("linux", tmp_path), env={"MACHINE_STORAGE_PATH": str(store), "HOME": str(tmp_path)})
    spec = from_flags("linux", "lab", nic="existing", vmnet="vmnet3").machines[0]
    nf = NetworkingFile.parse(NETWORKING.encode())
    with pytest.raises(InvalidInput, match="--vmnet vmnet3"):
        check_existing_vmnet(facts, spec, nf)
    spec = from_flags("linux", "new", nic="existing", vmnet="vmnet3").machines[0]
    with pytest.raises(InvalidInput, match="the NIC docker-machine creates for new is on vmnet8"):
        check_existing_vmnet(facts, spec, nf)


def test_real_bridged_vmx_sample_is_refused():
    from labctl.errors import Conflict
    from tests.conftest import fixtures_dir

    sample = [p for p in fixtures_dir("vmx").iterdir() if "2nic-bridged" in p.name][0]
    with pytest.raises(Conflict, match="bridged"):
        _existing_nic(sample.read_bytes())
