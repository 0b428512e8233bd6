"""Routes that appear after up and overlap the lab (a VPN connecting later): found on a real
macOS table (minikube's sample with Fusion's vmnet1 in 172.16.128/24), said once while they
last, never labctl's own routes or routes into the lab VM."""

from __future__ import annotations

from labctl.routes.model import IPv4Address, IPv4Network
from labctl.routes.parse import parse_netstat_darwin
from labctl.routes.records import Record
from labctl.routes.vpn import Reporter, find, message
from tests.conftest import fixtures_dir

SAMPLE = "macos-netstat-nr-f-inet-with-vmnet1-8.from-kubernetes-minikube-route_darwin_test.txt"
VM = "172.16.128.100"
OURS = "172.17/16          172.16.128.100     UGSc            0        0  vmnet1\n"
RECORDS = [Record(IPv4Network("172.17.0.0/16"), IPv4Address(VM), "lab", "bridge")]
VPN_WIDE = "172.16/12          utun3              USc             0        0   utun3\n"
VPN_NARROW = "172.17.5/24        10.8.0.1           UGSc            0        0   utun3\n"
VPN_ALL = ("0/1                10.8.0.1           UGSc            0        0   utun3\n"
           "128.0/1            10.8.0.1           UGSc            0        0   utun3\n")
INTO_LAB = "10.250/16          172.16.128.100     UGSc            0        0  vmnet1\n"


def table(*extra: str):
    text = (fixtures_dir("routes") / SAMPLE).read_text()
    return parse_netstat_darwin(text + OURS + "".join(extra))


def test_no_overlap_on_the_lab_alone():
    assert find(table(), RECORDS) == []
    # a VPN's all-traffic pair and other routes into the lab VM are not overlaps
    assert find(table(VPN_ALL, INTO_LAB), RECORDS) == []


def test_a_wide_vpn_route_covers_the_engine_subnet_and_fusions_vmnet():
    found = find(table(VPN_WIDE), RECORDS)
    assert {(str(o.route.destination), str(o.lab), o.what, o.shadows) for o in found} == {
        ("172.16.0.0/12", "172.17.0.0/16", "engine", False),
        ("172.16.0.0/12", "172.16.128.0/24", "vmnet", False)}
    text = message(next(o for o in found if o.what == "engine"), table(VPN_WIDE), RECORDS)
    assert text.startswith("warning: a new route 172.16.0.0/12 dev utun3 (a VPN's, not labctl's) "
                           "overlaps the lab's engine subnet 172.17.0.0/16 (lab)")
    # the suggested ranges are free on this desktop and not the VPN's
    assert 'bip = "10.200.0.1/16" and pool = "10.201.0.0/16" for lab' in text
    assert "labctl down lab && labctl up --config lab.toml" in text


def test_a_narrower_vpn_route_shadows_part_of_the_lab():
    found = find(table(VPN_NARROW), RECORDS)
    assert [(str(o.route.destination), o.shadows) for o in found] == [("172.17.5.0/24", True)]
    assert "no longer reach the lab" in message(found[0], table(VPN_NARROW), RECORDS)


def test_reported_once_while_it_lasts_and_again_when_it_comes_back():
    rep = Reporter()
    assert rep.new(table(), RECORDS) == []
    assert len(rep.new(table(VPN_WIDE), RECORDS)) == 2
    assert rep.new(table(VPN_WIDE), RECORDS) == []
    assert rep.new(table(VPN_WIDE, VPN_ALL), RECORDS) == []
    assert rep.new(table(), RECORDS) == []  # disconnected
    assert len(rep.new(table(VPN_WIDE), RECORDS)) == 2  # connected again
    # what the boot unit remembered in the state file is not said again
    assert Reporter(rep.said).new(table(VPN_WIDE), RECORDS) == []
