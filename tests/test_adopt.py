"""--adopt without a VM: the lab description (flags and lab.toml), the guest OS check, the SSH
login, the generic driver's command line, the NIC of an existing adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import adopt, labspec
from labctl.errors import InvalidInput, PreconditionMissing
from labctl.hypervisor.vmware.vmx import Vmx


def test_adopt_from_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = labspec.from_flags("darwin", "arm", vmx="vms/debian.vmwarevm/debian.vmx", ssh_user="lab",
                              ssh_key="~/.ssh/id_ed25519")
    m = spec.machines[0]
    assert m.adopting and m.driver == "generic"
    assert m.vmx == tmp_path / "vms/debian.vmwarevm/debian.vmx"
    assert m.ssh_key == Path.home() / ".ssh/id_ed25519" and m.ssh_user == "lab"
    assert not labspec.from_flags("darwin", "lab").machines[0].adopting


def test_adopt_in_lab_toml(tmp_path):
    toml = tmp_path / "lab.toml"
    toml.write_text('[defaults]\ncpus = 4\ndriver = "vmwarefusion"\nssh_user = "ubuntu"\n'
                    '[[machine]]\nname = "x86"\n'
                    '[[machine]]\nname = "arm"\nvmx = "VMs/arm.vmx"\nssh_key = "keys/lab"\n')
    spec = labspec.load(toml, "darwin")
    x86, arm = spec.machines
    assert (x86.driver, x86.cpus, x86.adopting) == ("vmwarefusion", 4, False)
    assert (arm.driver, arm.vmx, arm.ssh_key, arm.ssh_user) == (
        "generic", tmp_path / "VMs/arm.vmx", tmp_path / "keys/lab", "ubuntu")


@pytest.mark.parametrize("raw,message", [
    ({"vmx": "debian.vmdk"}, "is not a .vmx file"),
    ({"vmx": "a.vmx", "driver": "vmware"}, "generic driver, not vmware"),
    ({"vmx": "a.vmx", "cpus": 2}, "labctl does not size a VM it adopts"),
    ({"vmx": "a.vmx", "ssh_user": "root; rm -rf /"}, "invalid user name"),
    ({"vmx": "a\nb.vmx"}, "control characters"),
    ({"vmx": 7}, "expected a file path"),
])
def test_adopt_bad_input(raw, message):
    with pytest.raises(InvalidInput) as exc:
        labspec.machine_spec({"name": "lab", **raw}, "lab.toml [[machine]] #1", "darwin")
    assert message in exc.value.message


OS_RELEASE = {"ubuntu": 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n',
              "rocky": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
                       'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n',
              "photon": 'NAME="VMware Photon OS"\nID=photon\nVERSION_ID=5.0\n'}


def test_guest_os_problem():
    vmx = Path("/vms/x.vmx")
    ok = adopt.parse_os_release(OS_RELEASE["ubuntu"])
    assert ok["ID"] == "ubuntu" and adopt.guest_os_problem(vmx, None, ok) is None
    rocky = adopt.guest_os_problem(vmx, None, adopt.parse_os_release(OS_RELEASE["rocky"]))
    assert rocky is not None and rocky.message == (
        "x.vmx runs Rocky Linux 9.4 (Blue Onyx) (ID=rocky), which docker-machine 0.16.2 cannot "
        "provision; nothing was changed")  # no ID_LIKE fallback in docker-machine
    photon = adopt.guest_os_problem(vmx, None, adopt.parse_os_release(OS_RELEASE["photon"]))
    assert photon is not None and "Photon OS" in photon.message
    assert photon.remedy.endswith("labctl photon reset-password /vms/x.vmx")
    by_vmx = adopt.guest_os_problem(vmx, Vmx('guestOS = "vmware-photon-64"\n'), None)
    assert by_vmx is not None and by_vmx.message == photon.message
    assert adopt.guest_os_problem(vmx, Vmx('guestOS = "arm-ubuntu-64"\n'), None) is None


def test_login_defaults_and_missing_key(tmp_path):
    m = labspec.from_flags("darwin", "lab", vmx=str(tmp_path / "a.vmx"), ssh_user="lab").machines[0]
    with pytest.raises(PreconditionMissing) as exc:
        adopt.login_for(m, env={"HOME": str(tmp_path)})
    assert exc.value.message.startswith("no SSH key: neither ~/.ssh/id_ed25519 nor ~/.ssh/id_rsa")
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh/id_rsa").write_text("key")
    assert adopt.login_for(m, env={"HOME": str(tmp_path)}) == adopt.Login("lab", tmp_path / ".ssh/id_rsa")
    (tmp_path / ".ssh/id_ed25519").write_text("key")
    assert adopt.login_for(m, env={"HOME": str(tmp_path)}).key == tmp_path / ".ssh/id_ed25519"


def test_generic_create_argv():
    argv = adopt.create_argv("lab", "192.168.99.3", adopt.Login("lab", Path("/k/id ed")),
                             ["bip=172.17.0.1/16", "default-address-pool=base=172.18.0.0/16,size=24"])
    assert argv == ["create", "--driver", "generic", "--engine-opt", "bip=172.17.0.1/16",
                    "--engine-opt", "default-address-pool=base=172.18.0.0/16,size=24",
                    "--generic-ip-address", "192.168.99.3", "--generic-ssh-user", "lab",
                    "--generic-ssh-key", "/k/id ed", "--generic-ssh-port", "22", "lab"]
