"""The command line as users meet it: exit codes, one-line errors, --version, completion,
colour rules, help with examples."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def labctl(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True,
                          env=full, timeout=60, **kw)


def test_version():
    from labctl import __version__

    r = labctl("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"labctl {__version__}"


def test_help_lists_commands_with_examples():
    r = labctl("--help")
    assert r.returncode == 0
    for word in ("vmnet", "dhcp", "Examples"):
        assert word in r.stdout
    r = labctl("dhcp", "reserve", "--help")
    assert r.returncode == 0 and "Example: labctl dhcp reserve" in r.stdout


def test_usage_errors_exit_2():
    assert labctl("no-such-command").returncode == 2
    assert labctl("dhcp", "reserve").returncode == 2
    assert labctl("dhcp", "reserve", "x", "--bogus").returncode == 2


def test_labctl_errors_are_one_line_without_traceback(fusion_root):
    r = labctl("dhcp", "reserve", "lab;rm", "--mac", "00:50:56:2a:bb:cc", "--no-restart")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("labctl: error:")
    assert "Traceback" not in r.stderr
    r = labctl("--debug", "dhcp", "reserve", "lab;rm", "--mac", "00:50:56:2a:bb:cc", "--no-restart")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_missing_tool_is_a_precondition(fusion_root):
    # no vmnet-cli under LABCTL_ROOT: nothing is written, exit 3
    conf = fusion_root / "Library/Preferences/VMware Fusion/vmnet1/dhcpd.conf"
    before = conf.read_bytes()
    r = labctl("dhcp", "reserve", "lab", "--mac", "00:50:56:2a:bb:cc", "--vmnet", "vmnet1")
    assert r.returncode == 3, r.stderr
    assert conf.read_bytes() == before


def test_shell_completion_offers_commands():
    env = {"_LABCTL_COMPLETE": "complete_bash", "COMP_WORDS": "labctl dhcp re", "COMP_CWORD": "2"}
    r = subprocess.run([sys.executable, "-c", "from labctl.cli import main; main()"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO), **env})
    assert {"reserve", "release"} <= set(r.stdout.split()), r.stdout + r.stderr


def test_no_color_and_pipes_have_no_escapes(fusion_root):
    r = labctl("dhcp", "ls", env={"NO_COLOR": "1"})
    assert r.returncode == 0 and "\x1b[" not in r.stdout + r.stderr
    assert "vmnet1" in r.stdout


@pytest.mark.parametrize("cmd", [["vmnet", "ls", "--json"], ["dhcp", "ls", "--json"]])
def test_json_is_json(fusion_root, cmd):
    import json

    r = labctl(*cmd)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert isinstance(data, list) and data


def test_heavy_modules_stay_unloaded_for_help_and_ls(fusion_root):
    code = ("import sys; sys.argv=['labctl', *sys.argv[1:]]\n"
            "from labctl.cli import main\n"
            "import atexit\n"
            "atexit.register(lambda: print('LOADED', sorted(m for m in ('docker','jinja2','sh') "
            "if m in sys.modules), file=sys.stderr))\n"
            "main()\n")
    for args in (["--help"], ["vmnet", "ls", "--json"], ["dhcp", "ls", "--json"]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        assert "LOADED []" in r.stderr, (args, r.stderr)


def test_up_without_docker_machine_is_a_precondition(fusion_root):
    r = labctl("up", "lab", "--dry-run", env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("labctl: error: docker-machine is not installed")
    assert r.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [["up", "a;b"], ["up", "lab", "--nic", "weird"],
                                  ["up", "lab", "--ip", "1.2.3"], ["down", "nope"],
                                  ["up", "--config", "/nonexistent/lab.toml"]])
def test_up_down_bad_input_exits_2(fusion_root, args):
    r = labctl(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("labctl: error:") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("platform,fix", [
    ("darwin", "install VMware Fusion"),
    ("linux", "sudo vmware-networks --start"),
])
def test_missing_vmware_is_a_precondition_with_the_fix(tmp_path, platform, fix):
    """No VMware networking file under LABCTL_ROOT: VMware is not installed (or never ran)."""
    env = {"LABCTL_ROOT": str(tmp_path), "LABCTL_PLATFORM": platform,
           "LABCTL_STATE_DIR": str(tmp_path / "state")}
    for cmd in (["vmnet", "ls"], ["dhcp", "ls"],
                ["dhcp", "reserve", "lab", "--mac", "00:50:56:2a:bb:cc", "--dry-run"]):
        r = labctl(*cmd, env=env)
        assert r.returncode == 3, (cmd, r.stderr)
        assert "networking file not found" in r.stderr and fix in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_missing_dhcpd_conf_says_how_vmware_writes_it(fusion_root):
    (fusion_root / "Library/Preferences/VMware Fusion/vmnet1/dhcpd.conf").unlink()
    r = labctl("dhcp", "ls", "--vmnet", "vmnet1")
    assert r.returncode == 3, r.stderr
    assert "vmnet1 dhcpd.conf not found" in r.stderr and "vmnet-cli' --configure" in r.stderr
