"""What cannot work is refused before `up` changes anything: exit 3, one line with the fix,
and every file of the desktop (VMware's, labctl's state, docker-machine's store) exactly as
before.  Each case has a control: the same desktop with the one fact changed gets past the
refusal (`up --dry-run` plans its steps and exits 0), so the refusal is what stopped it."""

from __future__ import annotations

import getpass
import hashlib
import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, one_error
from tests.lab.netns import STANDINS, install_standin


def snapshot(*dirs: Path) -> dict[str, str]:
    """Every file and directory under ``dirs``: path -> content hash (or "dir")."""
    out: dict[str, str] = {}
    for d in dirs:
        for p in sorted(d.rglob("*")) if d.exists() else []:
            out[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Desk:
    """A Mac with Fusion (LABCTL_ROOT): the recorded networking file with vmnet1/vmnet8, the
    vmnet-cli and docker-machine stand-ins, an empty docker-machine store."""

    def __init__(self, tmp: Path, root: Path) -> None:
        self.tmp, self.root = tmp, root
        install_standin(root, "darwin")
        dm = root / "usr/local/bin/docker-machine"
        dm.parent.mkdir(parents=True, exist_ok=True)
        dm.symlink_to(STANDINS / "docker-machine")
        self.fusion("13.6.2")
        self.store = tmp / "store"
        self.state = tmp / "state"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("LABCTL_", "MACHINE_", "DOCKER_"))}
        self.env.update({"LABCTL_ROOT": str(root), "LABCTL_PLATFORM": "darwin",
                         "LABCTL_STATE_DIR": str(self.state), "LABCTL_ARCH": "x86_64",
                         "LABCTL_MACOS_VERSION": "14.4.1", "LABCTL_STANDIN_FUSION": "1",
                         "MACHINE_STORAGE_PATH": str(self.store), "HOME": str(tmp),
                         "PYTHONPATH": str(REPO), "NO_COLOR": "1"})

    def fusion(self, version: str) -> None:
        contents = self.root / "Applications/VMware Fusion.app/Contents"
        contents.mkdir(parents=True, exist_ok=True)
        (contents / "Info.plist").write_bytes(plistlib.dumps(
            {"CFBundleIdentifier": "com.vmware.fusion", "CFBundleShortVersionString": version}))

    def up(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "labctl", "up", *args], capture_output=True,
                              text=True, timeout=120, env={**self.env, **env}, cwd=self.tmp)

    def files(self) -> dict[str, str]:
        return snapshot(self.root, self.state, self.store)


@pytest.fixture
def desk(tmp_path, fusion_root) -> Desk:
    return Desk(tmp_path, fusion_root)


def refused(desk: Desk, *args: str, **env: str) -> str:
    """Run `up` (for real, not a dry run) expecting a refusal: return its one stderr line."""
    before = desk.files()
    r = desk.up(*args, **env)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert bool(one_error(r.stderr)) and r.stdout == "", r.stderr
    assert desk.files() == before
    return one_error(r.stderr)


ARM_LINE = ("labctl: error: this Mac has Apple Silicon (arm64): the {driver} driver makes a "
            "boot2docker VM, which is x86-only, so lab cannot be created; nothing was changed "
            "(fix: install an arm64 Ubuntu or Debian VM in Fusion, then adopt it: "
            "labctl up lab --adopt PATH/TO/VM.vmx)")


@pytest.mark.parametrize("driver", ["vmwarefusion", "vmware"])
def test_arm64_refuses_the_boot2docker_drivers(desk, driver):
    assert refused(desk, "lab", "--driver", driver, "--yes", LABCTL_ARCH="arm64") == \
        ARM_LINE.format(driver=driver)
    # control: the same Mac on Intel plans the lab
    r = desk.up("lab", "--driver", driver, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "create the docker-machine lab" in r.stdout


def test_arm64_default_driver_and_lab_toml(desk, tmp_path):
    assert refused(desk, LABCTL_ARCH="arm64") == ARM_LINE.format(driver="vmwarefusion")
    toml = tmp_path / "lab.toml"
    toml.write_text('[[machine]]\nname = "lab"\n[[machine]]\nname = "two"\n')
    assert refused(desk, "--config", str(toml), LABCTL_ARCH="aarch64") == \
        ARM_LINE.format(driver="vmwarefusion").replace("(arm64)", "(aarch64)")


def test_arm64_refusal_comes_before_docker_machine_is_needed(desk):
    """On Apple Silicon the refusal, not "docker-machine is not installed", is what a new
    user sees first."""
    (desk.root / "usr/local/bin/docker-machine").unlink()
    assert refused(desk, LABCTL_ARCH="arm64") == ARM_LINE.format(driver="vmwarefusion")


def test_docker_machine_install_hint_points_to_a_real_download(desk):
    """docker-machine 0.16.2 has no Darwin-arm64 build; the hint installs Rosetta 2 and the
    Darwin-x86_64 one (on Intel: just that one)."""
    (desk.root / "usr/local/bin/docker-machine").unlink()
    arm = desk.up("lab", "--adopt", str(desk.tmp / "vm.vmx"), "--dry-run", LABCTL_ARCH="arm64")
    intel = desk.up("lab", "--dry-run")
    for r in (arm, intel):
        assert r.returncode == 3 and bool(one_error(r.stderr)), r.stderr
        assert ("/download/v0.16.2/docker-machine-Darwin-x86_64 -o /tmp/docker-machine && sudo "
                "install /tmp/docker-machine /usr/local/bin/docker-machine") in r.stderr
        assert "arm64" not in r.stderr.split("fix:")[1]
    assert "softwareupdate --install-rosetta --agree-to-license && curl" in arm.stderr
    assert "rosetta" not in intel.stderr


APPLE_DHCP = ("labctl: error: VMware Fusion {fusion} on macOS {macos} hands out addresses with "
              "Apple's DHCP server, which ignores the reservations labctl writes to dhcpd.conf; "
              "nothing was changed (fix: upgrade to VMware Fusion 12.2 or later (it uses VMware's "
              "DHCP server again))")


@pytest.mark.parametrize("fusion,macos", [("12.1.2", "11.6"), ("12.0.0", "11.2.3")])
def test_fusion_12_0_and_12_1_on_macos_11_refused(desk, fusion, macos):
    desk.fusion(fusion)
    assert refused(desk, "lab", "--yes", LABCTL_MACOS_VERSION=macos) == \
        APPLE_DHCP.format(fusion=fusion, macos=macos)
    assert refused(desk, "lab", "--dry-run", LABCTL_MACOS_VERSION=macos) == \
        APPLE_DHCP.format(fusion=fusion, macos=macos)


@pytest.mark.parametrize("fusion,macos", [("12.2.0", "11.6"), ("12.1.2", "12.7.4"), ("13.6.2", "11.7")])
def test_fusion_with_vmware_dhcp_is_not_refused(desk, fusion, macos):
    desk.fusion(fusion)
    r = desk.up("lab", "--dry-run", LABCTL_MACOS_VERSION=macos)
    assert r.returncode == 0, r.stderr


def test_linux_arm64_refuses_the_vmware_plugin(tmp_path):
    from labctl.errors import PreconditionMissing
    from labctl.hypervisor.vmware.preflight import refuse_unworkable
    from labctl.labspec import from_flags
    from labctl.paths import Paths

    spec = from_flags("linux", "lab")
    with pytest.raises(PreconditionMissing) as exc:
        refuse_unworkable(Paths("linux", tmp_path), spec.machines, env={"LABCTL_ARCH": "aarch64"})
    assert exc.value.message.startswith("this host's CPU is aarch64: the vmware driver")
    refuse_unworkable(Paths("linux", tmp_path), spec.machines, env={"LABCTL_ARCH": "x86_64"})


# ---- --adopt: what can be known without the VM ---------------------------------------------------
def test_adopt_no_such_vmx(desk):
    vmx = desk.tmp / "Virtual Machines.localized" / "debian.vmwarevm" / "debian.vmx"
    assert refused(desk, "lab", "--adopt", str(vmx), LABCTL_ARCH="arm64") == (
        f"labctl: error: no such .vmx: {vmx}; nothing was changed (fix: give the VM's configuration "
        "file, e.g. ~/Virtual Machines.localized/NAME.vmwarevm/NAME.vmx (Fusion) or "
        "~/vmware/NAME/NAME.vmx (Workstation))")


def test_adopt_photon_vmx_and_missing_key(desk):
    folder = desk.tmp / "Virtual Machines.localized" / "photon.vmwarevm"
    folder.mkdir(parents=True)
    vmx = folder / "photon.vmx"
    vmx.write_text('.encoding = "UTF-8"\ndisplayName = "photon"\nguestOS = "vmware-photon-64"\n')
    line = refused(desk, "lab", "--adopt", str(vmx), LABCTL_ARCH="arm64")
    assert line.startswith("labctl: error: photon.vmx runs Photon OS, which docker-machine 0.16.2 "
                           "cannot provision (it has no Photon OS provisioner); nothing was changed")
    assert line.endswith(f"labctl photon reset-password '{vmx}')")
    vmx.write_text('.encoding = "UTF-8"\ndisplayName = "debian"\nguestOS = "arm-debian12-64"\n')
    line = refused(desk, "lab", "--adopt", str(vmx), LABCTL_ARCH="arm64")  # HOME has no ~/.ssh
    assert line == ("labctl: error: no SSH key: neither ~/.ssh/id_ed25519 nor ~/.ssh/id_rsa exists "
                    "and --ssh-key was not given; nothing was changed (fix: ssh-keygen -t ed25519 && "
                    f"ssh-copy-id {getpass.getuser()}@VM-ADDRESS, or pass --ssh-key PATH)")
