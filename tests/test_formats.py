"""Conformance: every genuine sample in ../shared/fixtures/{fusion,workstation,leases,vmx} is read by
the right parser, round-trips byte-identically, and yields the facts the file actually states.
Edits (networking answers, .vmx keys) keep every other byte."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import fixture_files, fixtures_dir

from labctl import fileops
from labctl.errors import LabctlError, MalformedFile
from labctl.hypervisor.vmware import leases
from labctl.hypervisor.vmware.dhcpd import DhcpdConf
from labctl.hypervisor.vmware.networking import NetworkingFile
from labctl.hypervisor.vmware.vmx import Vmx

DIRS = ("fusion", "workstation", "leases", "vmx")

# Files in the sample dirs that are not labctl's formats (nat.conf, nat.mac, netmap.conf): labctl
# never edits them; we only check that pointing a parser at one fails cleanly instead of crashing.
NOT_OURS = ("nat.conf", "nat.mac", "netmap.conf")


def kind_of(path: Path) -> str:
    name = path.name
    if any(tag in name for tag in NOT_OURS):
        return "other"
    if "dhcpd.conf" in name:
        return "dhcpd"
    if "networking" in name:
        return "networking"
    if path.parent.name == "leases":
        return "leases"
    if path.parent.name == "vmx":
        return "vmx"
    return "unknown"


def all_samples() -> list[Path]:
    return [p for d in DIRS for p in fixture_files(d)]


def ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name[:60]}" for p in paths]


SAMPLES = all_samples()
BY_KIND: dict[str, list[Path]] = {}
for _p in SAMPLES:
    BY_KIND.setdefault(kind_of(_p), []).append(_p)


def sample(subdir: str, contains: str) -> bytes:
    d = fixtures_dir(subdir)
    found = [p for p in d.iterdir() if contains in p.name]
    assert len(found) == 1, f"expected one sample matching {contains!r} in {d}, got {found}"
    return found[0].read_bytes()


def kinds(kind: str) -> list[Path]:
    return BY_KIND.get(kind, [])


# ---- inventory ------------------------------------------------------------------------------
def test_every_sample_has_a_parser():
    for d in DIRS:
        fixtures_dir(d)
    unknown = [p for p in SAMPLES if kind_of(p) == "unknown"]
    assert not unknown, f"samples no parser claims: {unknown}"
    # the inventory SOURCES.md describes
    assert len(kinds("networking")) == 6
    assert len(kinds("dhcpd")) == 5
    assert len(kinds("leases")) == 3
    assert len(kinds("vmx")) == 3


# ---- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", kinds("networking"), ids=ids(kinds("networking")))
def test_networking_round_trip(path):
    data = path.read_bytes()
    nf = NetworkingFile.parse(data)
    assert nf.dump() == data
    assert nf.vmnets, "every networking sample declares vmnets"


@pytest.mark.parametrize("path", kinds("dhcpd"), ids=ids(kinds("dhcpd")))
def test_dhcpd_round_trip(path):
    data = path.read_bytes()
    conf = DhcpdConf.parse(data)
    assert conf.dump() == data
    assert conf.subnet is not None
    assert conf.hosts


@pytest.mark.parametrize("path", kinds("vmx"), ids=ids(kinds("vmx")))
def test_vmx_round_trip(path):
    data = path.read_bytes()
    vmx = Vmx.parse(data)
    assert vmx.dump() == data
    assert vmx.nics()


@pytest.mark.parametrize("path", kinds("leases"), ids=ids(kinds("leases")))
def test_leases_parse_and_backup_is_byte_identical(path, tmp_path):
    """labctl never edits lease files; it backs them up before a restart: the copy is exact."""
    data = path.read_bytes()
    found = leases.parse(data)
    assert found and all(le.ip for le in found)
    src = tmp_path / "dhcpd.leases"
    src.write_bytes(data)
    copy = fileops.backup(src, tmp_path / "backups")
    assert copy is not None and copy.read_bytes() == data
    assert src.read_bytes() == data


@pytest.mark.parametrize("path", kinds("other"), ids=ids(kinds("other")))
def test_foreign_files_fail_cleanly(path):
    """nat.conf / nat.mac / netmap.conf are not labctl's formats.  Our parsers must either read
    them harmlessly or raise a clean MalformedFile, never crash."""
    data = path.read_bytes()
    with pytest.raises(MalformedFile):
        NetworkingFile.parse(data)  # none of them starts with VERSION=
    try:
        conf = DhcpdConf.parse(data)
    except MalformedFile:
        pass
    else:
        assert conf.dump() == data
        with pytest.raises(LabctlError):
            conf.plan_reserve("lab", "00:50:56:2a:bb:cc", None)
    assert Vmx.parse(data).dump() == data


# ---- dhcpd.conf facts -----------------------------------------------------------------------
def test_vmnet1_facts():
    data = sample("fusion", "vmnet1-dhcpd.conf")
    conf = DhcpdConf.parse(data)
    sub = conf.subnet
    assert sub is not None
    assert sub.network == ipaddress.IPv4Network("172.16.141.0/24")
    assert sub.ranges == ((ipaddress.IPv4Address("172.16.141.128"),
                           ipaddress.IPv4Address("172.16.141.254")),)
    assert sub.routers == ()  # host-only: no option routers
    assert conf.has_protected_section
    assert conf.protected_text == conf.text  # the file ends right at the End line
    [host] = conf.hosts
    assert (host.name, host.mac, host.ip) == ("vmnet1", "00:50:56:c0:00:01", "172.16.141.1")
    assert host.protected and not host.managed
    assert conf.docker_machine_lookup("00:50:56:C0:00:01") == "172.16.141.1"


def test_vmnet8_facts():
    conf = DhcpdConf.parse(sample("fusion", "vmnet8-dhcpd.conf.from-sirn"))
    assert conf.subnet is not None
    assert conf.subnet.network == ipaddress.IPv4Network("172.16.99.0/24")
    assert conf.subnet.routers == ("172.16.99.2",)
    assert [h.name for h in conf.hosts] == ["vmnet8"]
    assert conf.hosts[0].ip == "172.16.99.1"
    assert conf.text.endswith('End of "DO NOT MODIFY SECTION" #######\n')


def test_ansible_sample_wlc01_is_found_unmanaged():
    data = sample("fusion", "with-ansible-host-reservation")
    conf = DhcpdConf.parse(data)
    wlc = conf.host("wlc01")
    assert wlc is not None
    assert wlc.mac == "00:0c:29:0d:ec:56"
    assert wlc.ip == "192.168.232.127"
    assert not wlc.managed and not wlc.protected
    assert wlc.line == 45
    assert conf.subnet is not None and conf.subnet.network == ipaddress.IPv4Network("192.168.232.0/24")
    # docker-machine would read it too (its trailing-blank line is max-lease-time, not ours)
    assert conf.docker_machine_lookup("00:0c:29:0d:ec:56") == "192.168.232.127"
    # the DO-NOT-MODIFY part is exactly the unmodified file from the same post
    unmodified = DhcpdConf.parse(sample("fusion", "vmnet8-dhcpd.conf.unmodified"))
    assert conf.protected_text == unmodified.text
    assert conf.managed_blocks() == {}


def test_annotated_fixture_comments_and_no_marker():
    conf = DhcpdConf.parse(sample("fusion", "annotated-test-fixture"))
    assert not conf.has_protected_section
    sub = conf.subnet
    assert sub is not None
    assert sub.network == ipaddress.IPv4Network("172.33.33.0/24")
    assert sub.routers == ("172.33.33.2",)
    assert sub.ranges == ((ipaddress.IPv4Address("172.33.33.128"),
                           ipaddress.IPv4Address("172.33.33.254")),)
    [host] = conf.hosts
    assert (host.name, host.ip) == ("vmnet8", "172.33.33.1")
    # commented-out statements are comments, not structure
    assert (host.macs, host.ips) == (("00:50:56:c0:00:08",), ("172.33.33.1",))
    # a '{' inside a trailing comment does not open a block: the parse stays balanced
    assert conf.hosts[0].line == 13
    # without the End line labctl refuses to add anything
    with pytest.raises(MalformedFile, match="DO NOT MODIFY"):
        conf.plan_reserve("lab", "00:50:56:2a:bb:cc", None)


# ---- networking facts -----------------------------------------------------------------------
def test_networking_clean_facts():
    nf = NetworkingFile.parse(sample("fusion", "networking.clean"))
    assert sorted(nf.vmnets) == [1, 8]
    v1, v8 = nf.vmnets[1], nf.vmnets[8]
    assert (v1.kind, v1.dhcp, v1.virtual_adapter) == ("host-only", True, True)
    assert v1.network == ipaddress.IPv4Network("172.16.141.0/24")
    assert v8.kind == "nat" and v8.network == ipaddress.IPv4Network("172.16.99.0/24")
    assert v1.answers["DHCP_CFG_HASH"] == "D629162D6C1A53A9A1A88BD099A739107E10F3A9"


def test_networking_display_names_and_dhcp_off():
    nf = NetworkingFile.parse(sample("fusion", "vmnet2-hostonly-vmnet3-nat"))
    assert sorted(nf.vmnets) == [1, 2, 3, 8]
    v2, v3 = nf.vmnets[2], nf.vmnets[3]
    assert (v2.kind, v2.dhcp, v2.display_name) == ("host-only", False, "vSphere")
    assert v2.network == ipaddress.IPv4Network("10.1.1.0/24")
    assert (v3.kind, v3.display_name, v3.answers["NAT_PARAM_UDP_TIMEOUT"]) == ("nat", "WAN", "30")


def test_networking_packer_sample_nat_no():
    nf = NetworkingFile.parse(sample("fusion", "networking.with-nat-portfwd.from-hashicorp"))
    assert nf.vmnets[1].kind == "host-only" and not nf.vmnets[1].nat
    assert nf.vmnets[8].network == ipaddress.IPv4Network("172.16.41.0/24")


def test_workstation_networking_bridge_mappings():
    nf = NetworkingFile.parse(sample("workstation", "etc-vmware-networking"))
    # add_bridge_mapping br0 0 / eth1 2: bridged vmnets; VNL_DEFAULT_BRIDGE_VNET -1 names none
    assert sorted(nf.vmnets) == [0, 1, 2, 8]
    assert [(nf.vmnets[n].kind, nf.vmnets[n].bridge) for n in (0, 2)] == [("bridged", "br0"),
                                                                          ("bridged", "eth1")]
    assert nf.in_use == {0, 1, 2, 8}
    assert nf.vmnets[1].network == ipaddress.IPv4Network("192.168.5.0/24")


@pytest.mark.parametrize("path", kinds("networking"), ids=ids(kinds("networking")))
def test_networking_set_answer_keeps_other_bytes(path):
    data = path.read_bytes()
    nf = NetworkingFile.parse(data)
    # change an existing answer in place: only that line differs
    nf.set_answer(1, "DHCP", "no")
    new = nf.dump()
    old_lines, new_lines = data.split(b"\n"), new.split(b"\n")
    assert len(old_lines) == len(new_lines)
    diff = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert diff == [(b"answer VNET_1_DHCP yes", b"answer VNET_1_DHCP no")]
    assert NetworkingFile.parse(new).vmnets[1].dhcp is False
    # add a new vmnet: only inserted lines, in VMware's sorted order, nothing else touched
    nf = NetworkingFile.parse(data)
    for key, value in (("DHCP", "yes"), ("HOSTONLY_NETMASK", "255.255.255.0"),
                       ("HOSTONLY_SUBNET", "192.168.99.0"), ("VIRTUAL_ADAPTER", "yes")):
        nf.set_answer(5, key, value)
    new = nf.dump()
    added = [line for line in new.split(b"\n") if b"VNET_5_" in line]
    assert added == [b"answer VNET_5_DHCP yes", b"answer VNET_5_HOSTONLY_NETMASK 255.255.255.0",
                     b"answer VNET_5_HOSTONLY_SUBNET 192.168.99.0", b"answer VNET_5_VIRTUAL_ADAPTER yes"]
    assert [line for line in new.split(b"\n") if b"VNET_5_" not in line] == data.split(b"\n")
    v5 = NetworkingFile.parse(new).vmnets[5]
    assert v5.network == ipaddress.IPv4Network("192.168.99.0/24") and v5.kind == "host-only"
    # and removing it again gives the original bytes
    nf.remove_vmnet(5)
    assert nf.dump() == data


# ---- leases facts ---------------------------------------------------------------------------
def test_precise64_latest_lease():
    found = leases.parse(sample("leases", "precise64"))
    assert [le.ip for le in found] == ["192.168.126.129", "192.168.126.130", "192.168.126.128",
                                       "192.168.126.127"]
    latest = leases.latest_for(found, "00:0c:29:59:91:02")
    assert latest is not None
    assert latest.ip == "192.168.126.130"
    assert latest.ends == datetime(2013, 9, 17, 22, 9, 7, tzinfo=UTC)
    assert latest.hostname == "precise64"
    # the vendor's last lease has an edited MAC and no closing brace: still read
    assert found[-1].mac == "01:0c:29:59:91:02"


def test_isc_leases_mixed_indentation_duplicate_ips():
    found = leases.parse(sample("leases", "vmnet-dhcpd.leases.anonymized"))
    assert [le.ip for le in found] == ["127.0.0.17", "127.0.0.17", "127.0.0.19", "127.0.0.19"]
    assert [le.mac for le in found] == ["0d:ea:d0:66:77:88"] * 3 + ["0d:ea:d0:99:aa:bb"]
    latest = leases.latest_for(found, "0D:EA:D0:66:77:88")
    assert latest is not None and latest.ip == "127.0.0.17"
    assert latest.ends == datetime(2020, 6, 12, 22, 58, 54, tzinfo=UTC)
    assert found[2].hostname == "VAGRANT-ADA-LUZ"


def test_bootpd_leases_mac_normalization():
    found = leases.parse(sample("leases", "macos-bootpd"))
    assert [le.ip for le in found] == ["127.0.0.17", "127.0.0.17", "127.0.0.19", "127.0.0.19",
                                       "127.0.0.20"]
    # hw_address=1,d:ea:d0:66:77:88 -> hardware type 1 dropped, octets zero-padded
    assert found[0].mac == "0d:ea:d0:66:77:88"
    assert found[-1].mac == "0d:ea:d0:99:aa:bc"
    assert found[0].hostname == "vagrant-2019"
    assert found[0].ends == datetime.fromtimestamp(0x5fd78ae2, UTC)
    assert found[-1].ends is None  # "does not have all fields"
    latest = leases.latest_for(found, "0d:ea:d0:66:77:88")
    assert latest is not None and latest.ends == datetime.fromtimestamp(0x5fd7b4e5, UTC)


# ---- vmx facts and edits ---------------------------------------------------------------------
def test_vmx_fusion_two_nics():
    vmx = Vmx.parse(sample("vmx", "fusion-2nic"))
    assert vmx.display_name == "ATTM_VM"
    nics = vmx.nics()
    assert [n.index for n in nics] == [0, 1]
    assert [(n.present, n.connection_type, n.address_type, n.address) for n in nics] == [
        (True, "bridged", "generated", "00:0c:29:3b:64:ea"),
        (True, "bridged", "generated", "00:0c:29:3b:64:f4"),
    ]
    assert vmx.get("ethernet1.generatedAddressOffset") == "10"
    assert vmx.get("ETHERNET1.GENERATEDADDRESSOFFSET") == "10"  # keys are case-insensitive


def test_vmx_custom_vnet_static():
    vmx = Vmx.parse(sample("vmx", "ethernet-custom"))
    [nic] = vmx.nics()
    assert (nic.index, nic.present, nic.connection_type, nic.vnet, nic.address_type, nic.address) == \
        (0, True, "custom", "vmnet7", "static", "00:50:56:11:22:33")


def test_vmx_docker_machine_template():
    vmx = Vmx.parse(sample("vmx", "docker-machine-vmwarefusion"))
    [nic] = vmx.nics()
    assert (nic.connection_type, nic.address_type, nic.virtual_dev) == ("nat", "generated", "vmxnet3")
    assert nic.address is None  # a template: no generatedAddress yet


@pytest.mark.parametrize("path", kinds("vmx"), ids=ids(kinds("vmx")))
def test_vmx_set_keeps_other_bytes(path):
    data = path.read_bytes()
    vmx = Vmx.parse(data)
    vmx.set("ethernet0.connectionType", "hostonly")
    out = vmx.dump()
    old_lines, new_lines = data.split(b"\n"), out.split(b"\n")
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert len(changed) == 1
    assert changed[0][1] == b'ethernet0.connectionType = "hostonly"'
    # appending a new key adds one line at the end and nothing else
    vmx = Vmx.parse(data)
    vmx.set("ethernet1.vnet", "vmnet2")
    out = vmx.dump()
    assert out.startswith(data)
    assert out[len(data):] == b'ethernet1.vnet = "vmnet2"\n'
    assert Vmx.parse(out).get("ethernet1.vnet") == "vmnet2"


def test_vmx_set_refuses_injection():
    vmx = Vmx.parse(b'ethernet0.present = "TRUE"\n')
    for bad in ('x"\nethernet0.present = "FALSE', "a\nb", 'quote"'):
        with pytest.raises(LabctlError):
            vmx.set("ethernet0.vnet", bad)
    with pytest.raises(LabctlError):
        vmx.set("bad key", "x")
    assert vmx.dump() == b'ethernet0.present = "TRUE"\n'


# ---- our own edge-case files (not samples) ----------------------------------------------------
EDGE_TEXTS = [
    b"VERSION=1,0\r\nanswer VNET_1_DHCP yes\r\nanswer VNET_1_HOSTONLY_SUBNET 10.0.0.0\r\n",
    b"VERSION=1,0\nanswer VNET_1_DHCP yes",  # no final newline
    b"VERSION=1,0\nanswer VNET_1_DISPLAY_NAME caf\xe9 \xff\xfe\nanswer VNET_1_DHCP yes\n",  # not UTF-8
]


@pytest.mark.parametrize("data", EDGE_TEXTS)
def test_networking_edge_round_trip(data):
    nf = NetworkingFile.parse(data)
    assert nf.dump() == data
    nf.set_answer(1, "DHCP", "no")
    assert nf.dump().replace(b"VNET_1_DHCP no", b"VNET_1_DHCP yes") == data


def test_dhcpd_non_utf8_and_crlf_round_trip():
    data = (b"# caf\xe9 \xff\r\nsubnet 10.0.0.0 netmask 255.255.255.0 {\r\n range 10.0.0.128 10.0.0.254;\r\n}"
            b"\r\n####### VMNET DHCP Configuration. End of \"DO NOT MODIFY SECTION\" #######\r\n")
    conf = DhcpdConf.parse(data)
    assert conf.dump() == data
    assert conf.subnet is not None and conf.subnet.network == ipaddress.IPv4Network("10.0.0.0/24")


def test_vmx_set_on_last_line_without_newline_keeps_it_so():
    data = b'config.version = "8"\r\nethernet0.vnet = "vmnet1"'
    vmx = Vmx.parse(data)
    vmx.set("ethernet0.vnet", "vmnet2")
    assert vmx.dump() == b'config.version = "8"\r\nethernet0.vnet = "vmnet2"'
