"""Conformance: every routing-table sample in ../shared/fixtures/routes/ parses correctly, plus
the short destination forms of macOS netstat and hostile input."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.errors import MalformedFile
from labctl.routes.model import GATEWAY, LINK, NEIGHBOUR, SPECIAL
from labctl.routes.parse import (
    expand_destination,
    parse_ip_json,
    parse_ip_text,
    parse_netsh,
    parse_netstat_darwin,
    parse_netstat_linux,
    parse_proc_net_route,
    sniff,
)
from labctl.routes.tables import RouteOp, outcome
from tests.conftest import fixture_files, fixtures_dir


def sample(part: str) -> str:
    d = fixtures_dir("routes")
    matches = [p for p in d.iterdir() if part in p.name]
    assert len(matches) == 1, f"expected one sample matching {part!r}, found {matches}"
    return matches[0].read_text()


def find(routes, dest, kind=None):
    hits = [r for r in routes if r.destination == N(dest) and (kind is None or r.kind == kind)]
    assert hits, f"{dest} ({kind}) not among {[r.describe() for r in routes]}"
    return hits[0]


@pytest.mark.parametrize("text,expected", [
    ("172.17", "172.17.0.0/16"), ("10.96/12", "10.96.0.0/12"), ("192.168.99", "192.168.99.0/24"),
    ("127", "127.0.0.0/8"), ("0/1", "0.0.0.0/1"), ("128.0/1", "128.0.0.0/1"),
    ("224.0.0/4", "224.0.0.0/4"), ("172.16.128/24", "172.16.128.0/24"), ("default", "0.0.0.0/0"),
    ("10.0.1.32", "10.0.1.32/32"), ("192.168.1.221/32", "192.168.1.221/32"), ("172.31/20", "172.31.0.0/20"),
    ("10", "10.0.0.0/8"), ("localhost", "127.0.0.1/32"),
])
def test_expand_destination(text, expected):
    assert expand_destination(text) == N(expected)


@pytest.mark.parametrize("text", ["kellys-iphone.attl", "fe80::%utun0", "300.1", "10.1/33", "", "a.b"])
def test_expand_destination_rejects(text):
    assert expand_destination(text) is None


def test_minikube_netstat_nr_f_inet():
    routes = parse_netstat_darwin(sample("macos-netstat-nr-f-inet-with-vmnet1-8"))
    assert [str(r.destination) for r in routes] == [
        "127.0.0.0/8", "127.0.0.1/32", "172.16.128.0/24", "192.168.246.0/24", "224.0.0.0/24"]
    vmnet1 = find(routes, "172.16.128.0/24")
    assert (vmnet1.kind, vmnet1.interface, vmnet1.gateway) == (LINK, "vmnet1", None)
    assert find(routes, "192.168.246.0/24").interface == "vmnet8"
    assert find(routes, "127.0.0.0/8").kind == SPECIAL


def test_vagrant_netstat_rn_vmnets_and_vpn():
    routes = parse_netstat_darwin(sample("macos-netstat-rn-with-vmnet1-2-3-4-8"))
    half = find(routes, "0.0.0.0/1")
    assert (half.kind, half.gateway, half.interface) == (GATEWAY, A("10.137.0.9"), "utun0")
    assert half.via_vpn
    default = find(routes, "0.0.0.0/0")
    assert (default.gateway, default.interface, default.is_default) == (A("10.0.1.1"), "en0", True)
    for dest, iface in (("30.30.30.0/24", "vmnet2"), ("33.33.33.0/24", "vmnet3"),
                        ("172.16.163.0/24", "vmnet8"), ("192.168.51.0/24", "vmnet1"),
                        ("192.168.102.0/24", "vmnet4"), ("10.0.1.0/24", "en0")):
        r = find(routes, dest, LINK)
        assert r.interface == iface
    assert find(routes, "10.0.1.1/32").kind == NEIGHBOUR
    assert find(routes, "30.30.30.255/32").kind == NEIGHBOUR  # broadcast entry with a MAC


def test_modern_netstat_without_refs_use_columns():
    routes = parse_netstat_darwin(sample("macos-netstat-nr-modern-no-refs-use-cols-truncated"))
    corp = find(routes, "172.31.0.0/20")
    assert (corp.gateway, corp.interface, corp.via_vpn) == (A("10.10.10.5"), "utun7", True)
    vpn_net = find(routes, "10.10.10.0/24")
    assert vpn_net.via_vpn and vpn_net.kind == GATEWAY
    ppp = [r for r in routes if r.is_default and r.interface == "ppp0"]
    assert ppp and ppp[0].via_vpn
    assert find(routes, "62.117.112.36/32").gateway == A("192.168.1.1")


def test_netstat_no_default_route():
    routes = parse_netstat_darwin(sample("macos-netstat-rn-no-default-route"))
    assert not [r for r in routes if r.is_default]
    assert find(routes, "10.88.88.0/24").kind == LINK


@pytest.mark.parametrize("part", ["netstat-rnl-with-vmnet1-vmnet8", "netstat-r-with-vmnet1-vmnet8"])
def test_jc_netstat_variants_ignore_ipv6_and_names(part):
    routes = parse_netstat_darwin(sample(part))
    assert all(r.destination.version == 4 for r in routes)
    assert find(routes, "192.168.71.0/24", LINK).interface == "vmnet8"
    assert find(routes, "192.168.101.0/24", LINK).interface == "vmnet1"
    default = find(routes, "0.0.0.0/0")
    assert default.interface == "en0"
    if "rnl" in part:
        assert default.gateway == A("192.168.1.254")
        assert len([r for r in routes if r.kind == NEIGHBOUR]) >= 15
    else:  # netstat -r prints names: the gateway is unknown, the route is still a gateway route
        assert default.gateway is None and default.kind == GATEWAY
    assert not [r for r in routes if r.destination == N("224.0.0.0/4") and r.kind != SPECIAL]


def test_linux_ip_json():
    routes = parse_ip_json(sample("linux-ip-j-route"))
    assert [r.describe() for r in routes] == [
        "default via 10.0.2.2 dev eth0", "10.0.2.0/24 dev eth0 (directly connected)",
        "10.0.2.2/32 dev eth0 (directly connected)"]
    assert routes[0].protocol == "dhcp" and routes[0].metric == 100


def test_linux_ip_text():
    routes = parse_ip_text(sample("linux-centos-7.7-ip-route"))
    assert [r.describe() for r in routes] == [
        "default via 10.0.2.2 dev enp0s3", "10.0.2.0/24 dev enp0s3 (directly connected)",
        "169.254.0.0/16 dev enp0s3 (directly connected)", "172.17.0.0/16 dev docker0 (directly connected)"]
    assert "linkdown" in routes[3].flags


def test_linux_netstat_rn():
    routes = parse_netstat_linux(sample("linux-netstat-rn-with-vmnet1-8"))
    assert find(routes, "0.0.0.0/0").gateway == A("178.63.23.65")
    assert find(routes, "192.168.97.0/24").interface == "vmnet1"
    assert find(routes, "192.168.122.0/24").interface == "vmnet8"
    assert len(routes) == 5


def test_proc_net_route():
    routes = parse_proc_net_route(sample("linux-proc-net-route"))
    assert find(routes, "172.17.0.0/16").interface == "docker0"
    assert find(routes, "172.18.0.0/16").interface == "docker_gwbridge"
    assert find(routes, "0.0.0.0/0").gateway == A("192.168.8.1")
    assert find(routes, "192.168.8.0/24").kind == LINK


def test_windows_netsh():
    routes = parse_netsh(sample("windows-netsh-show-route-with-vmnet8"))
    assert find(routes, "0.0.0.0/0").gateway == A("192.168.1.1")
    assert find(routes, "192.168.222.0/24", LINK).interface == "VMware Network Adapter VMnet8"


def test_every_table_sample_parses_and_sniffs():
    """Each routing-table sample gives routes; sniff() recognises its format."""
    tables = [p for p in fixture_files("routes") if "route-add" not in p.name
              and "route-n-add" not in p.name and "route-get" not in p.name]
    assert len(tables) >= 10 or not tables
    for path in tables:
        routes = sniff(path.read_text())
        assert routes, path.name
        assert all(r.destination.version == 4 for r in routes)


@pytest.mark.parametrize("part,expect", [
    ("route-n-add-net-172.17.0.0-16-success", "ok"),
    ("route-n-add-172.17.0.0-16-success", "ok"),
])
def test_route_success_transcripts(part, expect):
    text = sample(part)
    line = [ln for ln in text.splitlines() if ln.startswith("add net")][0]
    assert line.startswith("add net 172.17.0.0: gateway ")
    op = RouteOp("add", N("172.17.0.0/16"), A("192.168.99.100"))
    assert outcome(op, 0, line + "\n", "") == expect


def test_route_file_exists_transcript():
    text = sample("route-add-net-file-exists-and-success")
    assert "route: writing to routing socket: File exists" in text
    exists = [ln for ln in text.splitlines() if ln.endswith(": File exists") and ln.startswith("add net")]
    assert exists == ["add net 192.168.1.0: gateway 10.10.10.5: File exists"]
    op = RouteOp("add", N("192.168.1.0/24"), A("10.10.10.5"))
    assert outcome(op, 1, exists[0], "route: writing to routing socket: File exists") == "exists"
    assert outcome(op, 1, "delete net 192.168.1.0: not in table", "") == "absent"
    assert outcome(op, 1, "", "route: must be root to alter routing table") == "failed"


def test_ip_json_rejects_non_json():
    with pytest.raises(MalformedFile):
        parse_ip_json("default via 1.2.3.4")


@given(st.text(max_size=400))
def test_parsers_never_crash_on_garbage(text):
    for parser in (parse_netstat_darwin, parse_ip_text, parse_netstat_linux, parse_proc_net_route,
                   parse_netsh):
        parser(text)


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=32))
def test_short_form_round_trip(addr, plen):
    """What macOS netstat prints for a network expands back to the same network."""
    net = N(f"{addr}/{plen}", strict=False)
    octets = str(net.network_address).split(".")
    if plen == 32:
        text = str(net.network_address)
    else:
        while len(octets) > 1 and octets[-1] == "0":
            octets.pop()
        text = ".".join(octets)
        if 8 * len(octets) != plen:
            text += f"/{plen}"
    assert expand_destination(text) == net
