"""`labctl dhcp reserve|release|ls` through the real CLI (typer's CliRunner and labctl's own
entry point in-process, plus real `python3 -m labctl` subprocesses), on copies of the genuine
vmnet dhcpd.conf samples under a tmp LABCTL_ROOT."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, fixtures_dir
from dhcp_helpers import (
    END_LINE,
    PREFS,
    STATE,
    assert_dhcpd_ok,
    conf_path,
    docker_machine_ip,
    install_fake_vmnet_cli,
    make_fusion_root,
    snapshot,
    vmware_files,
)
from typer.testing import CliRunner

from labctl.cli import app
from labctl.errors import LabctlError
from labctl.hypervisor.vmware.dhcpd import DhcpdConf
from tests.conftest import document, one_error

MAC = "00:50:56:2a:bb:cc"


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = make_fusion_root(tmp_path / "root")
    monkeypatch.setenv("LABCTL_ROOT", str(r))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    for var in ("LABCTL_STATE_DIR", "LABCTL_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    return r


def invoke(*args: str):
    """typer's CliRunner on labctl's app (in-process, fast)."""
    result = CliRunner().invoke(app, list(args))
    return result


def ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """labctl's real entry point in-process: exit code, stdout, stderr as a user sees them."""
    from labctl import cli

    monkeypatch.setattr(sys, "argv", ["labctl", *args])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def run_proc(root: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABCTL_ROOT": str(root), "LABCTL_PLATFORM": "darwin",
           "PYTHONPATH": str(REPO)}
    env.pop("LABCTL_STATE_DIR", None)
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(REPO))


def expected_block(name: str, mac: str, ip: str) -> bytes:
    return (f"\n# labctl: begin reservation {name}\nhost {name} {{\n\thardware ethernet {mac};\n"
            f"\tfixed-address {ip};\n}}\n# labctl: end reservation {name}\n").encode()


def all_confs(root: Path) -> list[Path]:
    return sorted((root / PREFS).glob("vmnet*/dhcpd.conf"))


# ---- reserve ----------------------------------------------------------------------------------
def test_reserve_appends_block_docker_machine_resolves(root):
    conf = conf_path(root, 1)
    before = conf.read_bytes()
    ok("dhcp", "reserve", "lab", "--mac", MAC.upper(), "--ip", "172.16.141.10", "--no-restart")
    after = conf.read_bytes()
    # appended after the End line, in exactly docker-machine's shape; nothing else changed
    assert after == before + expected_block("lab", MAC, "172.16.141.10")
    assert after.index(b"host lab {") > after.index(END_LINE.encode())
    assert DhcpdConf.parse(after).protected_text.encode() == before
    # docker-machine's lookup (labctl's copy and the test's independent one) finds it
    assert DhcpdConf.parse(after).docker_machine_lookup(MAC) == "172.16.141.10"
    assert docker_machine_ip(all_confs(root), MAC) == "172.16.141.10"
    assert docker_machine_ip(all_confs(root), MAC.upper()) == "172.16.141.10"
    assert_dhcpd_ok(conf)
    # the other vmnet was not touched
    assert conf_path(root, 8).read_bytes() == fixtures_dir("fusion").joinpath(
        "vmnet8-dhcpd.conf.from-sirn-vagrant-vmware-networking-logs").read_bytes()


def test_reserve_is_listed_as_managed(root):
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--no-restart")
    rows = document(ok("dhcp", "ls", "--json").stdout, "reservations")["reservations"]
    mine = [r for r in rows if r["name"] == "lab"]
    assert len(mine) == 1 and mine[0]["managed"] and mine[0]["vmnet"] == "vmnet1"
    assert {r["name"]: r["managed"] for r in rows} == {"vmnet1": False, "vmnet8": False, "lab": False} \
        | {"lab": True}


def test_reserve_twice_changes_nothing_and_restarts_nothing(root):
    log = install_fake_vmnet_cli(root)
    conf = conf_path(root, 1)
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--ip", "auto")
    assert log.read_text().split("\n") == ["--stop", "--start", ""]  # one restart after a change
    first = conf.stat()
    data = conf.read_bytes()
    backups = sorted((root / STATE / "backups").iterdir())
    for args in (("--ip", "auto"), ("--ip", "172.16.141.3"), ()):
        result = ok("dhcp", "reserve", "lab", "--mac", MAC.replace(":", "-").upper(), *args)
        assert "nothing to do" in result.output
        assert conf.read_bytes() == data
        assert conf.stat().st_mtime_ns == first.st_mtime_ns
        assert conf.stat().st_ino == first.st_ino  # not even rewritten with the same bytes
    assert log.read_text().split("\n") == ["--stop", "--start", ""]  # still exactly one restart
    assert sorted((root / STATE / "backups").iterdir()) == backups
    # a dry run of the same thing plans no change and no restart
    result = ok("dhcp", "reserve", "lab", "--mac", MAC, "--dry-run")
    assert "nothing to do" in result.output and "--stop" not in result.output


def test_restart_backs_up_leases_first(root):
    log = install_fake_vmnet_cli(root)
    lease = root / "var/db/vmware/vmnet-dhcpd-vmnet1.leases"
    lease.parent.mkdir(parents=True)
    lease.write_bytes(b"lease 172.16.141.130 {\n}\n")
    ok("dhcp", "reserve", "lab", "--mac", MAC)
    saved = [p for p in (root / STATE / "backups").iterdir() if "vmnet-dhcpd-vmnet1.leases." in p.name]
    assert len(saved) == 1 and saved[0].read_bytes() == lease.read_bytes()
    assert log.read_text() == "--stop\n--start\n"


@pytest.mark.parametrize("vmnet1", ["vmnet1-dhcpd.conf.from-sirn", "vmnet8-dhcpd.conf.unmodified",
                                    "with-ansible-host-reservation"])
def test_release_after_reserve_restores_bytes(tmp_path, monkeypatch, vmnet1):
    root = make_fusion_root(tmp_path / "r", vmnet1=vmnet1)
    monkeypatch.setenv("LABCTL_ROOT", str(root))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    conf = conf_path(root, 1)
    original = conf.read_bytes()
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", "vmnet1", "--no-restart")
    assert conf.read_bytes() != original
    assert_dhcpd_ok(conf)
    ok("dhcp", "release", "lab", "--vmnet", "vmnet1", "--no-restart")
    assert conf.read_bytes() == original
    # releasing again is a no-op
    result = ok("dhcp", "release", "lab", "--vmnet", "vmnet1", "--no-restart")
    assert "nothing to do" in result.output
    assert conf.read_bytes() == original


def test_release_restores_file_without_final_newline(root):
    conf = conf_path(root, 1)
    original = conf.read_bytes().rstrip(b"\n") + b"\n# user comment, no newline at the end"
    conf.write_bytes(original)
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--no-restart")
    data = conf.read_bytes()
    assert data.startswith(original)
    assert DhcpdConf.parse(data).docker_machine_lookup(MAC) is not None
    assert docker_machine_ip([conf], MAC) is not None
    assert_dhcpd_ok(conf)
    ok("dhcp", "release", "lab", "--no-restart")
    assert conf.read_bytes() == original


def test_file_ending_at_end_line_without_newline(root):
    conf = conf_path(root, 1)
    original = conf.read_bytes().rstrip(b"\n")
    assert original.endswith(END_LINE.encode())
    conf.write_bytes(original)
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--no-restart")
    data = conf.read_bytes()
    assert data.startswith(original + b"\n")  # the End line only gains its newline
    assert docker_machine_ip([conf], MAC) is not None
    assert_dhcpd_ok(conf)
    ok("dhcp", "release", "lab", "--no-restart")
    assert conf.read_bytes() == original


NAMES = ("alpha", "beta", "gamma")


@pytest.mark.parametrize("order", list(itertools.permutations(NAMES)), ids="-".join)
def test_several_blocks_released_in_any_order(root, order):
    conf = conf_path(root, 1)
    original = conf.read_bytes()
    states = [original]
    for i, name in enumerate(NAMES):
        ok("dhcp", "reserve", name, "--mac", f"00:50:56:00:00:0{i + 1}", "--no-restart")
        states.append(conf.read_bytes())
    assert_dhcpd_ok(conf)
    final = DhcpdConf.parse(conf.read_bytes())
    ips = [final.host(n).ip for n in NAMES]  # type: ignore[union-attr]
    assert len(set(ips)) == 3
    for i in range(len(NAMES)):
        assert docker_machine_ip([conf], f"00:50:56:00:00:0{i + 1}") == ips[i]
    remaining = list(NAMES)
    for name in order:
        ok("dhcp", "release", name, "--no-restart")
        remaining.remove(name)
        now = DhcpdConf.parse(conf.read_bytes())
        assert sorted(h.name for h in now.hosts if h.managed) == sorted(remaining)
        assert now.protected_text.encode() == original
        assert_dhcpd_ok(conf)
        # releasing a prefix-suffix in reserve order gives back exactly an earlier state
        if order[: len(NAMES) - len(remaining)] == tuple(reversed(NAMES))[: len(NAMES) - len(remaining)]:
            assert conf.read_bytes() == states[len(remaining)]
    assert conf.read_bytes() == original


def test_change_ip_of_managed_reservation_then_release(root):
    conf = conf_path(root, 1)
    original = conf.read_bytes()
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--ip", "172.16.141.10", "--no-restart")
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--ip", "172.16.141.11", "--no-restart")
    assert docker_machine_ip([conf], MAC) == "172.16.141.11"
    assert conf.read_bytes().count(b"host lab {") == 1
    ok("dhcp", "release", "lab", "--no-restart")
    assert conf.read_bytes() == original


# ---- --ip auto ----------------------------------------------------------------------------------
SMALL_CONF = f"""# a small vmnet for the test
###### VMNET DHCP Configuration. Start of "DO NOT MODIFY SECTION" #####
subnet 192.168.99.0 netmask 255.255.255.240 {{
\trange 192.168.99.9 192.168.99.14;
\toption routers 192.168.99.2;
}}
host vmnet2 {{
\thardware ethernet 00:50:56:C0:00:02;
\tfixed-address 192.168.99.1;
}}
{END_LINE}
host theirs {{
\thardware ethernet 00:0c:29:00:00:01;
\tfixed-address 192.168.99.4;
}}
"""


def test_ip_auto_avoids_reserved_addresses(root):
    prefs = root / PREFS
    (prefs / "vmnet2").mkdir()
    conf = prefs / "vmnet2/dhcpd.conf"
    conf.write_text(SMALL_CONF)
    assert_dhcpd_ok(conf)
    got = []
    for i in range(4):
        ok("dhcp", "reserve", f"m{i}", "--mac", f"00:50:56:00:01:0{i}", "--vmnet", "vmnet2",
           "--no-restart")
        got.append(DhcpdConf.parse(conf.read_bytes()).host(f"m{i}").ip)  # type: ignore[union-attr]
    # /28: .0 network, .15 broadcast, .1 host, .2 NAT gateway, .4 taken, .9-.14 dynamic range
    assert got == ["192.168.99.3", "192.168.99.5", "192.168.99.6", "192.168.99.7"]
    ok("dhcp", "reserve", "m4", "--mac", "00:50:56:00:01:04", "--vmnet", "vmnet2", "--no-restart")
    assert DhcpdConf.parse(conf.read_bytes()).host("m4").ip == "192.168.99.8"  # type: ignore[union-attr]
    assert_dhcpd_ok(conf)
    full = conf.read_bytes()
    result = invoke("dhcp", "reserve", "m5", "--mac", "00:50:56:00:01:05", "--vmnet", "vmnet2",
                    "--no-restart")
    assert isinstance(result.exception, LabctlError) and result.exception.exit_code == 2
    assert "no free address" in str(result.exception)
    assert conf.read_bytes() == full


def test_ip_auto_many_on_vmnet8(root):
    conf = conf_path(root, 8)
    net = ipaddress.IPv4Network("172.16.99.0/24")
    seen = set()
    for i in range(12):
        ok("dhcp", "reserve", f"n{i}", "--mac", f"00:50:56:00:02:{i:02x}", "--vmnet", "vmnet8",
           "--no-restart")
        ip = ipaddress.IPv4Address(DhcpdConf.parse(conf.read_bytes()).host(f"n{i}").ip)  # type: ignore
        offset = int(ip) - int(net.network_address)
        assert ip in net and 3 <= offset < 128, ip  # not .0/.1/.2, not the .128-.254 range
        seen.add(ip)
    assert len(seen) == 12
    assert_dhcpd_ok(conf)


# ---- clashes with blocks labctl did not write -------------------------------------------------------
@pytest.fixture
def ansible_root(tmp_path, monkeypatch):
    root = make_fusion_root(tmp_path / "r", vmnet8="with-ansible-host-reservation")
    monkeypatch.setenv("LABCTL_ROOT", str(root))
    monkeypatch.setenv("LABCTL_PLATFORM", "darwin")
    return root


@pytest.mark.parametrize("args, what, block", [
    (["wlc01", "--mac", MAC], "wlc01", "wlc01"),
    (["lab", "--mac", "00:0C:29:0D:EC:56"], "00:0c:29:0d:ec:56", "wlc01"),
    (["lab", "--mac", MAC, "--ip", "192.168.232.127"], "192.168.232.127", "wlc01"),
    (["vmnet8", "--mac", MAC], "vmnet8", "vmnet8"),
    (["lab", "--mac", "00:50:56:c0:00:08"], "00:50:56:c0:00:08", "vmnet8"),
    (["wlc01", "--mac", "00:0c:29:0d:ec:56", "--ip", "192.168.232.127"], "wlc01", "wlc01"),
])
def test_clash_with_unmanaged_block(ansible_root, monkeypatch, capsys, args, what, block):
    before = snapshot(ansible_root)
    code, out, err = run_main(monkeypatch, capsys, "dhcp", "reserve", *args, "--vmnet", "vmnet8",
                              "--no-restart")
    assert code == 2
    lines = [one_error(err)]
    assert what in lines[0] and f"'{block}'" in lines[0]  # names the block it clashes with
    assert "Traceback" not in err + out
    assert vmware_files(ansible_root) == {k: v for k, v in before.items() if not k.startswith(STATE)}


def test_release_refuses_unmanaged_block(ansible_root, monkeypatch, capsys):
    before = vmware_files(ansible_root)
    code, _, err = run_main(monkeypatch, capsys, "dhcp", "release", "wlc01", "--vmnet", "vmnet8",
                            "--no-restart")
    assert code == 2 and "wlc01" in err and bool(one_error(err))
    assert vmware_files(ansible_root) == before


def test_reserve_next_to_unmanaged_block(ansible_root):
    conf = conf_path(ansible_root, 8)
    original = conf.read_bytes()
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", "vmnet8", "--no-restart")
    data = conf.read_bytes()
    assert data.startswith(original)
    assert docker_machine_ip([conf], MAC) is not None
    assert docker_machine_ip([conf], "00:0c:29:0d:ec:56") == "192.168.232.127"
    assert_dhcpd_ok(conf)
    ok("dhcp", "release", "lab", "--vmnet", "vmnet8", "--no-restart")
    assert conf.read_bytes() == original


# ---- invalid input: one line, exit 2, nothing changed --------------------------------------------
BAD_NAMES = ["a;b", "a{", "}", "lab}", 'a"b', "a'b", "a b", "a\nb", "a\tb", "", " ", "-lab", ".lab",
             "lab.", "a..b", "x" * 64, "lab\r", "lab\n", "lab#x", "läb", "a/b", "a\\b", "a,b"]
BAD_MACS = ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "03:50:56:2a:bb:cc", "00:50:56:2a:bb",
            "00:50:56:2a:bb:cc:dd", "zz:50:56:2a:bb:cc", "", "00:50:56:2a:bb:cc;",
            "00:50-56:2a:bb:cc", "0050.562a.bbcc", "00:00:00:00:00:00", "00:50:56:2a:bb:c",
            "00:50:56:2a:bb:cc\n;", "; rm -rf /"]
BAD_IPS = ["10.0.0.5", "172.16.141.0", "172.16.141.255", "172.16.141.1", "172.16.141.2",
           "172.16.141.128", "172.16.141.200", "172.16.141.254", "1.2.3", "172.16.141.999",
           "; evil", "", "172.16.141.10/24", "::1", "172.16.142.10"]


def bad_cases():
    for n in BAD_NAMES:  # after "--", as a user passes a name starting with "-"
        yield pytest.param(["dhcp", "reserve", "--mac", MAC, "--no-restart", "--", n], id=f"name={n!r}")
        yield pytest.param(["dhcp", "release", "--no-restart", "--", n], id=f"release-name={n!r}")
    for m in BAD_MACS:
        yield pytest.param(["dhcp", "reserve", "lab", "--mac", m, "--no-restart"], id=f"mac={m!r}")
    for ip in BAD_IPS:
        yield pytest.param(["dhcp", "reserve", "lab", "--mac", MAC, "--ip", ip, "--no-restart"],
                           id=f"ip={ip!r}")
    for v in ["vmnet99", "vmnetx", "../vmnet1", "vmnet1;"]:
        yield pytest.param(["dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", v, "--no-restart"],
                           id=f"vmnet={v!r}")


@pytest.mark.parametrize("argv", list(bad_cases()))
def test_invalid_input_exit_2_one_line_nothing_changed(root, monkeypatch, capsys, argv):
    before = snapshot(root)
    code, out, err = run_main(monkeypatch, capsys, *argv)
    assert code == 2, (out, err)
    assert one_error(err)
    assert "Traceback" not in err + out and "internal error" not in err
    after = snapshot(root)
    assert {k: v for k, v in after.items() if not k.startswith(STATE)} == \
        {k: v for k, v in before.items() if not k.startswith(STATE)}
    assert not any(k.startswith(STATE + "/backups") for k in after)


# ---- malformed files -------------------------------------------------------------------------
def _drop_first(data: bytes, what: bytes) -> bytes:
    i = data.index(what)
    return data[:i] + data[i + len(what):]


MANGLERS = {
    "missing-end-line": lambda d: d.replace(END_LINE.encode() + b"\n", b""),
    "unbalanced-close-missing": lambda d: _drop_first(d, b"}\n"),
    "extra-close": lambda d: d + b"}\n",
    "missing-semicolon-before-close": lambda d: d.replace(b'"";\n}', b'""\n}'),
    "brace-in-comment-only": lambda d: d.replace(b"subnet 172.16.141.0 netmask 255.255.255.0 {",
                                                 b"subnet 172.16.141.0 netmask 255.255.255.0 # {"),
    "unterminated-string": lambda d: d.replace(b'option domain-name "";', b'option domain-name ";'),
    "no-subnet": lambda d: re.sub(rb"subnet [^{]*\{[^}]*\}\n", b"", d),
    "empty": lambda d: b"",
}


@pytest.mark.parametrize("mangle", list(MANGLERS), ids=list(MANGLERS))
@pytest.mark.parametrize("command", [["reserve", "lab", "--mac", MAC], ["release", "lab"]],
                         ids=["reserve", "release"])
def test_malformed_file_exit_2_unchanged(root, monkeypatch, capsys, mangle, command):
    conf = conf_path(root, 1)
    if command[0] == "release":  # something to release, so only the mangling stops it
        ok("dhcp", "reserve", "lab", "--mac", MAC, "--no-restart")
    conf.write_bytes(MANGLERS[mangle](conf.read_bytes()))
    before = vmware_files(root)
    code, out, err = run_main(monkeypatch, capsys, "dhcp", *command, "--vmnet", "vmnet1",
                              "--no-restart")
    if mangle == "no-subnet" and command[0] == "release":
        assert code == 0  # removing labctl's own block needs no subnet
        return
    assert code == 2, (out, err)
    assert one_error(err)
    assert "Traceback" not in err
    assert vmware_files(root) == before


def test_missing_dhcpd_conf(root, monkeypatch, capsys):
    conf_path(root, 1).unlink()
    before = snapshot(root)
    code, _, err = run_main(monkeypatch, capsys, "dhcp", "reserve", "lab", "--mac", MAC,
                            "--vmnet", "vmnet1", "--no-restart")
    # VMware writes the file when its networking starts: a missing precondition (exit 3)
    assert code == 3 and "not found" in err and bool(one_error(err))
    assert "--configure" in err
    assert not conf_path(root, 1).exists()
    assert vmware_files(root) == {k: v for k, v in before.items() if not k.startswith(STATE)}


def test_missing_restart_tool_fails_before_writing(root, monkeypatch, capsys):
    """Preflight: without vmnet-cli a restart cannot run, so nothing may be written first."""
    before = vmware_files(root)
    code, _, err = run_main(monkeypatch, capsys, "dhcp", "reserve", "lab", "--mac", MAC)
    assert code == 3, err
    assert "vmnet-cli" in err and bool(one_error(err))
    assert vmware_files(root) == before


# ---- dry run, backups, modes ---------------------------------------------------------------------
def test_dry_run_prints_diff_and_commands_changes_nothing(root):
    install_fake_vmnet_cli(root)
    before = snapshot(root)
    result = ok("dhcp", "reserve", "lab", "--mac", MAC, "--ip", "172.16.141.10", "--dry-run")
    out = result.stdout
    assert "+host lab {" in out and "+\tfixed-address 172.16.141.10;" in out
    assert "--- " in out and "+++ " in out
    assert "vmnet-cli' --stop" in out and "vmnet-cli' --start" in out
    assert snapshot(root) == before
    assert not (root / "vmnet-cli.log").exists()
    # release dry run after a real reserve
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--ip", "172.16.141.10")
    mid = snapshot(root)
    result = ok("dhcp", "release", "lab", "--dry-run")
    assert "-host lab {" in result.stdout and "--stop" in result.stdout
    assert snapshot(root) == mid


def test_backup_kept_after_write(root):
    conf = conf_path(root, 1)
    original = conf.read_bytes()
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--no-restart")
    backups = sorted((root / STATE / "backups").iterdir())
    assert len(backups) == 1
    assert re.search(r"dhcpd\.conf\.\d{8}T\d{6}\.\d{6}Z$", backups[0].name), backups[0].name
    assert backups[0].read_bytes() == original
    ok("dhcp", "release", "lab", "--no-restart")
    backups = sorted((root / STATE / "backups").iterdir())
    assert len(backups) == 2 and backups[1].read_bytes() != original


def test_written_file_keeps_mode_and_owner(root):
    conf = conf_path(root, 1)
    conf.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(conf, 4321, 4322)
    ino = conf.stat().st_ino
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--no-restart")
    st = conf.stat()
    assert st.st_ino != ino  # replaced by rename, not rewritten in place
    assert st.st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4322)
    leftovers = [p.name for p in conf.parent.iterdir() if p.name != "dhcpd.conf"]
    assert leftovers == []  # no temp files left behind


# ---- Workstation layout -------------------------------------------------------------------------
def test_workstation_layout(tmp_path, monkeypatch):
    fx = fixtures_dir("fusion")
    root = tmp_path / "ws"
    conf = root / "etc/vmware/vmnet1/dhcpd/dhcpd.conf"
    conf.parent.mkdir(parents=True)
    (root / "etc/vmware/networking").write_bytes(
        fixtures_dir("workstation").joinpath(
            "etc-vmware-networking.bridge-mappings.from-unidentified-nixos-config-index-id-23136355457"
            ".nix-string-deindented").read_bytes())
    text = fx.joinpath("vmnet1-dhcpd.conf.from-sirn-vagrant-vmware-networking-logs").read_text()
    conf.write_text(text.replace("172.16.141.", "192.168.5."))
    tool = root / "usr/bin/vmware-networks"
    tool.parent.mkdir(parents=True)
    log = root / "tool.log"
    tool.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    tool.chmod(0o755)
    monkeypatch.setenv("LABCTL_ROOT", str(root))
    monkeypatch.setenv("LABCTL_PLATFORM", "linux")
    original = conf.read_bytes()
    ok("dhcp", "reserve", "lab", "--mac", MAC)
    assert docker_machine_ip([conf], MAC) == "192.168.5.3"
    assert_dhcpd_ok(conf)
    assert log.read_text() == "--stop\n--start\n"
    ok("dhcp", "release", "lab", "--no-restart")
    assert conf.read_bytes() == original


# ---- real subprocesses ----------------------------------------------------------------------------
def test_subprocess_reserve_release_round_trip(tmp_path):
    root = make_fusion_root(tmp_path / "p")
    conf = conf_path(root, 1)
    original = conf.read_bytes()
    res = run_proc(root, "dhcp", "reserve", "lab", "--mac", MAC, "--ip", "auto", "--no-restart")
    assert res.returncode == 0, res.stderr
    assert "reserved 172.16.141.3 for lab" in res.stderr
    assert "vmnet-cli" in res.stderr  # tells what to run instead of restarting
    assert docker_machine_ip(all_confs(root), MAC) == "172.16.141.3"
    assert_dhcpd_ok(conf)
    res = run_proc(root, "dhcp", "reserve", "lab", "--mac", MAC, "--no-restart")
    assert res.returncode == 0 and "nothing to do" in res.stderr
    res = run_proc(root, "dhcp", "release", "lab", "--no-restart")
    assert res.returncode == 0, res.stderr
    assert conf.read_bytes() == original


@pytest.mark.parametrize("argv, code", [
    (["dhcp", "reserve", "bad;name", "--mac", MAC], 2),
    (["dhcp", "reserve", "lab", "--mac", "01:00:5e:00:00:01"], 2),
    (["dhcp", "reserve", "lab", "--mac", MAC, "--ip", "10.9.9.9"], 2),
    (["dhcp", "reserve", "wlc01", "--mac", MAC, "--vmnet", "vmnet8"], 2),
])
def test_subprocess_errors_one_line(tmp_path, argv, code):
    root = make_fusion_root(tmp_path / "p", vmnet8="with-ansible-host-reservation")
    before = vmware_files(root)
    res = run_proc(root, *argv, "--no-restart")
    assert res.returncode == code, res.stderr
    assert one_error(res.stderr)
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert vmware_files(root) == before


def test_same_mac_on_two_vmnets_is_refused(root, monkeypatch, capsys):
    """docker-machine takes the first vmnet*/dhcpd.conf (lexical order) with a reservation for
    the MAC, so a second reservation on another vmnet would shadow or be shadowed."""
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", "vmnet8", "--no-restart")
    before = vmware_files(root)
    code, _, err = run_main(monkeypatch, capsys, "dhcp", "reserve", "lab2", "--mac", MAC.upper(),
                            "--vmnet", "vmnet1", "--no-restart")
    assert code == 2 and "vmnet8" in err and "'lab'" in err and bool(one_error(err))
    assert "labctl dhcp release lab --vmnet vmnet8" in err
    assert vmware_files(root) == before
    # once released there, it can move
    ok("dhcp", "release", "lab", "--vmnet", "vmnet8", "--no-restart")
    ok("dhcp", "reserve", "lab", "--mac", MAC, "--vmnet", "vmnet1", "--no-restart")
    assert docker_machine_ip(all_confs(root), MAC) == "172.16.141.3"
