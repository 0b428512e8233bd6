"""Console recovery guides (issue 6): Photon root reset, CoreOS/Flatcar, boot2docker.

The guides render from the templates (also from an installed wheel, see the last test); VMs
resolve from real .vmx samples and the real `vmrun list` sample in ../shared/fixtures, with a
`vmrun` stand-in at $LABCTL_ROOT/usr/bin/vmrun that prints what the real one prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import REPO, fixture_files, fixtures_dir

from labctl import guides
from labctl.errors import CommandFailed, InvalidInput, MalformedFile, PreconditionMissing
from labctl.hypervisor.vmware import vmrun
from labctl.hypervisor.vmware.vmx import Vmx
from labctl.paths import Paths
from tests.conftest import document, one_error

VMRUN_LIST = "fusion-vmrun-list"


def vmrun_list_sample() -> Path:
    fixtures_dir("tools")
    found = fixture_files("tools", VMRUN_LIST)
    if not found:
        pytest.skip("no vmrun list sample in fixtures/tools")
    return found[0]


def vmx_sample(contains: str) -> Path:
    fixtures_dir("vmx")
    found = fixture_files("vmx", contains)
    assert found, f"no vmx sample containing {contains!r}"
    return found[0]


def photon_steps(version: int) -> list[dict]:
    guide = guides.photon_guide(Paths(platform="linux", root=Path("/")), None, version)
    return document(guides.render(guide, "json"), "guide")["steps"]


def everything(steps: list[dict]) -> str:
    return "\n".join(s["do"] + "\n" + s["expect"] + "\n" + s["if_not"] for s in steps)


# ---- vmrun list -------------------------------------------------------------------------------
def test_vmrun_list_sample_paths_keep_spaces_and_non_ascii():
    text = vmrun_list_sample().read_text(encoding="utf-8")
    paths = vmrun.parse_list(text)
    assert paths == [
        "/Users/general/Virtual Machines.localized/CentOS 7 64 位.vmwarevm/CentOS 7 64 位.vmx",
        "/Users/general/Virtual Machines.localized/kw01/kw01.vmx",
    ]
    assert int(text.splitlines()[0].rsplit(":", 1)[1]) == len(paths)


@pytest.mark.parametrize("text, expected", [
    ("Total running VMs: 0\n", []),
    ("\nTotal running VMs: 1\r\n/tmp/a b/c.vmx\r\n\n", ["/tmp/a b/c.vmx"]),
])
def test_vmrun_list_edge_cases(text, expected):
    assert vmrun.parse_list(text) == expected


@pytest.mark.parametrize("text", ["", "Error: The operation is not supported\n", "/tmp/x.vmx\n"])
def test_vmrun_list_rejects_other_output(text):
    with pytest.raises(CommandFailed):
        vmrun.parse_list(text)


def test_start_command_is_vmrun_start_vmx_gui(tmp_path):
    paths = Paths(platform="linux", root=tmp_path)
    cmd = vmrun.start_command(paths, "/vms/My VM/x.vmx")
    assert cmd.argv == [str(tmp_path / "usr/bin/vmrun"), "start", "/vms/My VM/x.vmx", "gui"]
    assert not cmd.sudo


# ---- the Photon variants ----------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_photon_guide_has_every_required_step(version):
    steps = photon_steps(version)
    assert [s["n"] for s in steps] == list(range(1, len(steps) + 1))
    for s in steps:
        assert set(s) == {"n", "do", "expect", "if_not"}
        assert s["do"] and s["expect"] and s["if_not"]
    text = everything(steps)
    for needle in ["click inside the console", "press `e`", "`linux`", "`rw init=/bin/bash`",
                   "F10", "Ctrl+X", "`passwd`", "`sync`", "`umount /`", "`reboot -f`",
                   "plain `reboot`", "`chage -l root`", "`chage -M 99999 root`",
                   "`chage -I -1 -m 0 -M 99999 -E -1 root`", "Authentication token lock busy",
                   "`mount -o remount,rw /`", "flashed by", "bios.bootDelay"]:
        assert needle in text, f"Photon {version}: {needle!r} missing"
    # the order a person follows
    order = ["`rw init=/bin/bash`", "`passwd`", "`chage -l root`", "`sync`", "`reboot -f`"]
    positions = [text.index(n) for n in order]
    assert positions == sorted(positions)


def test_photon_unlock_step_differs_exactly_by_version():
    by_version = {v: photon_steps(v) for v in (1, 2, 3, 4, 5)}
    tally = "`pam_tally2 --reset --user root`"
    faillock = "`faillock --reset --user root`"
    for v, steps in by_version.items():
        does = [s["do"] for s in steps]
        assert sum(tally in d for d in does) == (1 if v == 3 else 0), v
        assert sum(faillock in d for d in does) == (1 if v in (4, 5) else 0), v
    # apart from that one step, every version gets the same steps
    base = by_version[1]
    assert by_version[2] == base
    for v in (3, 4, 5):
        rest = [s for s in by_version[v] if tally not in s["do"] and faillock not in s["do"]]
        assert len(rest) == len(by_version[v]) - 1
        assert [(s["do"], s["expect"], s["if_not"]) for s in rest] == \
               [(s["do"], s["expect"], s["if_not"]) for s in base]
    # the unlock step comes after passwd and before the expiry check
    steps3 = [s["do"] for s in by_version[3]]
    i = next(i for i, d in enumerate(steps3) if tally in d)
    assert "`passwd`" in steps3[i - 1] and "`chage -l root`" in steps3[i + 1]


def test_photon_text_and_markdown_formats():
    guide = guides.photon_guide(Paths(platform="darwin", root=Path("/")), None, 4)
    text = guides.render(guide, "text")
    assert text.startswith("Reset the root password of Photon OS 4\n=====")
    assert "\n 1. " in text and "\n10. " in text
    assert "You should see:" in text and "If not:" in text
    assert "Fn+F10" in text and "VMware Fusion" in text  # the Mac wording
    # a command is never broken across lines
    assert "`rw init=/bin/bash`" in text and "`chage -I -1 -m 0 -M 99999 -E -1 root`" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    md = guides.render(guide, "markdown")
    assert md.startswith("### Reset the root password of Photon OS 4")
    assert "1. Open the console" in md and "   - **Expect:** " in md and "   - **If not:** " in md
    assert "\n10. " in md and "    - **Expect:**" in md  # two-digit items indent their bullets more


def test_guide_parser_rejects_incomplete_steps():
    with pytest.raises(MalformedFile):
        guides.parse_guide("title: t\n@step\ndo: x\nexpect: y\n", "t")
    with pytest.raises(MalformedFile):
        guides.parse_guide("title: t\nstray text\n", "t")
    g = guides.parse_guide("title: t\nnote: n\n@step\ndo: a\n  b\nexpect: c\nif_not: d\n", "t")
    assert g.steps[0].do == "a b" and g.notes == ["n"]


# ---- what the .vmx tells ----------------------------------------------------------------------
def make_vmx(path: Path, **entries: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ['.encoding = "UTF-8"', 'config.version = "8"']
    lines += [f'{k.replace("__", ".")} = "{v}"' for k, v in entries.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def info(path: Path, source: str = "path") -> guides.VmInfo:
    return guides._info(path, source, Paths(platform="linux", root=Path("/")))


@pytest.mark.parametrize("name, version", [
    ("photon-hw15-5.0-dde71ec57.x86_64", 5),
    ("Photon OS 4.0", 4),
    ("photon-ova-4.0-ca7c9e9330", 4),
    ("photon3", 3),
    ("photon_2.0 lab", 2),
    ("Photon OS 1.0 Rev2", 1),
    ("Photon OS (64-bit)", None),
    ("photon", None),
    ("photon-kube-node-1", None),
])
def test_photon_version_from_display_name(tmp_path, name, version):
    vm = info(make_vmx(tmp_path / "vm.vmx", guestOS="vmware-photon-64", displayName=name))
    assert guides.photon_version(vm)[0] == version


def test_photon_version_from_tools_detailed_data(tmp_path):
    vm = info(make_vmx(tmp_path / "lab.vmx", guestOS="vmware-photon-64", displayName="lab",
                       guestOS__detailed__data="architecture='X86' bitness='64' distroName='VMware "
                       "Photon OS' distroVersion='3.0' familyName='Linux'"))
    found, where = guides.photon_version(vm)
    assert found == 3 and "guestOS.detailed.data" in where


def test_explicit_photon_version_wins_and_mismatch_is_noted(tmp_path):
    vm = info(make_vmx(tmp_path / "p.vmx", guestOS="vmware-photon-64", displayName="Photon OS 3.0"))
    guide = guides.photon_guide(Paths(platform="linux", root=Path("/")), vm, 4)
    assert "Photon OS 4" in guide.title and any("suggests Photon OS 3" in n for n in guide.notes)
    assert "`faillock --reset --user root`" in everything(guide.as_list())


def test_unknown_photon_version_defaults_to_newest_and_says_so(tmp_path):
    vm = info(make_vmx(tmp_path / "lab.vmx", guestOS="vmware-photon-64", displayName="lab"))
    guide = guides.photon_guide(Paths(platform="linux", root=Path("/")), vm, None)
    assert "Photon OS 5" in guide.title
    assert any("newest" in n and "--photon" in n for n in guide.notes)
    assert "`faillock --reset --user root`" in everything(guide.as_list())


@pytest.mark.parametrize("entries, kind, autologin, not_there", [
    ({"guestOS": "other4xlinux-64", "displayName": "flatcar-stable"}, "flatcar",
     "`flatcar.autologin`", "coreos.autologin"),
    ({"guestOS": "other3xlinux-64", "displayName": "node1",
      "scsi0:0__fileName": "coreos_production_vmware_image.vmdk"}, "coreos",
     "`coreos.autologin`", "flatcar.autologin"),
    ({"guestOS": "coreos-64", "displayName": "node2"}, "coreos-or-flatcar",
     "`flatcar.autologin coreos.autologin`", None),
])
def test_coreos_flatcar_guides(tmp_path, entries, kind, autologin, not_there):
    vm = info(make_vmx(tmp_path / "n.vmx", **entries))
    assert guides.guest_kind(vm) == kind
    steps = guides.console_guide(Paths(platform="linux", root=Path("/")), vm).as_list()
    text = everything(steps)
    assert autologin in text and "`linux`" in text and "`sudo passwd core`" in text
    assert "networkctl" in text
    if not_there:
        assert f"`{not_there}`" not in steps[3]["do"]


def test_fedora_coreos_is_refused(tmp_path):
    vm = info(make_vmx(tmp_path / "f.vmx", guestOS="coreos-64", displayName="fedora-coreos-39"))
    with pytest.raises(InvalidInput, match="Fedora CoreOS"):
        guides.guest_kind(vm)


def test_unreadable_vmx_is_a_precondition(tmp_path, monkeypatch):
    path = make_vmx(tmp_path / "locked.vmx", guestOS="vmware-photon-64")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # root reads through chmod 000
    with pytest.raises(PreconditionMissing) as exc:
        guides.read_vmx(path)
    assert exc.value.exit_code == 3


def test_real_vmx_samples_read(tmp_path):
    attm = info(vmx_sample("ATTM_VM"))
    assert attm.name == "ATTM_VM" and attm.guest_os == "winxppro"
    with pytest.raises(InvalidInput, match="winxppro"):
        guides.guest_kind(attm)
    bare = info(vmx_sample("ethernet-custom"))
    assert bare.guest_os == "" and bare.name == bare.vmx_path.stem
    with pytest.raises(InvalidInput, match="not set"):
        guides.guest_kind(bare)
    # docker-machine's template, outside a machine store and with {{.ISO}} unfilled: no clue
    template = info(vmx_sample("docker-machine-vmwarefusion"))
    assert template.guest_os == "other3xlinux-64"
    with pytest.raises(InvalidInput):
        guides.guest_kind(template)


# ---- the CLI, as a real subprocess --------------------------------------------------------------
def labctl(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO, timeout=60)


@pytest.fixture
def lab(tmp_path):
    """LABCTL_ROOT with a vmrun stand-in that prints $VMRUN_LIST and records its argv."""
    root = tmp_path / "root"
    bin_dir = root / "usr/bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "vmrun-calls"
    standin = bin_dir / "vmrun"
    standin.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$*" >> "$VMRUN_CALLS"\n'
        'case "$1" in\n'
        '  list) cat "$VMRUN_LIST"; exit 0;;\n'
        "  start) exit 0;;\n"
        '  *) echo "Error: Unrecognized command: $1"; exit 255;;\n'
        "esac\n", encoding="utf-8")
    standin.chmod(0o755)
    store = tmp_path / "machine-store"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABCTL_", "MACHINE_"))}
    env.update(LABCTL_ROOT=str(root), LABCTL_PLATFORM="linux", MACHINE_STORAGE_PATH=str(store),
               VMRUN_CALLS=str(calls), VMRUN_LIST=str(vmrun_list_sample()),
               LABCTL_STATE_DIR=str(tmp_path / "state"), NO_COLOR="1")
    return {"root": root, "env": env, "store": store, "calls": calls, "tmp": tmp_path}


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    return one_error(proc.stderr)


def test_vm_from_vmrun_list_sample_by_file_name(lab):
    """kw01 is found in the real `vmrun list` output; its .vmx lives on the Mac it came from."""
    proc = labctl("console-help", "kw01", env=lab["env"])
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "/Users/general/Virtual Machines.localized/kw01/kw01.vmx" in line


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_vm_from_vmrun_list_sample_with_spaces_and_non_ascii(lab, form):
    name = unicodedata.normalize(form, "centos 7 64 位")  # any case, either Unicode form
    proc = labctl("photon", "reset-password", name, env=lab["env"])
    assert proc.returncode == 2
    assert "CentOS 7 64 位.vmwarevm/CentOS 7 64 位.vmx" in one_error_line(proc)


def test_unknown_vm_is_one_line_exit_2(lab):
    proc = labctl("console-help", "nope", env=lab["env"])
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "'nope'" in line and "2 running VMs" in line and "docker-machine" in line


def test_unknown_vm_without_vmrun_is_exit_3(lab):
    (lab["root"] / "usr/bin/vmrun").unlink()
    proc = labctl("console-help", "nope", env=lab["env"])
    assert proc.returncode == 3
    assert "vmrun" in one_error_line(proc)


def test_missing_and_unsupported_vmx_paths(lab):
    proc = labctl("console-help", str(lab["tmp"] / "gone.vmx"), env=lab["env"])
    assert proc.returncode == 2 and "no such .vmx file" in one_error_line(proc)
    proc = labctl("console-help", str(vmx_sample("ATTM_VM")), env=lab["env"])
    assert proc.returncode == 2 and "winxppro" in one_error_line(proc)
    proc = labctl("photon", "reset-password", str(vmx_sample("ATTM_VM")), env=lab["env"])
    assert proc.returncode == 2 and "console-help" in one_error_line(proc)
    not_vmx = lab["tmp"] / "junk.vmx"
    not_vmx.write_bytes(b"\x00\x01 binary junk\n")
    proc = labctl("console-help", str(not_vmx), env=lab["env"])
    assert proc.returncode == 2 and "not a .vmx file" in one_error_line(proc)


def test_docker_machine_name_finds_boot2docker(lab):
    """docker-machine's own .vmx template, placed where docker-machine keeps a machine."""
    vmx = lab["store"] / "machines/lab/lab.vmx"
    vmx.parent.mkdir(parents=True)
    shutil.copy(vmx_sample("docker-machine-vmwarefusion"), vmx)
    proc = labctl("console-help", "lab", "--format", "json", env=lab["env"])
    assert proc.returncode == 0, proc.stderr
    steps = document(proc.stdout, "guide")["steps"]
    text = everything(steps)
    assert "`docker`" in text and "`tcuser`" in text and "/var/lib/boot2docker" in text
    assert "bootlocal.sh" in text and "docker-machine regenerate-certs lab" in text
    assert not lab["calls"].exists()  # a machine name never needs vmrun


def test_boot2docker_by_iso_name_anywhere(lab):
    text = vmx_sample("docker-machine-vmwarefusion").read_text(encoding="utf-8")
    vmx = lab["tmp"] / "vms/b2d/b2d.vmx"
    vmx.parent.mkdir(parents=True)
    vmx.write_text(text.replace("{{.ISO}}", "/Users/me/.docker/machine/machines/b2d/boot2docker.iso")
                   .replace("{{.MachineName}}", "b2d"), encoding="utf-8")
    proc = labctl("console-help", str(vmx), "--format", "markdown", env=lab["env"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('### Get into boot2docker VM "b2d"')
    assert "`tcuser`" in proc.stdout


def test_running_photon_vm_by_display_name_and_open_console(lab):
    vmx = make_vmx(lab["tmp"] / "VMs/Photon é lab/photon.vmx", guestOS="vmware-photon-64",
                   displayName="photon-hw15-4.0-1234abcd")
    listing = lab["tmp"] / "list.txt"
    listing.write_text(f"Total running VMs: 1\n{vmx}\n", encoding="utf-8")
    env = {**lab["env"], "VMRUN_LIST": str(listing)}

    proc = labctl("photon", "reset-password", "PHOTON-hw15-4.0-1234abcd", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    does = [s["do"] for s in document(proc.stdout, "guide")["steps"]]
    assert any("`faillock --reset --user root`" in d for d in does)
    assert not any("pam_tally2" in d for d in does)
    assert "Photon OS 4, read from displayName" in proc.stderr

    calls_before = lab["calls"].read_text()
    proc = labctl("photon", "reset-password", str(vmx), "--open-console", "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    vmrun_path = lab["root"] / "usr/bin/vmrun"
    assert f"$ {vmrun_path} start '{vmx}' gui" in proc.stdout
    assert lab["calls"].read_text() == calls_before  # a dry run starts nothing

    proc = labctl("photon", "reset-password", str(vmx), "--open-console", env=env)
    assert proc.returncode == 0, proc.stderr
    assert lab["calls"].read_text().splitlines()[-1] == f"start {vmx} gui"
    assert "already running" in proc.stderr


def test_bad_options_exit_2(lab):
    assert labctl("photon", "reset-password", "--photon", "6", env=lab["env"]).returncode == 2
    proc = labctl("photon", "reset-password", "--format", "yaml", env=lab["env"])
    # a fixed choice: the parser refuses it and names the choices
    assert proc.returncode == 2 and "--format" in proc.stderr and "'markdown'" in proc.stderr
    proc = labctl("photon", "reset-password", "--open-console", env=lab["env"])
    assert proc.returncode == 2


def test_vmx_reader_keeps_escaped_display_name(tmp_path):
    vm = info(make_vmx(tmp_path / "x.vmx", guestOS="vmware-photon-64", displayName="a|22b"))
    assert vm.name == 'a"b'
    assert Vmx.parse((tmp_path / "x.vmx").read_bytes()).display_name == "a|22b"

