"""Helpers shared by the dhcp, fuzz and drill tests: the real ISC syntax check, an independent
re-implementation of docker-machine's reservation lookup, tree snapshots, a fake network tool."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import IN_CI, fixtures_dir

DHCPD = shutil.which("dhcpd") or "/usr/sbin/dhcpd"
PREFS = "Library/Preferences/VMware Fusion"
VMNET_CLI = "Applications/VMware Fusion.app/Contents/Library/vmnet-cli"
STATE = "Library/Application Support/labctl"
END_LINE = '####### VMNET DHCP Configuration. End of "DO NOT MODIFY SECTION" #######'


def need_dhcpd() -> str:
    if not os.access(DHCPD, os.X_OK):
        if IN_CI:
            pytest.fail(f"{DHCPD} is missing: CI must install isc-dhcp-server")
        pytest.skip("ISC dhcpd not installed (apt-get install isc-dhcp-server)")
    return DHCPD


def dhcpd_check(path: Path) -> subprocess.CompletedProcess:
    """`dhcpd -t -cf FILE`: parse the config and exit.  -t reads neither leases nor interfaces,
    so no -lf/-pf is needed (checked: the vmnet samples pass as they are)."""
    return subprocess.run([need_dhcpd(), "-t", "-4", "-q", "-cf", str(path)],
                          capture_output=True, text=True, timeout=20)


def assert_dhcpd_ok(path: Path) -> None:
    res = dhcpd_check(path)
    assert res.returncode == 0, f"dhcpd -t rejected {path}:\n{res.stdout}{res.stderr}"


# docker-machine's vmwarefusion driver (drivers/vmwarefusion/fusion_darwin.go, GetIP), re-written
# here from DESIGN.md section 2 and fixtures/docker-machine/NOTES-vmwarefusion-driver.md, on purpose
# without using labctl's own copy of the patterns.
_DM_HOST = re.compile(r"^host (.+?) {")
_DM_MAC = re.compile(r"^\s*hardware ethernet (.+?);$")
_DM_IP = re.compile(r"^\s*fixed-address (.+?);$")
_DM_END = re.compile(r"^}")


def docker_machine_ip(conf_files: list[Path], mac: str) -> str | None:
    """The IP docker-machine would report for ``mac``: the first file (lexical order) with a
    top-level host block whose hardware ethernet matches, case-insensitively."""
    for path in sorted(conf_files):
        in_block = False
        block_mac = block_ip = None
        for line in path.read_bytes().decode("utf-8", "replace").split("\n"):
            if not in_block:
                if _DM_HOST.match(line):
                    in_block, block_mac, block_ip = True, None, None
                continue
            m = _DM_MAC.match(line)
            if m:
                block_mac = m.group(1)
            m = _DM_IP.match(line)
            if m:
                block_ip = m.group(1)
            if _DM_END.match(line):
                in_block = False
                if block_mac is not None and block_mac.lower() == mac.lower():
                    return block_ip
    return None


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every regular file under root: bytes, mode and mtime (ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out[str(p.relative_to(root))] = (p.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def vmware_files(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """The snapshot restricted to VMware's files (labctl's own state dir excluded)."""
    return {k: v for k, v in snapshot(root).items() if not k.startswith(STATE)}


def make_fusion_root(root: Path, vmnet1: str = "vmnet1-dhcpd.conf.from-sirn",
                     vmnet8: str = "vmnet8-dhcpd.conf.from-sirn") -> Path:
    fx = fixtures_dir("fusion")

    def pick(part: str) -> Path:
        [p] = [q for q in fx.iterdir() if part in q.name]
        return p

    prefs = root / PREFS
    (prefs / "vmnet1").mkdir(parents=True)
    (prefs / "vmnet8").mkdir(parents=True)
    shutil.copy(pick("networking.clean"), prefs / "networking")
    shutil.copy(pick(vmnet1), prefs / "vmnet1/dhcpd.conf")
    shutil.copy(pick(vmnet8), prefs / "vmnet8/dhcpd.conf")
    for f in (prefs / "networking", prefs / "vmnet1/dhcpd.conf", prefs / "vmnet8/dhcpd.conf"):
        f.chmod(0o644)  # the samples are read-only; VMware's files are 0644
    return root


def install_fake_vmnet_cli(root: Path, sleep: float = 0.0) -> Path:
    """A trivial vmnet-cli that appends its argv to a log (no realistic output: see tests/standins)."""
    tool = root / VMNET_CLI
    tool.parent.mkdir(parents=True, exist_ok=True)
    log = root / "vmnet-cli.log"
    tool.write_text(f'#!/bin/sh\nsleep {sleep}\necho "$@" >> "{log}"\necho "ok $@"\n')
    tool.chmod(0o755)
    return log


def conf_path(root: Path, vmnet: int) -> Path:
    return root / PREFS / f"vmnet{vmnet}" / "dhcpd.conf"
