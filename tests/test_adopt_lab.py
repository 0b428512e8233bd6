"""`labctl up NAME --adopt VM.vmx` in the lab: a VM the user installed (a fuller VM: Debian with
a real sshd and a strict dockerd, tests/lab/fullvm.py), stopped, becomes a lab Docker host
through docker-machine's generic driver (the stand-in, over real SSH): a container answers on
an unpublished port by its own IP from the desktop; a second `up` changes nothing; `down`
leaves the VM and its .vmx as they were.  The preflight refusals each end with one line,
exit 3 and nothing changed.

Root and debootstrap (the Debian root is built once and cached).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from labctl.hypervisor.vmware.vmx import Vmx
from tests.conftest import one_error
from tests.lab.fullvm import require_fullvm
from tests.lab.world import LabWorld, require_world

PHOTON_OS_RELEASE = 'NAME="VMware Photon OS"\nVERSION="5.0"\nID=photon\nVERSION_ID=5.0\n' \
                    'PRETTY_NAME="VMware Photon OS/Linux"\n'
ENV = {"LABCTL_SSH_TIMEOUT": "20", "LABCTL_IP_TIMEOUT": "120", "LABCTL_STANDIN_SSH_WAIT": "60"}


@pytest.fixture(scope="module")
def world():
    require_world()
    require_fullvm()
    with LabWorld() as w:
        ssh = w.tmp / "home" / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        for name in ("id_ed25519", "other"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                            str(ssh / name)], check=True)
        w.key = ssh / "id_ed25519"  # type: ignore[attr-defined]
        w.other_key = ssh / "other"  # type: ignore[attr-defined]
        yield w


def pub(world) -> str:
    return world.key.with_suffix(".pub").read_text()


def snapshot(world, *extra: Path) -> dict[str, str]:
    """Every file labctl or docker-machine could touch: VMware's files, labctl's state, the
    machine store, the VM folders' files (not the VMs' own disks, which a booting VM writes,
    nor the DHCP servers' lease files and the stand-ins' call log)."""
    out: dict[str, str] = {}
    for d in (world.root, world.tmp / "state", world.store, *extra):
        for p in sorted(d.rglob("*")) if d.exists() else []:
            rel = p.relative_to(d)
            if p.is_dir() or "disk" in rel.parts or p.suffix == ".leases" or p.name == "calls.log" \
                    or p.name.endswith((".leases~", ".pid")):
                continue
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def running(world) -> list[str]:
    return world.vmrun("list").stdout.splitlines()[1:]


def refused(world, *args: str, vm_folder: Path | None = None, **env: str) -> str:
    before = snapshot(world, *(p for p in [vm_folder] if p))
    vms = running(world)
    r = world.labctl("up", *args, "--yes", env={**ENV, **env})
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    line = one_error(r.stderr)
    assert snapshot(world, *(p for p in [vm_folder] if p)) == before
    assert running(world) == vms  # a VM started for the look is off again
    return line


# ---- refusals before any change ----------------------------------------------------------------------
def test_no_such_vmx(world):
    vmx = world.tmp / "Virtual Machines" / "gone.vmwarevm" / "gone.vmx"
    line = refused(world, "lab", "--adopt", str(vmx), "--ssh-key", str(world.key))
    assert line == (f"labctl: error: no such .vmx: {vmx}; nothing was changed (fix: give the VM's "
                    "configuration file, e.g. ~/Virtual Machines.localized/NAME.vmwarevm/NAME.vmx "
                    "(Fusion) or ~/vmware/NAME/NAME.vmx (Workstation))")


def test_photon_by_its_vmx(world):
    vmx = world.user_vm("photon5", pub(world), guest_os="vmware-photon-64")
    line = refused(world, "ph", "--adopt", str(vmx), "--ssh-key", str(world.key), vm_folder=vmx.parent)
    assert line == ("labctl: error: photon5.vmx runs Photon OS, which docker-machine 0.16.2 cannot "
                    "provision (it has no Photon OS provisioner); nothing was changed (fix: adopt an "
                    "Ubuntu or Debian VM instead; to get into this one as root, see labctl photon "
                    f"reset-password '{vmx}')")


def test_photon_by_its_os_release(world):
    """The .vmx says "other Linux": labctl starts the VM, reads /etc/os-release over SSH,
    refuses, and shuts the VM down again."""
    vmx = world.user_vm("photonx", pub(world), guest_os="other5xlinux-64", os_release=PHOTON_OS_RELEASE)
    line = refused(world, "phx", "--adopt", str(vmx), "--ssh-user", "lab", "--ssh-key", str(world.key),
                   vm_folder=vmx.parent)
    assert line.startswith("labctl: error: photonx.vmx runs Photon OS, which docker-machine 0.16.2 "
                           "cannot provision")
    assert "labctl photon reset-password" in line


def test_no_ssh_key(world):
    vmx = world.user_vm("nokey", pub(world))
    missing = world.tmp / "home" / ".ssh" / "id_missing"
    line = refused(world, "nk", "--adopt", str(vmx), "--ssh-user", "lab", "--ssh-key", str(missing),
                   vm_folder=vmx.parent)
    assert line == (f"labctl: error: no SSH key: {missing} does not exist; nothing was changed (fix: "
                    f"make one and put it on the VM: ssh-keygen -t ed25519 -f {missing} && "
                    f"ssh-copy-id -i {missing} lab@VM-ADDRESS)")


def test_ssh_not_answering(world):
    vmx = world.user_vm("nossh", pub(world), sshd=False)
    line = refused(world, "ns", "--adopt", str(vmx), "--ssh-user", "lab", "--ssh-key", str(world.key),
                   vm_folder=vmx.parent, LABCTL_SSH_TIMEOUT="6")
    ip = line.split("lab@", 1)[1].split(" ", 1)[0]
    assert line == (f"labctl: error: SSH to lab@{ip} did not answer within 6 s (vmrun "
                    f"getGuestIPAddress sees {ip}); nothing was changed (fix: check that the VM runs "
                    f"sshd (sudo apt-get install openssh-server) and that {world.key}.pub is in "
                    "~lab/.ssh/authorized_keys there; LABCTL_SSH_TIMEOUT=SECONDS waits longer)")


def test_ssh_key_refused(world):
    vmx = world.user_vm("wrongkey", pub(world))
    line = refused(world, "wk", "--adopt", str(vmx), "--ssh-user", "lab", "--ssh-key",
                   str(world.other_key), vm_folder=vmx.parent)
    assert f"refused the key {world.other_key} (lab@" in line and "Permission denied" in line
    assert line.endswith(f"(fix: put the key on the VM: ssh-copy-id -i {world.other_key} "
                         f"lab@{line.split('lab@', 1)[1].split(' ', 1)[0]}, or pass --ssh-user/--ssh-key)")


def test_dry_run_changes_nothing(world):
    """A dry run prints the steps and leaves the VM off and every file as it was.  (On the
    existing host-only vmnet1: a dry run that would create a vmnet cannot plan the reservation
    in its dhcpd.conf yet, for any machine; the planner of `up` takes that on.)"""
    vmx = world.user_vm("drydeb", pub(world))
    before = snapshot(world, vmx.parent)
    r = world.labctl("up", "dry", "--adopt", str(vmx), "--ssh-user", "lab", "--ssh-key", str(world.key),
                     "--vmnet", "vmnet1", "--dry-run", env=ENV)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "then: start drydeb.vmx to check that lab@… answers SSH" in out
    assert f"vmrun stop {vmx} soft" in out.replace("'", "") and "ethernet1" in out
    assert "create --driver generic" in out and "--generic-ssh-user lab" in out
    assert snapshot(world, vmx.parent) == before and str(vmx) not in "\n".join(running(world))


# ---- the lab ------------------------------------------------------------------------------------------
def test_adopt_up_reachable_noop_down(world):
    vmx = world.user_vm("debian", pub(world))
    original = vmx.read_bytes()
    conf_before = {n: world.dhcpd_conf(n).read_bytes() for n in (1, 8)}
    args = ("lab", "--adopt", str(vmx), "--ssh-user", "lab", "--ssh-key", str(world.key), "--yes")
    up = world.labctl("up", *args, env=ENV)
    assert up.returncode == 0, up.stdout + up.stderr
    rec = world.state()["machines"]["lab"]
    assert (rec["adopted"], rec["driver"], rec["vmx"], rec["power_before"]) == \
        (True, "generic", str(vmx), "stopped")
    ip = rec["ip"]
    # docker-machine knows the host by its fixed IP, and TLS names that address
    cfg = json.loads((world.store / "machines/lab/config.json").read_text())
    assert (cfg["DriverName"], cfg["Driver"]["IPAddress"]) == ("generic", ip)
    # a container on an unpublished port answers by its own IP from the desktop
    cid, cip = world.run_httpd("lab")
    ok, detail = world.reachable(cip)
    assert ok, detail + "\n" + up.stdout + up.stderr
    # ... through labctl's rule: the host is as strict as a real one (dockerd set FORWARD DROP)
    fwd = world.docker_machine("ssh", "lab", "sudo iptables -S FORWARD; sudo iptables -S DOCKER-USER").stdout
    assert "-P FORWARD DROP" in fwd and "-s 192.168." in fwd and "-j ACCEPT" in fwd, fwd
    # a second up changes nothing (no privileged command, no VMware networking, no VM power)
    audit, calls, n = len(world.audit()), world.network_calls(), len(vmrun_calls(world))
    again = world.labctl("up", *args, env=ENV)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout + again.stderr
    assert world.audit()[audit:] == [] and world.network_calls() == calls
    assert [c["args"][0] for c in vmrun_calls(world)[n:] if c["args"][0] in ("start", "stop")] == []
    assert world.reachable(cip)[0]
    # down: the VM stays; its .vmx and VMware's files are as before up; the VM is off again
    down = world.labctl("down", "lab", env=ENV)
    assert down.returncode == 0, down.stdout + down.stderr
    assert vmx.read_bytes() == original
    assert (vmx.parent / "debian.vmdk").exists()
    assert world.machines() == [] and "lab" not in world.state().get("machines", {})
    assert str(vmx) not in "\n".join(running(world))
    assert {n: world.dhcpd_conf(n).read_bytes() for n in (1, 8)} == conf_before
    assert not any(r.get("gateway") == ip for r in world.routes())


def vmrun_calls(world) -> list[dict]:
    return [json.loads(line) for line in world.calls().splitlines() if '"vmrun"' in line]


def test_adopt_existing_nic_on_a_running_vm(world):
    """--nic existing: ethernet0's own MAC is reserved on its vmnet (NAT), the running VM is
    restarted to take the fixed address, the .vmx is never edited; down leaves it running, as
    it was found."""
    vmx = world.user_vm("running", pub(world))
    original = vmx.read_bytes()
    assert world.vmrun("start", str(vmx), "nogui").returncode == 0
    args = ("lab3", "--adopt", str(vmx), "--nic", "existing", "--ssh-user", "lab",
            "--ssh-key", str(world.key), "--yes")
    up = world.labctl("up", *args, env=ENV)
    assert up.returncode == 0, up.stdout + up.stderr
    rec = world.state()["machines"]["lab3"]
    assert (rec["nic"], rec["vmnet"], rec["power_before"]) == ("existing", 8, "running")
    assert rec["mac"] == Vmx.parse(original).nic(0).address
    assert "restart running.vmx and wait until SSH answers on " + rec["ip"] in up.stderr
    assert vmx.read_bytes() == original
    cid, cip = world.run_httpd("lab3")
    ok, detail = world.reachable(cip)
    assert ok, detail
    down = world.labctl("down", "lab3", env=ENV)
    assert down.returncode == 0, down.stdout + down.stderr
    assert vmx.read_bytes() == original
    assert str(vmx) in "\n".join(running(world))  # it was running before up: it still is
    assert world.vmrun("stop", str(vmx), "soft").returncode == 0
