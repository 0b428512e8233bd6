"""labctl.labspec: flags and lab.toml, validation, engine subnet allocation; labctl.hypervisor.vmware.nic."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl import labspec
from labctl.errors import Conflict, InvalidInput
from labctl.labspec import EngineNets, allocate_engines, from_flags, load, parse

TWO = """
[defaults]
driver = "vmware"
cpus = 2
memory = 2048
vmnet = "vmnet2"
subnet = "192.168.99.0/24"

[[machine]]
name = "lab1"
ip = "192.168.99.10"

[[machine]]
name = "lab2"
nic = "existing"
cpus = 4
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lab.toml"
    p.write_text(text)
    return p


# ---- flags ---------------------------------------------------------------------------------------
def test_flags_defaults_per_platform():
    mac = from_flags("darwin").machines[0]
    assert (mac.name, mac.driver, mac.cpus, mac.memory, mac.disk, mac.nic) == (
        "lab", "vmwarefusion", 2, 2048, 20000, "dedicated")
    assert mac.vmnet is None and mac.ip is None and mac.subnet is None
    assert from_flags("linux", "dev").machines[0].driver == "vmware"
    m = from_flags("darwin", "dev", driver="vmware", cpus=4, memory=4096, disk=40000, nic="existing",
                   vmnet="vmnet3", subnet="192.168.77.0/24", ip="192.168.77.20").machines[0]
    assert (m.driver, m.cpus, m.vmnet, m.subnet, m.ip) == (
        "vmware", 4, 3, IPv4Network("192.168.77.0/24"), IPv4Address("192.168.77.20"))
    assert from_flags("linux", vmnet="auto", ip="auto").machines[0].vmnet is None
    assert from_flags("linux", vmnet="5").machines[0].vmnet == 5
    assert from_flags("linux", vmnet="vmnet8", nic="existing").machines[0].vmnet == 8


@pytest.mark.parametrize("kwargs,needle", [
    ({"name": "-rm"}, "invalid machine name"),
    ({"name": "a b"}, "invalid machine name"),
    ({"name": "../etc"}, "invalid machine name"),
    ({"name": "lab\n"}, "invalid machine name"),
    ({"name": "läb"}, "invalid machine name"),
    ({"name": "x" * 64}, "invalid machine name"),
    ({"driver": "virtualbox"}, "driver"),
    ({"driver": "vmwarefusion"}, "only on macOS"),
    ({"cpus": 0}, "cpus"),
    ({"cpus": 99}, "cpus"),
    ({"memory": 100}, "memory"),
    ({"disk": 10}, "disk"),
    ({"nic": "both"}, "nic"),
    ({"vmnet": "eth0"}, "vmnet"),
    ({"vmnet": "vmnet0"}, "bridged"),
    ({"vmnet": "vmnet256"}, "vmnet"),
    ({"vmnet": "vmnet8"}, "NAT"),
    ({"subnet": "192.168.99.1/24"}, "subnet"),
    ({"subnet": "8.8.8.0/24"}, "not a private"),
    ({"subnet": "10.0.0.0/8"}, "/16 and /29"),
    ({"ip": "300.1.1.1"}, "ip"),
    ({"subnet": "192.168.99.0/24", "ip": "192.168.98.5"}, "not in the subnet"),
    ({"subnet": "192.168.99.0/24", "ip": "192.168.99.1"}, "host (.1)"),
    ({"subnet": "192.168.99.0/24", "ip": "192.168.99.255"}, "broadcast"),
])
def test_flags_rejects_bad_values(kwargs, needle):
    name = kwargs.pop("name", "lab")
    with pytest.raises(InvalidInput) as info:
        from_flags("linux", name, **kwargs)
    assert needle in info.value.message + (info.value.remedy or "")
    assert info.value.exit_code == 2


# ---- lab.toml ------------------------------------------------------------------------------------
def test_toml_two_machines(tmp_path):
    spec = load(write(tmp_path, TWO), "linux")
    assert spec.names == ["lab1", "lab2"]
    a, b = spec.machines
    assert (a.driver, a.cpus, a.ip, a.nic, a.vmnet) == (
        "vmware", 2, IPv4Address("192.168.99.10"), "dedicated", 2)
    assert (b.cpus, b.nic, b.ip, b.subnet) == (4, "existing", None, IPv4Network("192.168.99.0/24"))
    assert spec.machine("LAB2") is b
    with pytest.raises(InvalidInput):
        spec.machine("lab3")


@pytest.mark.parametrize("text,needle", [
    ('[[machine]]\nname = "a"\ncolour = "red"\n', "unknown key colour"),
    ('[defaults]\nname = "a"\n[[machine]]\nname = "b"\n', "unknown key name"),
    ('[engine]\nsize = 3\n[[machine]]\nname = "b"\n', "unknown key size"),
    ('machines = 1\n[[machine]]\nname = "b"\n', "unknown key machines"),
    ('[[machine]]\nname = "a"\n[[machine]]\nname = "A"\n', "appears twice"),
    ('[[machine]]\nname = "a"\nip = "192.168.9.9"\n'
     '[[machine]]\nname = "b"\nip = "192.168.9.9"\n', "both want"),
    ('[[machine]]\nname = "a"\nvmnet = "vmnet2"\nsubnet = "192.168.2.0/24"\n'
     '[[machine]]\nname = "b"\nvmnet = "vmnet2"\nsubnet = "192.168.3.0/24"\n', "vmnet2 cannot be"),
    ('[[machine]]\nname = "a"\ncpus = "two"\n', "whole number"),
    ('[[machine]]\nname = "a"\ncpus = true\n', "whole number"),
    ('[[machine]]\nname = "$(reboot)"\n', "invalid machine name"),
    ('[[machine]]\ndriver = "vmware"\n', "invalid machine name"),
    ("title = 1\n", "unknown key title"),
    ("", "no machines"),
    ("machine = []\n", "no machines"),
    ("[[machine]\n", "not valid TOML"),
    ('[engine]\nranges = ["172.17.0.0/24"]\n[[machine]]\nname = "a"\n', "smaller than"),
    ('[engine]\npool_size = 40\n[[machine]]\nname = "a"\n', "pool_size"),
    ('[[machine]]\nname = "a"\nbip = "172.17.0.0/16"\n', "bip"),
])
def test_toml_rejects(tmp_path, text, needle):
    with pytest.raises(InvalidInput) as info:
        load(write(tmp_path, text), "linux")
    assert needle in info.value.message
    assert str(tmp_path / "lab.toml") in info.value.message


def test_toml_file_problems(tmp_path):
    with pytest.raises(InvalidInput, match="not found"):
        load(tmp_path / "missing.toml", "linux")
    p = tmp_path / "lab.toml"
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(InvalidInput, match="UTF-8"):
        load(p, "linux")


# ---- engine subnets ------------------------------------------------------------------------------
def _all_nets(nets: dict[str, EngineNets]) -> list[IPv4Network]:
    return [n for e in nets.values() for n in e.networks]


def test_first_machine_gets_dockers_usual_bridge():
    nets = allocate_engines(from_flags("linux"))
    assert nets["lab"].bip == IPv4Interface("172.17.0.1/16")
    assert nets["lab"].engine_opts() == ["bip=172.17.0.1/16",
                                         "default-address-pool=base=172.18.0.0/16,size=24"]


def test_two_machines_do_not_overlap_and_avoid_vmnet(tmp_path):
    spec = load(write(tmp_path, TWO), "linux")
    nets = allocate_engines(spec)
    all_nets = _all_nets(nets) + [IPv4Network("192.168.99.0/24")]
    for i, a in enumerate(all_nets):
        for b in all_nets[i + 1:]:
            assert not a.overlaps(b), (a, b)
    assert nets["lab2"].bip == IPv4Interface("172.19.0.1/16")
    assert nets == allocate_engines(spec)  # deterministic


def test_classic_vpn_clash_172_16_12():
    """A VPN routing all of 172.16.0.0/12 leaves no room in Docker's usual space."""
    spec = parse({"machine": [{"name": "a"}, {"name": "b"}]}, "linux")
    nets = allocate_engines(spec, avoid=[IPv4Network("172.16.0.0/12"), "0.0.0.0/0", "192.168.1.0/24"])
    for n in _all_nets(nets):
        assert not n.overlaps(IPv4Network("172.16.0.0/12"))
        assert n.subnet_of(IPv4Network("10.200.0.0/13"))
    assert nets["a"].bip == IPv4Interface("10.200.0.1/16")
    assert nets["b"].pool == IPv4Network("10.203.0.0/16")


def test_full_tunnel_vpn_halves_are_ignored_but_specific_routes_are_not():
    spec = from_flags("linux")
    nets = allocate_engines(spec, avoid=["0.0.0.0/1", "128.0.0.0/1", "172.17.5.0/24"])
    assert nets["lab"].bip == IPv4Interface("172.18.0.1/16")


def test_pinned_values_are_kept_and_checked():
    spec = parse({"machine": [{"name": "a"}, {"name": "b", "bip": "172.17.0.1/16", "pool": "172.20.0.0/16"}]},
                 "linux")
    nets = allocate_engines(spec)
    assert nets["b"].bip == IPv4Interface("172.17.0.1/16") and nets["b"].pool == IPv4Network("172.20.0.0/16")
    assert nets["a"].bip == IPv4Interface("172.18.0.1/16") and nets["a"].pool == IPv4Network("172.19.0.0/16")
    with pytest.raises(Conflict, match="overlaps"):
        allocate_engines(spec, avoid=["172.20.1.0/24"])
    spec2 = labspec.with_engines(spec, nets)
    assert spec2.machines[0].bip == nets["a"].bip


def test_running_out_of_space_says_how_to_fix():
    spec = parse({"engine": {"ranges": ["172.17.0.0/16", "172.18.0.0/16"]},
                  "machine": [{"name": "a"}, {"name": "b"}]}, "linux")
    with pytest.raises(Conflict) as info:
        allocate_engines(spec)
    assert "b" in info.value.message and "ranges" in (info.value.remedy or "")


def test_engine_nets_round_trip_through_config_flags():
    e = EngineNets(IPv4Interface("172.19.0.1/16"), IPv4Network("172.20.0.0/16"), 24)
    assert labspec.engine_nets_from_flags(e.engine_opts() + ["log-level=debug"]) == e
    assert labspec.engine_nets_from_flags([]) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), max_size=12),
       st.integers(1, 5))
def test_allocation_never_overlaps(routes, count):
    avoid = [IPv4Network((addr, plen), strict=False) for addr, plen in routes]
    spec = parse({"machine": [{"name": f"m{i}"} for i in range(count)]}, "linux")
    try:
        nets = allocate_engines(spec, avoid=avoid)
    except Conflict:
        return
    mine = _all_nets(nets)
    for i, a in enumerate(mine):
        assert not any(a.overlaps(r) for r in avoid)
        assert not any(a.overlaps(b) for b in mine[i + 1:])


# ---- labctl.hypervisor.vmware.nic: the dedicated NIC in a .vmx ---------------------------------------
from labctl.hypervisor.vmware import nic  # noqa: E402
from labctl.hypervisor.vmware.vmx import Vmx  # noqa: E402


def vmx_sample(part: str) -> bytes:
    from conftest import fixture_files, fixtures_dir

    fixtures_dir("vmx")
    return next(p for p in fixture_files("vmx") if part in p.name).read_bytes()


def filled_template() -> bytes:
    raw = vmx_sample("driver-template").decode()
    return (raw.replace("{{.MachineName}}", "lab").replace("{{.ISO}}", "/s/boot2docker.iso")
            .replace("{{.Memory}}", "2048").replace("{{.CPU}}", "2")
            + 'ethernet0.generatedAddress = "00:0c:29:aa:bb:cc"\n').encode()


def test_mac_for_is_deterministic_and_in_the_static_range():
    macs = {nic.mac_for(f"m{i}") for i in range(2000)}
    assert len(macs) > 1990
    for mac in macs:
        assert nic.check_static_mac(mac) == mac
        assert int(mac.split(":")[3], 16) <= 0x3F
    assert nic.mac_for("lab") == nic.mac_for("lab") != nic.mac_for("lab2")
    for bad in ("00:50:56:40:00:00", "00:0c:29:00:00:01", "00:50:56:00:00", "zz"):
        with pytest.raises(InvalidInput):
            nic.check_static_mac(bad)


@pytest.mark.parametrize("sample", ["driver-template", "ethernet-custom-vnet-static"])
def test_plan_nic_on_real_samples_is_lossless(sample):
    old = filled_template() if sample == "driver-template" else vmx_sample(sample)
    vmx = Vmx.parse(old)
    mac = nic.mac_for("lab")
    new = nic.plan_nic(vmx, 2, mac)
    assert new.startswith(old)  # every existing line untouched
    added = new[len(old):].decode().splitlines()
    assert added == ['ethernet1.present = "TRUE"', 'ethernet1.connectionType = "custom"',
                     'ethernet1.vnet = "vmnet2"', 'ethernet1.virtualDev = "vmxnet3"',
                     'ethernet1.addressType = "static"', f'ethernet1.address = "{mac}"']
    parsed = Vmx.parse(new)
    e1 = parsed.nic(1)
    assert e1 and e1.present and e1.connection_type == "custom" and e1.vnet == "vmnet2"
    assert e1.address_type == "static" and e1.address == mac and e1.virtual_dev == "vmxnet3"
    assert parsed.nic(0) == vmx.nic(0)
    assert nic.nic_state(parsed, mac) == "ours"
    assert nic.plan_nic(parsed, 2, mac) == new  # converged: no-op
    assert nic.plan_nic_removal(parsed, mac) == old  # exact original bytes
    assert nic.plan_nic_removal(vmx, mac) == old  # nothing to remove


def test_plan_nic_refuses_a_foreign_ethernet1():
    vmx = Vmx.parse(vmx_sample("ATTM_VM"))  # a real Fusion VM with a bridged ethernet1
    mac = nic.mac_for("lab")
    assert nic.nic_state(vmx, mac) == "foreign"
    with pytest.raises(Conflict) as info:
        nic.plan_nic(vmx, 2, mac)
    assert "bridged" in info.value.message and "--nic existing" in (info.value.remedy or "")
    with pytest.raises(Conflict):
        nic.plan_nic_removal(vmx, mac)
    other = nic.plan_nic(Vmx.parse(filled_template()), 2, nic.mac_for("other"))
    with pytest.raises(Conflict):  # another machine's MAC is not ours either
        nic.plan_nic(Vmx.parse(other), 2, mac)


def test_plan_nic_moves_our_nic_to_another_vmnet_in_place():
    mac = nic.mac_for("lab")
    on2 = nic.plan_nic(Vmx.parse(filled_template()), 2, mac)
    on3 = nic.plan_nic(Vmx.parse(on2), 3, mac)
    assert on3 == on2.replace(b'ethernet1.vnet = "vmnet2"', b'ethernet1.vnet = "vmnet3"')


@pytest.mark.parametrize("old", [b"", b'a = "1"', b'a = "1"\r\nb = "2"\r\n', b'a = "1"\r\nb = "2"',
                                 b'# comment\n\nx = "\xff"\n'])
def test_plan_nic_round_trip_edge_files(old):
    mac = nic.mac_for("x")
    new = nic.plan_nic(Vmx.parse(old), 5, mac)
    if b"\r\n" in old:
        assert b'ethernet1.address = "' + mac.encode() + b'"' in new
        assert b"\n" not in new.replace(b"\r\n", b"")
    assert nic.plan_nic_removal(Vmx.parse(new), mac) == old


def test_plan_nic_removes_lines_vmware_added_to_our_nic():
    old = filled_template()
    mac = nic.mac_for("lab")
    new = nic.plan_nic(Vmx.parse(old), 2, mac) + b'ethernet1.pciSlotNumber = "224"\n'
    assert nic.plan_nic_removal(Vmx.parse(new), mac) == old


def test_plan_nic_rejects_nat_and_bad_macs():
    vmx = Vmx.parse(filled_template())
    with pytest.raises(InvalidInput):
        nic.plan_nic(vmx, 8, nic.mac_for("lab"))
    with pytest.raises(InvalidInput):
        nic.plan_nic(vmx, 2, "00:0c:29:aa:bb:cc")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(['a = "1"', 'ethernet0.present = "TRUE"', "# c", "", "  x.y = z",
                                 'ethernet10.present = "TRUE"']), max_size=8),
       st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_plan_nic_add_remove_identity(lines, eol, final):
    old = eol.join(lines) + (eol if final and lines else "")
    mac = nic.mac_for("h")
    new = nic.plan_nic(Vmx(old), 2, mac)
    assert new.startswith(old.encode())
    assert nic.plan_nic_removal(Vmx.parse(new), mac) == old.encode()
