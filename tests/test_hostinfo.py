"""The desktop's facts: architecture and macOS seams, and a vmnet's host adapter found by its
subnet (vmnetN, or Fusion's bridge10x on macOS 11+)."""

from __future__ import annotations

import ipaddress
import plistlib
from pathlib import Path

import pytest

from labctl import hostinfo
from labctl.hypervisor.vmware.networking import NetworkingFile
from labctl.paths import Paths

NETWORKING = b"""VERSION=1,0
answer VNET_1_DHCP yes
answer VNET_1_HOSTONLY_NETMASK 255.255.255.0
answer VNET_1_HOSTONLY_SUBNET 172.16.141.0
answer VNET_1_VIRTUAL_ADAPTER yes
answer VNET_2_DHCP yes
answer VNET_2_HOSTONLY_NETMASK 255.255.255.0
answer VNET_2_HOSTONLY_SUBNET 192.168.99.0
answer VNET_2_VIRTUAL_ADAPTER yes
answer VNET_8_DHCP yes
answer VNET_8_HOSTONLY_NETMASK 255.255.255.0
answer VNET_8_HOSTONLY_SUBNET 172.16.61.0
answer VNET_8_NAT yes
answer VNET_8_VIRTUAL_ADAPTER yes
"""
VMNETS = NetworkingFile.parse(NETWORKING).vmnets


def table(*rows: tuple[str, str]) -> list[tuple[str, ipaddress.IPv4Interface]]:
    return [(name, ipaddress.IPv4Interface(cidr)) for name, cidr in rows]


MACOS_15 = table(("en0", "10.0.1.23/24"), ("bridge100", "172.16.61.1/24"),
                 ("bridge101", "192.168.99.1/24"), ("utun3", "10.8.0.6/32"))


def test_bridge_adapters_are_found_by_subnet():
    assert hostinfo.find_adapter(VMNETS[2], MACOS_15) == hostinfo.Adapter("bridge101", "192.168.99.1")
    assert hostinfo.find_adapter(VMNETS[8], MACOS_15) == hostinfo.Adapter("bridge100", "172.16.61.1")
    assert hostinfo.find_adapter(VMNETS[1], MACOS_15) is None  # no VM on vmnet1: no bridge


def test_classic_vmnet_names_and_wrong_addresses():
    rows = table(("vmnet2", "192.168.99.1/24"), ("vmnet8", "172.16.61.7/24"))
    assert hostinfo.find_adapter(VMNETS[2], rows).name == "vmnet2"
    # the subnet's interface with another address than .1 is still the adapter (doctor says so)
    assert hostinfo.find_adapter(VMNETS[8], rows) == hostinfo.Adapter("vmnet8", "172.16.61.7")


def test_an_address_of_the_subnet_on_another_mask_is_not_the_adapter():
    rows = table(("lo", "192.168.99.10/32"), ("en0", "192.168.0.0/16"))
    assert hostinfo.find_adapter(VMNETS[2], rows) is None


def test_the_host_address_wins_over_other_interfaces_on_the_subnet():
    rows = table(("bridge100", "192.168.99.7/24"), ("bridge101", "192.168.99.1/24"))
    assert hostinfo.find_adapter(VMNETS[2], rows).name == "bridge101"


@pytest.mark.parametrize("platform,macos,bridges", [
    ("darwin", "10.15.7", False), ("darwin", "11.6", True), ("darwin", "26.0", True),
    ("linux", "15.0", False)])
def test_bridge_layout_by_platform_and_release(monkeypatch, platform, macos, bridges):
    monkeypatch.setenv("LABCTL_MACOS_VERSION", macos)
    assert hostinfo.bridge_adapters(Paths(platform, Path("/"))) is bridges


def test_boot_unit_interface(monkeypatch):
    """A boot unit waits for vmnetN where that name is fixed; on macOS 11+ it names none
    while no VM runs (the bridge number is only known then)."""
    monkeypatch.setattr(hostinfo, "host_addresses", lambda: [])
    monkeypatch.setenv("LABCTL_MACOS_VERSION", "14.4")
    assert hostinfo.adapter_name(Paths("darwin", Path("/")), VMNETS[2], 2) is None
    assert hostinfo.adapter_name(Paths("linux", Path("/")), VMNETS[2], 2) == "vmnet2"
    monkeypatch.setattr(hostinfo, "host_addresses", lambda: MACOS_15)
    assert hostinfo.adapter_name(Paths("darwin", Path("/")), VMNETS[2], 2) == "bridge101"


def test_arch_seam(monkeypatch):
    monkeypatch.setenv("LABCTL_ARCH", "arm64")
    assert hostinfo.machine_arch() == "arm64" and hostinfo.is_arm(hostinfo.machine_arch())
    monkeypatch.setenv("LABCTL_ARCH", "x86_64")
    assert not hostinfo.is_arm(hostinfo.machine_arch())


def test_fusion_version_and_apple_dhcp(tmp_path):
    contents = tmp_path / "Applications/VMware Fusion.app/Contents"
    contents.mkdir(parents=True)
    (contents / "Info.plist").write_bytes(plistlib.dumps({"CFBundleShortVersionString": "12.1.2"}))
    assert Paths("darwin", tmp_path).hypervisor.version() == "12.1.2"
    assert hostinfo.uses_apple_dhcp("12.1.2", "11.6")
    assert hostinfo.uses_apple_dhcp("12.0.0", "11.0.1")
    assert not hostinfo.uses_apple_dhcp("12.2.0", "11.6")
    assert not hostinfo.uses_apple_dhcp("12.1.2", "12.0")
    assert Paths("darwin", tmp_path / "nothing").hypervisor.version() is None
