"""Property tests: hostile names, MACs and IPs and mangled dhcpd.conf files only ever give clean
LabctlErrors (never another exception) and never reach the file; every file labctl writes for a
valid random name passes the real `dhcpd -t`."""

from __future__ import annotations

import contextlib
import ipaddress
import re

import pytest
from conftest import fixture_files
from dhcp_helpers import (
    STATE,
    assert_dhcpd_ok,
    conf_path,
    docker_machine_ip,
    make_fusion_root,
    vmware_files,
)
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from labctl.cli import app
from labctl.errors import LabctlError, MalformedFile
from labctl.hypervisor.vmware.dhcpd import NAME_RE, DhcpdConf, check_name, normalize_mac, validate_edit

SAMPLES = [p.read_bytes() for p in fixture_files("fusion", "dhcpd.conf")]
VMNET1 = next((p.read_bytes() for p in fixture_files("fusion", "vmnet1-dhcpd.conf")), b"")
ANSIBLE = next((p.read_bytes() for p in fixture_files("fusion", "with-ansible-host-reservation")), b"")

pytestmark = pytest.mark.skipif(not SAMPLES, reason="reference samples not found (../shared/fixtures)")

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLI_FUZZ = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE_CHARS = ';{}"\'\\ \t\n\r#,/$`()|&<>*?[]!\x00\x7f\u00e9\u200b\ufeff'
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE_CHARS) | st.characters(), max_size=80)
names = st.one_of(
    hostile_text,
    st.builds(lambda a, b, c: a + b + c, st.from_regex(NAME_RE, fullmatch=True),
              st.sampled_from(list(HOSTILE_CHARS)), st.text(max_size=5)),
    st.from_regex(NAME_RE, fullmatch=True),
)
hexpair = st.integers(0, 255).map(lambda o: f"{o:02x}")
macs = st.one_of(
    hostile_text,
    st.lists(hexpair, min_size=0, max_size=8).map(":".join),
    st.lists(hexpair, min_size=6, max_size=6).map(":".join),  # includes multicast, all-zero
    st.builds(lambda m, junk: m + junk, st.lists(hexpair, min_size=6, max_size=6).map(":".join),
              st.sampled_from(list(HOSTILE_CHARS))),
)
ips = st.one_of(
    st.none(),
    hostile_text,
    st.ip_addresses(v=4).map(str),
    st.integers(0, 255).map(lambda o: f"172.16.141.{o}"),
    st.integers(0, 255).map(lambda o: f"192.168.232.{o}"),
    st.ip_addresses(v=6).map(str),
)


def _valid_mac(mac: str) -> bool:
    try:
        normalize_mac(mac)
        return True
    except LabctlError:
        return False


# ---- the planner on the genuine samples ----------------------------------------------------------
@FUZZ
@given(sample=st.sampled_from(SAMPLES or [b""]), name=names, mac=macs, ip=ips)
@example(sample=VMNET1, name="lab;", mac="00:50:56:2a:bb:cc", ip=None)
@example(sample=VMNET1, name="lab", mac="00:50:56:2a:bb:cc", ip="172.16.141.10; deny")
@example(sample=ANSIBLE, name="wlc01", mac="00:50:56:2a:bb:cc", ip=None)
def test_planner_hostile_input_only_clean_errors(sample, name, mac, ip):
    conf = DhcpdConf.parse(sample)
    try:
        new_text, chosen = conf.plan_reserve(name, mac, ip)
    except LabctlError as exc:
        assert exc.exit_code == 2
        assert "\n" not in exc.message
        return
    # accepted: only then may it be written, and then it is exactly safe
    assert NAME_RE.fullmatch(name) and check_name(name) == name
    norm = normalize_mac(mac)
    assert new_text.startswith(conf.protected_text)
    added = new_text[len(conf.text):] if new_text.startswith(conf.text) else new_text
    for bad in ';{}"':
        assert bad not in name
    assert added.count("{") == added.count("}") == 1
    validate_edit(conf, new_text)
    assert DhcpdConf(new_text).docker_machine_lookup(norm) == chosen
    assert ipaddress.IPv4Address(chosen) in conf.subnet.network  # type: ignore[union-attr]


@FUZZ
@given(name=names)
def test_release_hostile_names(name):
    conf = DhcpdConf.parse(ANSIBLE or VMNET1)
    try:
        new_text = conf.plan_release(name)
    except LabctlError:
        return
    assert NAME_RE.fullmatch(name)
    assert new_text == conf.text  # nothing of ours to remove: no change


# ---- the CLI: hostile input never reaches the file -------------------------------------------------
@pytest.fixture
def cli_root(tmp_path, monkeypatch):
    root = make_fusion_root(tmp_path / "root", vmnet8="with-ansible-host-reservation")
    monkeypatch.setenv("LABCTL_ROOT", str(root))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    monkeypatch.delenv("LABCTL_STATE_DIR", raising=False)
    return root


def _backups(root):
    d = root / STATE / "backups"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@CLI_FUZZ
@given(name=names, mac=macs, ip=ips, vmnet=st.sampled_from(["vmnet1", "vmnet8"]))
def test_cli_hostile_input(cli_root, name, mac, ip, vmnet):
    assume("\x00" not in name + mac + (ip or ""))  # argv cannot carry NUL bytes
    before = vmware_files(cli_root)
    backups_before = _backups(cli_root)
    args = ["dhcp", "reserve", "--mac", mac, "--vmnet", vmnet, "--no-restart"]
    if ip is not None:
        args += ["--ip", ip]
    result = CliRunner().invoke(app, [*args, "--", name])
    if result.exit_code == 0:
        # accepted only for a valid name and MAC; undo so the next example starts clean
        assert NAME_RE.fullmatch(name) and _valid_mac(mac), (name, mac)
        after = vmware_files(cli_root)
        changed = [k for k in after if after[k][0] != before[k][0]]
        assert changed in ([], [f"Library/Preferences/VMware Fusion/{vmnet}/dhcpd.conf"])
        if changed:
            assert docker_machine_ip([conf_path(cli_root, int(vmnet[5:]))], normalize_mac(mac))
            r = CliRunner().invoke(app, ["dhcp", "release", "--vmnet", vmnet, "--no-restart", "--", name])
            assert r.exit_code == 0, r.exception
        assert {k: v[0] for k, v in vmware_files(cli_root).items()} == \
            {k: v[0] for k, v in before.items()}
        return
    exc = result.exception
    if isinstance(exc, SystemExit):  # a click usage error (e.g. an empty option value)
        assert result.exit_code == 2
    else:
        assert isinstance(exc, LabctlError), repr(exc)
        assert exc.exit_code == 2
    assert vmware_files(cli_root) == before
    assert _backups(cli_root) == backups_before  # nothing was even backed up


# ---- mangled files --------------------------------------------------------------------------------
@st.composite
def mangled(draw):
    data = bytearray(draw(st.sampled_from(SAMPLES or [b""])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "drop-brace", "add-brace", "insert", "delete",
                                   "drop-semicolon", "quote"]))
        pos = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[pos:]
        elif op == "drop-brace":
            braces = [i for i, b in enumerate(data) if b in b"{}"]
            if braces:
                del data[draw(st.sampled_from(braces))]
        elif op == "add-brace":
            data[pos:pos] = draw(st.sampled_from([b"{", b"}", b"{}", b"}{"]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 40))]
        elif op == "drop-semicolon":
            semis = [i for i, b in enumerate(data) if b == ord(";")]
            if semis:
                del data[draw(st.sampled_from(semis))]
        else:
            data[pos:pos] = b'"'
    return bytes(data)


def _exercise(data: bytes) -> None:
    try:
        conf = DhcpdConf.parse(data)
    except MalformedFile as exc:
        assert "\n" not in exc.message
        return
    assert conf.dump() == data
    _ = (conf.hosts, conf.subnet, conf.managed_blocks(), conf.docker_machine_lookup("00:50:56:2a:bb:cc"))
    for h in conf.hosts:
        h.as_dict()
    for ip in (None, "172.16.141.10", "192.168.232.20"):
        try:
            new_text, _ip = conf.plan_reserve("lab", "00:50:56:2a:bb:cc", ip)
        except LabctlError:
            continue
        validate_edit(conf, new_text)
        again = DhcpdConf(new_text)
        assert again.plan_release("lab") == conf.text  # release restores what was there
    with contextlib.suppress(LabctlError):
        conf.plan_release("vmnet8")


@FUZZ
@given(data=mangled())
def test_mangled_samples_parse_or_malformed(data):
    _exercise(data)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_parse_or_malformed(data):
    _exercise(data)


@FUZZ
@given(text=st.lists(st.sampled_from(list('host {};"#\n\tabc01.:-') +
                                     ["subnet ", "range ", "fixed-address ", "hardware ethernet ",
                                      'End of "DO NOT MODIFY SECTION"\n']), max_size=60).map("".join))
def test_structured_garbage_parse_or_malformed(text):
    _exercise(text.encode())


@CLI_FUZZ
@given(data=mangled())
def test_cli_on_mangled_file(cli_root, data):
    conf = conf_path(cli_root, 1)
    original = VMNET1
    conf.write_bytes(data)
    before = vmware_files(cli_root)
    result = CliRunner().invoke(app, ["dhcp", "reserve", "lab", "--mac", "00:50:56:2a:bb:cc",
                                      "--vmnet", "vmnet1", "--no-restart"])
    if result.exit_code != 0:
        assert isinstance(result.exception, LabctlError), repr(result.exception)
        assert result.exception.exit_code == 2
        assert vmware_files(cli_root) == before
    else:
        assert conf.read_bytes().startswith(data.rstrip(b"\r\n"))
    conf.write_bytes(original)


# ---- valid random names: the written file passes the real dhcpd -t --------------------------------
unicast_mac = st.lists(st.integers(0, 255), min_size=6, max_size=6).filter(
    lambda o: not o[0] & 1 and any(o)).map(lambda o: ":".join(f"{x:02x}" for x in o))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=st.lists(st.tuples(st.from_regex(NAME_RE, fullmatch=True), unicast_mac),
                        min_size=1, max_size=4, unique_by=(lambda t: t[0], lambda t: t[1])))
def test_valid_names_pass_dhcpd_t(tmp_path_factory, entries):
    assume(all(m.lower() not in ("00:50:56:c0:00:01", "00:50:56:c0:00:08") for _, m in entries))
    d = tmp_path_factory.mktemp("v")
    path = d / "dhcpd.conf"
    conf = DhcpdConf.parse(VMNET1)
    text = conf.text
    for name, mac in entries:
        c = DhcpdConf(text)
        new_text, ip = c.plan_reserve(name, mac, None)
        validate_edit(c, new_text)
        text = new_text
    path.write_bytes(text.encode())
    assert_dhcpd_ok(path)
    for _name, mac in entries:
        assert docker_machine_ip([path], mac) is not None
    for name, _ in reversed(entries):
        text = DhcpdConf(text).plan_release(name)
    assert text.encode() == VMNET1


def test_name_rule_matches_dhcpd_identifiers():
    """check_name accepts exactly what it documents (and rejects the classic breakers)."""
    for good in ["lab", "lab-1", "lab_1", "a.b.c", "1", "9lives", "x" * 63]:
        assert check_name(good) == good
    for bad in ["", "x" * 64, "a..b", "a.", ".a", "-a", "_a", "a b", "a;b", "a{", "a}", 'a"', "a\n"]:
        with pytest.raises(LabctlError):
            check_name(bad)
    assert re.fullmatch(r"[0-9a-f:]{17}", normalize_mac("00-50-56-2A-BB-CC"))
