"""scripts/bootstrap on a machine that lacks the lab's Debian packages: it says which are
missing, then installs exactly those with apt-get (a stand-in here that logs its arguments)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

BOOTSTRAP = REPO / "scripts" / "bootstrap"


def run(tmp_path, present: list[str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    apt.chmod(0o755)
    for name in present:
        (bin_dir / name).symlink_to("/bin/true")
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "LABCTL_BOOTSTRAP_PATH": str(bin_dir)}
    r = subprocess.run([sys.executable, str(BOOTSTRAP), "--packages-only"], capture_output=True,
                       text=True, env=env, timeout=60)
    return r, log.read_text().splitlines() if log.exists() else []


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_installs_only_the_missing_packages_and_says_so_first(tmp_path):
    r, calls = run(tmp_path, ["ip", "openssl", "curl", "ps", "nsenter", "busybox", "ping",
                              "debootstrap", "ssh", "tmux", "less"])
    assert r.returncode == 0, r.stderr
    assert calls == ["update -qq", "install -y -qq --no-install-recommends "
                                   "docker.io isc-dhcp-client isc-dhcp-server"]
    assert "installing docker.io, isc-dhcp-client, isc-dhcp-server" in r.stderr
    assert r.stdout == ""  # --packages-only prints no interpreter


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_nothing_missing_installs_nothing(tmp_path):
    r, calls = run(tmp_path, ["ip", "dhcpd", "dhclient", "dockerd", "docker", "busybox", "openssl",
                              "curl", "ping", "nsenter", "ps", "debootstrap", "ssh", "tmux", "less"])
    assert r.returncode == 0 and calls == [] and r.stderr == ""


def test_prints_the_python_that_has_the_dependencies(tmp_path):
    """This Python imports labctl's dependencies: no .venv is made, it is the one printed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ip", "dhcpd", "dhclient", "dockerd", "docker", "busybox", "openssl", "curl", "ping",
                 "nsenter", "ps", "debootstrap", "ssh", "tmux", "less"):
        (bin_dir / name).symlink_to("/bin/true")
    r = subprocess.run([sys.executable, str(BOOTSTRAP)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "LABCTL_BOOTSTRAP_PATH": str(bin_dir)})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines() == [sys.executable]
