"""The docker-machine stand-in's generic driver against a fuller lab VM: a VM "the user
installed" (a debootstrapped Debian with a real sshd and dockerd, iptables on, forwarding off
until dockerd starts), started with the vmrun stand-in and provisioned over real SSH with the
steps and texts of docker-machine 0.16.2 (../shared/fixtures/docker-machine/NOTES-generic-driver.md).

Root and debootstrap (the Debian root is built once and cached, see tests/lab/fullvm.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.lab.fullvm import require_fullvm
from tests.lab.world import LabWorld, require_world

PHOTON_OS_RELEASE = """\
NAME="VMware Photon OS"
VERSION="5.0"
ID=photon
VERSION_ID=5.0
PRETTY_NAME="VMware Photon OS/Linux"
ANSI_COLOR="1;34"
HOME_URL="https://vmware.github.io/photon/"
BUG_REPORT_URL="https://github.com/vmware/photon/issues"
"""


@pytest.fixture(scope="module")
def world():
    require_world()
    require_fullvm()
    with LabWorld() as w:
        key = w.tmp / "home" / ".ssh" / "id_ed25519"
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab@desk", "-f", str(key)],
                       check=True)
        w.key = key  # type: ignore[attr-defined]
        yield w


def boot(world, name: str, **kw) -> tuple[str, str]:
    """A user VM, started with `vmrun start VMX nogui`; (vmx, the IP vmrun reports)."""
    vmx = world.user_vm(name, (world.key.with_suffix(".pub")).read_text(), **kw)
    r = world.vmrun("start", str(vmx), "nogui")
    assert r.returncode == 0, r.stdout + r.stderr
    ip = world.vmrun("getGuestIPAddress", str(vmx), "-wait")
    assert ip.returncode == 0, ip.stdout
    return str(vmx), ip.stdout.strip()


def dm(world, *args: str) -> subprocess.CompletedProcess[str]:
    return world.docker_machine(*args, env={"LABCTL_STANDIN_SSH_WAIT": "20"})


CREATE_OUT = """\
Running pre-create checks...
Creating machine...
(lab) Importing SSH key...
Waiting for machine to be running, this may take a few minutes...
Detecting operating system of created instance...
Waiting for SSH to be available...
Detecting the provisioner...
Provisioning with debian...
Copying certs to the local machine directory...
Copying certs to the remote machine...
Setting Docker configuration on the remote daemon...
Checking connection to Docker...
Docker is up and running!
To see how to connect your Docker Client to the Docker Engine running on this virtual machine, run: \
docker-machine env lab
"""


def test_generic_create_provisions_the_vm_over_ssh(world):
    vmx, ip = boot(world, "debian")
    r = dm(world, "create", "--driver", "generic", "--generic-ip-address", ip,
           "--generic-ssh-user", "lab", "--generic-ssh-key", str(world.key),
           "--engine-opt", "bip=172.30.0.1/16",
           "--engine-opt", "default-address-pool=base=172.31.0.0/16,size=24", "lab")
    assert r.returncode == 0, r.stdout + r.stderr
    # the CA and client certificate come first on a fresh store
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith(("Creating CA:", "Creating client"))]
    assert "\n".join(lines) + "\n" == CREATE_OUT
    mdir = world.store / "machines" / "lab"
    cfg = json.loads((mdir / "config.json").read_text())
    assert cfg["DriverName"] == "generic"
    assert (cfg["Driver"]["IPAddress"], cfg["Driver"]["SSHUser"], cfg["Driver"]["SSHPort"]) == (ip, "lab", 22)
    assert (mdir / "id_ed25519").read_bytes() == world.key.read_bytes()
    assert (mdir / "id_ed25519").stat().st_mode & 0o777 == 0o600
    # TLS names the address the driver was given
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                          str(mdir / "server.pem")], capture_output=True, text=True).stdout
    assert f"IP Address:{ip}" in san and "DNS:localhost" in san
    # in the VM: the hostname, the TLS files, the drop-in with the engine options
    ssh = dm(world, "ssh", "lab", "hostname; sudo cat /etc/docker/server.pem; "
             "cat /etc/systemd/system/docker.service.d/10-machine.conf")
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.startswith("lab\n")
    assert (mdir / "server.pem").read_text().strip() in ssh.stdout
    dropin = ssh.stdout[ssh.stdout.index("[Service]"):]
    assert dropin.startswith("[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:2376 "
                             "-H unix:///var/run/docker.sock --storage-driver overlay2 --tlsverify "
                             "--tlscacert /etc/docker/ca.pem --tlscert /etc/docker/server.pem "
                             "--tlskey /etc/docker/server-key.pem --label provider=generic "
                             "--bip=172.30.0.1/16 --default-address-pool=base=172.31.0.0/16,size=24 \n")
    # the engine answers TLS on the IP with the options applied; as strict as a real host
    env = dm(world, "env", "--shell", "bash", "lab")
    assert env.returncode == 0, env.stderr
    assert f'export DOCKER_HOST="tcp://{ip}:2376"' in env.stdout
    assert dm(world, "status", "lab").stdout == "Running\n"
    assert dm(world, "url", "lab").stdout == f"tcp://{ip}:2376\n"
    docker = world.desk_run(["docker", "--tlsverify", "-H", f"tcp://{ip}:2376",
                             "--tlscacert", str(mdir / "ca.pem"), "--tlscert", str(mdir / "cert.pem"),
                             "--tlskey", str(mdir / "key.pem"), "network", "inspect", "bridge",
                             "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}"])
    assert docker.stdout.strip() == "172.30.0.0/16", docker.stderr
    fwd = dm(world, "ssh", "lab", "sudo iptables -S FORWARD")
    assert "-P FORWARD DROP" in fwd.stdout
    # start/stop are not the generic driver's business; rm removes only the record
    start = dm(world, "start", "lab")
    assert (start.returncode, start.stderr) == (1, 'Machine "lab" is already running.\n')
    stop = dm(world, "stop", "lab")
    assert (stop.returncode, stop.stdout, stop.stderr) == (1, 'Stopping "lab"...\n',
                                                           "generic driver does not support stop\n")
    rm = dm(world, "rm", "-y", "lab")
    assert rm.returncode == 0 and "Successfully removed lab" in rm.stdout
    assert world.vmrun("list").stdout.count(".vmx") == 1  # the VM runs on
    assert world.vmrun("stop", vmx, "soft").returncode == 0


def test_generic_create_errors(world):
    no_ip = dm(world, "create", "--driver", "generic", "--generic-ssh-user", "lab", "x1")
    assert (no_ip.returncode, no_ip.stderr) == (1, "Error setting machine configuration from flags "
                                                   "provided: generic driver requires the "
                                                   "--generic-ip-address option\n")
    missing = str(world.tmp / "nope" / "id_rsa")
    no_key = dm(world, "create", "--driver", "generic", "--generic-ip-address", "192.0.2.1",
                "--generic-ssh-key", missing, "x2")
    assert no_key.returncode == 1
    assert no_key.stderr == f'Error with pre-create check: "SSH key does not exist: \\"{missing}\\""\n'
    assert not (world.store / "machines" / "x2").exists()


def test_photon_os_is_not_recognized(world):
    vmx, ip = boot(world, "photon", os_release=PHOTON_OS_RELEASE)
    r = dm(world, "create", "--driver", "generic", "--generic-ip-address", ip,
           "--generic-ssh-user", "lab", "--generic-ssh-key", str(world.key), "ph")
    assert r.returncode == 1
    assert r.stderr == "Error creating machine: Error detecting OS: OS type not recognized\n"
    assert r.stdout.splitlines()[-1] == "Detecting the provisioner..."
    world.vmrun("stop", vmx, "soft")
