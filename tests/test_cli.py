"""The command line as users meet it: exit codes, one-line errors, --version, completion,
colour rules, help with examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, document, one_error


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
    assert bool(one_error(r.stderr)) and r.stderr.startswith("labctl: error:")
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


@pytest.mark.parametrize("cmd,name", [(["vmnet", "ls", "--json"], "vmnets"),
                                      (["dhcp", "ls", "--json"], "reservations"),
                                      (["doctor", "--list-checks", "--json"], "checks"),
                                      (["photon", "reset-password", "--photon", "4", "--format", "json"],
                                       "guide")])
def test_json_is_a_versioned_document_valid_against_the_shipped_schema(fusion_root, cmd, name):
    r = labctl(*cmd)
    assert r.returncode == 0, r.stderr
    data = document(r.stdout, name)  # an object, schema + schema_version, validated
    assert any(isinstance(v, list) and v for v in data.values())


def test_every_shipped_schema_is_valid_and_printed_by_labctl_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from labctl import documents

    r = labctl("schema")
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == list(documents.NAMES)
    shipped = {p.stem for p in documents.SCHEMAS.glob("*.json")}
    assert shipped == set(documents.NAMES)
    for name in documents.NAMES:
        r = labctl("schema", name)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        jsonschema.Draft202012Validator.check_schema(data)
        assert data["properties"]["schema"] == {"const": name}
        assert data["properties"]["schema_version"] == {"const": documents.SCHEMA_VERSION}
    r = labctl("schema", "nope")
    assert r.returncode == 2 and "no schema 'nope'" in r.stderr


def test_a_plan_as_json_matches_its_schema(fusion_root):
    """The plan document (labctl's Plan.as_dict) against the shipped schema: a real plan
    with a file edit and a command."""
    from labctl.documents import document as make
    from labctl.hypervisor.vmware import lab
    from labctl.paths import Paths

    paths = Paths.detect()
    plan, _ = lab.plan_reserve(paths, lab.ReservationRequest("lab", "00:50:56:2a:bb:cc", None, 1))
    data = document(json.dumps(make("plan", plan.as_dict())), "plan")
    assert data["changes"] and any(c["diff"] for c in data["changes"])


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
    assert bool(one_error(r.stderr))


@pytest.mark.parametrize("args", [["up", "a;b"],
                                  ["up", "lab", "--ip", "1.2.3"], ["down", "nope"],
                                  ["up", "--config", "/nonexistent/lab.toml"]])
def test_up_down_bad_input_exits_2(fusion_root, args):
    r = labctl(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("labctl: error:") and bool(one_error(r.stderr))


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
        assert bool(one_error(r.stderr)) and "Traceback" not in r.stderr


def test_missing_dhcpd_conf_says_how_vmware_writes_it(fusion_root):
    (fusion_root / "Library/Preferences/VMware Fusion/vmnet1/dhcpd.conf").unlink()
    r = labctl("dhcp", "ls", "--vmnet", "vmnet1")
    assert r.returncode == 3, r.stderr
    assert "vmnet1 dhcpd.conf not found" in r.stderr and "vmnet-cli' --configure" in r.stderr


@pytest.mark.parametrize("args,choices", [
    (["up", "lab", "--nic", "weird"], ("dedicated", "existing")),
    (["up", "lab", "--driver", "virtualbox"], ("vmwarefusion", "vmware")),
    (["photon", "reset-password", "--photon", "6"], ("1", "5")),
    (["console-help", "lab", "--format", "html"], ("text", "markdown", "json")),
])
def test_fixed_choices_are_refused_by_the_parser_naming_them(fusion_root, args, choices):
    """Refused before labctl does anything (no docker-machine, no file is read): exit 2."""
    r = labctl(*args, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stderr
    assert "Invalid value for" in r.stderr and all(f"'{c}'" in r.stderr for c in choices), r.stderr
    assert "Traceback" not in r.stderr


def test_help_lists_choices_placeholders_and_defaults():
    env = {"COLUMNS": "200"}
    up = labctl("up", "--help", env=env).stdout
    for text in ("--nic [dedicated|existing]", "--driver [vmwarefusion|vmware]", "--subnet CIDR",
                 "--vmnet vmnetN|auto", "--memory MB", "--disk MB", "--cpus N", "(default: 2048)",
                 "(default: dedicated)"):
        assert text in up.replace("<", "[").replace(">", "]"), (text, up)
    assert "<str>" not in labctl("dhcp", "reserve", "--help", env=env).stdout.split("Options:")[1]
    photon = labctl("photon", "reset-password", "--help", env=env).stdout
    assert "--photon [1|2|3|4|5]" in photon.replace("<", "[").replace(">", "]")
    assert "--format [text|markdown|json]" in photon.replace("<", "[").replace(">", "]")
    assert "[default: text]" in photon


def test_debug_is_accepted_after_the_subcommand(fusion_root):
    r = labctl("dhcp", "reserve", "lab;rm", "--mac", "00:50:56:2a:bb:cc", "--no-restart", "--debug")
    assert r.returncode == 2 and "Traceback" in r.stderr, r.stderr
    r = labctl("vmnet", "ls", "--debug", "--json")
    assert r.returncode == 0, r.stderr
    document(r.stdout, "vmnets")


def _complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    full = {**os.environ, "PYTHONPATH": str(REPO), "_LABCTL_COMPLETE": "complete_bash",
            "COMP_WORDS": words, "COMP_CWORD": cword, **(env or {})}
    r = subprocess.run([sys.executable, "-c", "from labctl.cli import main; main()"],
                       capture_output=True, text=True, timeout=60, env=full)
    return r.stdout.split()


def test_completion_offers_choices_and_recorded_machines(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"version": 1, "machines": {"lab": {}, "lab2": {}},
                                                  "routes": [{"destination": "172.17.0.0/16",
                                                              "gateway": "192.168.99.3",
                                                              "machine": "web"}]}))
    env = {"LABCTL_STATE_DIR": str(state), "LABCTL_ROOT": str(tmp_path), "LABCTL_PLATFORM": "linux"}
    assert set(_complete("labctl up --nic ", env)) == {"dedicated", "existing"}
    assert set(_complete("labctl up --driver vm", env)) == {"vmwarefusion", "vmware"}
    assert set(_complete("labctl doctor la", env)) == {"lab", "lab2"}
    assert set(_complete("labctl route ls ", env)) >= {"lab", "lab2", "web"}
    assert set(_complete("labctl schema do", env)) == {"doctor", "down"}
