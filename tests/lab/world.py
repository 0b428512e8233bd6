"""The lab in a box as a whole: a desktop with VMware Workstation (simulated hypervisor, real
networking), on which the real ``labctl`` runs.

    from tests.lab.world import LabWorld, require_world
    require_world()
    with LabWorld() as world:
        world.labctl("up", "lab")                     # the real CLI, in the desktop namespace
        world.docker("--context", "lab", "ps")        # the docker CLI with the world's config
        world.desk_run(["curl", "http://172.18.0.2/"])

What is simulated, and how:

* The desktop is a network namespace (``world.desk``).  Each vmnet is a Linux bridge
  ``vmnetN`` in it with the host address .1, served by a real ISC dhcpd reading the vmnet's
  VMware-format dhcpd.conf: vmnet1 host-only and vmnet8 NAT to begin with.
* ``LABCTL_ROOT`` (``world.root``) holds a Workstation (Linux) layout: ``/etc/vmware/networking``,
  ``/etc/vmware/vmnetN/dhcpd/dhcpd.conf`` and the leases beside it, and the tool stand-ins
  where labctl looks for the real ones: ``usr/bin/vmware-networks`` (restarts the dhcpds; its
  ``--start`` also brings up bridge + dhcpd for a vmnet that ``labctl vmnet create`` added),
  ``usr/bin/vmrun`` and ``usr/local/bin/docker-machine`` (with the vmware driver plugin).
* A VM is a network namespace made by tests/lab/vmhook.py (the docker-machine stand-in's VM
  hook): veths on the vmnet bridges with the .vmx's MACs, real dhclients, a real dockerd on
  TLS.  ``.standin/world.json`` tells the stand-ins and the hook where the desktop is.

Closing the world removes every VM (dockerd, containerd shims, dhclients, namespaces,
cgroups), the dhcpds, the desktop namespace and the scratch directory, even after failures.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from tests.lab import vmhook
from tests.lab.engine import ENGINE_TOOLS, busybox_rootfs
from tests.lab.netns import STANDINS, Lab, in_ci, lab_problem, register_vmnet

REPO = Path(__file__).resolve().parent.parent.parent
WORLD_TOOLS = (*ENGINE_TOOLS, "curl", "ping")
IMAGE = "labbox:latest"


def world_problem() -> str | None:
    problem = lab_problem()
    if problem is None:
        missing = [t for t in WORLD_TOOLS if shutil.which(t) is None]
        if missing:
            problem = (f"lab world needs {', '.join(missing)} "
                       "(apt-get install docker.io busybox-static curl iputils-ping)")
    return problem


def require_world() -> None:
    """Skip unless the world can be built here; with CI=true fail instead."""
    import pytest

    problem = world_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem} (CI=true: lab tests must run)")
    pytest.skip(problem)


def networking_text(vmnets: dict[int, tuple[ipaddress.IPv4Network | str, bool]]) -> str:
    """A VMware networking file: {number: (subnet, nat)}."""
    lines = ["VERSION=1,0"]
    for n, (subnet, nat) in sorted(vmnets.items()):
        net = ipaddress.IPv4Network(subnet)
        lines += [f"answer VNET_{n}_DHCP yes",
                  f"answer VNET_{n}_HOSTONLY_NETMASK {net.netmask}",
                  f"answer VNET_{n}_HOSTONLY_SUBNET {net.network_address}"]
        if nat:
            lines.append(f"answer VNET_{n}_NAT yes")
        lines.append(f"answer VNET_{n}_VIRTUAL_ADAPTER yes")
    return "\n".join(lines) + "\n"


USER_VMX = """\
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "21"
displayName = "{name}"
guestOS = "{guest_os}"
memsize = "2048"
numvcpus = "2"
nvme0.present = "TRUE"
nvme0:0.fileName = "{name}.vmdk"
nvme0:0.present = "TRUE"
ethernet0.present = "TRUE"
ethernet0.connectionType = "nat"
ethernet0.addressType = "generated"
ethernet0.virtualDev = "e1000e"
ethernet0.linkStatePropagation.enable = "TRUE"
ethernet0.generatedAddress = "{mac}"
ethernet0.generatedAddressOffset = "0"
tools.syncTime = "TRUE"
uuid.bios = "56 4d 2a 1f 0c 77 2e 31-9a 44 6b 0e 8f 21 d3 5c"
"""


class LabWorld:
    def __init__(self, third: int | None = None) -> None:
        # vmnet1 and vmnet8 get 192.168.T.0/24 and 192.168.T+1.0/24 (only inside the desktop
        # namespace; random so two worlds' files never look alike)
        self.third = third if third is not None else random.randrange(150, 240, 2)
        self.lab: Lab | None = None
        self.desk = ""
        self.root = Path()
        self.tmp = Path()
        self.subnets: dict[int, ipaddress.IPv4Network] = {}

    # ---- building ------------------------------------------------------------------------------
    def __enter__(self) -> LabWorld:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        from labctl.hypervisor.vmware.lab import render_dhcpd_conf

        self.lab = lab = Lab()
        self.tmp = lab.tmp
        self.desk = lab.netns("desk")
        self.root = lab.tmp / "root"
        for d in ("home", "docker", "machine", "state", "vm", "vms"):
            (lab.tmp / d).mkdir(parents=True, exist_ok=True)
        self.subnets = {1: ipaddress.IPv4Network(f"192.168.{self.third}.0/24"),
                        8: ipaddress.IPv4Network(f"192.168.{self.third + 1}.0/24")}
        etc = self.root / "etc" / "vmware"
        etc.mkdir(parents=True)
        # what an installed Workstation leaves behind, so doctor's host checks see one
        (self.root / "usr/lib/vmware").mkdir(parents=True)
        (etc / "config").write_text('product.version = "17.5.0"\n')
        (etc / "networking").write_text(networking_text({1: (self.subnets[1], False),
                                                        8: (self.subnets[8], True)}))
        standin = self.root / ".standin"
        standin.mkdir(parents=True)
        (standin / "world.json").write_text(json.dumps(
            {"desk": self.desk, "prefix": lab.prefix, "tmp": str(lab.tmp), "root": str(self.root)},
            indent=2) + "\n")
        # the tools, where labctl looks for them under LABCTL_ROOT (symlinks: the stand-ins find
        # the repository, and the fixtures beside it, through them)
        for rel, name in (("usr/bin/vmware-networks", "vmware-networks"), ("usr/bin/vmrun", "vmrun"),
                          ("usr/local/bin/docker-machine", "docker-machine")):
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            target = STANDINS / name
            if name == "vmware-networks":  # copy: it finds LABCTL_ROOT from its own path
                shutil.copy(STANDINS / "vmnet-cli", dest)
                dest.chmod(0o755)
            else:
                dest.symlink_to(target.resolve())
        # host tools labctl resolves under LABCTL_ROOT: the real ones (they act on the desktop
        # namespace labctl runs in)
        for rel, target in (("sbin/ip", shutil.which("ip") or "/sbin/ip"),
                            ("proc/net/route", "/proc/net/route")):  # resolved by the reader: its netns
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(target)
        systemctl = self.root / "bin/systemctl"  # boot units are written, never loaded, here
        systemctl.parent.mkdir(parents=True, exist_ok=True)
        systemctl.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/../.standin/systemctl.log"\n')
        systemctl.chmod(0o755)
        plugin = self.root / "usr/local/bin/docker-machine-driver-vmware"
        plugin.write_text("#!/bin/sh\n# lab stand-in: the vmware driver is built into the "
                          "docker-machine stand-in\necho 'This is a Docker Machine plugin binary.'\n")
        plugin.chmod(0o755)
        # the vmnets: a bridge with the host address and a real dhcpd each
        for n, net in self.subnets.items():
            conf = etc / f"vmnet{n}" / "dhcpd" / "dhcpd.conf"
            conf.parent.mkdir(parents=True)
            conf.write_bytes(render_dhcpd_conf(n, net))
            self._bridge(f"vmnet{n}", f"{net.network_address + 1}/{net.prefixlen}")
            server = lab.start_dhcpd(self.desk, conf, f"vmnet{n}",
                                     leases_path=conf.parent / "dhcpd.leases")
            register_vmnet(self.root, n, server)

    def _bridge(self, name: str, cidr: str) -> None:
        assert self.lab is not None
        self.lab._ip("-n", self.desk, "link", "add", name, "type", "bridge")
        self.lab._ip("-n", self.desk, "addr", "add", cidr, "dev", name)
        self.lab._ip("-n", self.desk, "link", "set", name, "up")
        # a port that is always there keeps the bridge's carrier (and its route's flags) steady
        # while VMs come and go, as a VMware host adapter is always up
        # (a veth pair with both ends up: the dummy module may be missing)
        self.lab._ip("-n", self.desk, "link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}p")
        self.lab._ip("-n", self.desk, "link", "set", f"{name}h", "master", name)
        self.lab._ip("-n", self.desk, "link", "set", f"{name}h", "up")
        self.lab._ip("-n", self.desk, "link", "set", f"{name}p", "up")

    def close(self) -> None:
        if self.lab is None:
            return
        lab, self.lab = self.lab, None
        with contextlib.suppress(Exception):
            vmhook.destroy_all({"desk": self.desk, "prefix": lab.prefix, "tmp": str(lab.tmp)})
        lab.close()

    # ---- the environment labctl and its tools see --------------------------------------------------
    @property
    def hook(self) -> str:
        return shlex.join([sys.executable, str(REPO / "tests" / "lab" / "vmhook.py")])

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DOCKER_", "LABCTL_", "MACHINE_"))}
        env.update({
            "LABCTL_ROOT": str(self.root),
            "LABCTL_PLATFORM": "linux",
            "LABCTL_STATE_DIR": str(self.tmp / "state"),
            "LABCTL_STANDIN_VM_HOOK": self.hook,
            "MACHINE_STORAGE_PATH": str(self.tmp / "machine"),
            "HOME": str(self.tmp / "home"),
            "DOCKER_CONFIG": str(self.tmp / "docker"),
            "PYTHONPATH": str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        })
        env.update(extra or {})
        return env

    @property
    def store(self) -> Path:
        return self.tmp / "machine"

    @property
    def audit_log(self) -> Path:
        return self.tmp / "audit.log"

    def desk_run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 900,
                 input: bytes | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        # nsenter --net, not `ip netns exec`: the latter gives the process a mount namespace of
        # its own, and the VM namespaces the hook makes (`ip netns add`) would vanish with it
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{self.desk}", *argv], env=env or self.env(),
                              capture_output=True, input=input, timeout=timeout)
        out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def labctl(self, *args: str, env: dict[str, str] | None = None, check: bool = False,
               timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """The real CLI (``python -m labctl``) in the desktop namespace."""
        e = self.env({"LABCTL_AUDIT_LOG": str(self.audit_log), **(env or {})})
        return self.desk_run([sys.executable, "-m", "labctl", *args], env=e, check=check,
                             timeout=timeout)

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.desk_run(["docker", *args], input=input, check=check, timeout=timeout)

    def docker_machine(self, *args: str, env: dict[str, str] | None = None,
                       check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.desk_run([str(self.root / "usr/local/bin/docker-machine"), *args],
                             env=self.env(env), check=check)

    # ---- facts for assertions ------------------------------------------------------------------------
    def routes(self) -> list[dict]:
        out = subprocess.run(["ip", "-n", self.desk, "-4", "-j", "route", "show", "table", "main"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return json.loads(out or "[]")

    def dhcpd_conf(self, n: int) -> Path:
        return self.root / "etc" / "vmware" / f"vmnet{n}" / "dhcpd" / "dhcpd.conf"

    @property
    def networking(self) -> Path:
        return self.root / "etc" / "vmware" / "networking"

    def calls(self) -> str:
        p = self.root / ".standin" / "calls.log"
        return p.read_text() if p.exists() else ""

    def network_calls(self) -> list[list[str]]:
        """vmware-networks invocations (restarts), oldest first."""
        out = []
        for line in self.calls().splitlines():
            rec = json.loads(line)
            if rec.get("tool") == "vmware-networks":
                out.append(rec["args"])
        return out

    def audit(self) -> list[str]:
        return self.audit_log.read_text().splitlines() if self.audit_log.exists() else []

    def vm_namespaces(self) -> list[str]:
        assert self.lab is not None
        return sorted(p.name for p in Path("/run/netns").glob(f"{self.lab.prefix}-vm*"))

    def machines(self) -> list[str]:
        d = self.store / "machines"
        return sorted(p.name for p in d.iterdir() if (p / "config.json").exists()) if d.is_dir() else []

    def state(self) -> dict:
        p = self.tmp / "state" / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    # ---- a VM the user installed (a fuller VM: Debian with sshd and dockerd) -----------------------------
    def user_vm(self, name: str, authorized_key: str, *, os_release: str | None = None,
                tools: bool = True, guest_os: str = "debian12-64", sshd: bool = True) -> Path:
        """A VM folder as Fusion/Workstation leaves it after an install (a path with a space):
        ``NAME.vmx`` (ethernet0 on NAT, its generated MAC already written at first boot) and
        ``NAME.vmdk``, whose "installed OS" is a fuller VM (tests/lab/fullvm.py) with user lab
        and ``authorized_key``.  Stopped.  Returns the .vmx path."""
        from tests.lab.fullvm import write_guest

        folder = self.tmp / "Virtual Machines" / f"{name}.vmwarevm"
        folder.mkdir(parents=True)
        mac = "00:0c:29:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
        vmx = folder / f"{name}.vmx"
        vmx.write_text(USER_VMX.format(name=name, mac=mac, guest_os=guest_os))
        write_guest(folder / f"{name}.vmdk", hostname=name, authorized_keys=[authorized_key],
                    os_release=os_release, tools=tools, sshd=sshd)
        return vmx

    def vmrun(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.desk_run([str(self.root / "usr/bin/vmrun"), *args], check=check)

    # ---- containers -------------------------------------------------------------------------------
    def busybox_tar(self) -> bytes:
        tar_path = self.tmp / "busybox.tar"
        if not tar_path.exists():
            root = busybox_rootfs(self.tmp / "busybox-root")
            with tarfile.open(tar_path, "w") as tar:
                tar.add(root, arcname=".")
        return tar_path.read_bytes()

    def run_httpd(self, context: str, network: str | None = None) -> tuple[str, str]:
        """Import busybox into the engine (once) and run an httpd container; (id, IP)."""
        if self.docker("--context", context, "image", "inspect", IMAGE, check=False).returncode != 0:
            self.docker("--context", context, "import", "-", IMAGE, input=self.busybox_tar())
        args = ["--context", context, "run", "-d"] + (["--network", network] if network else [])
        cid = self.docker(*args, IMAGE, "/bin/httpd", "-f", "-p", "80", "-h", "/www").stdout.strip()
        data = json.loads(self.docker("--context", context, "inspect", cid).stdout)[0]
        nets = data["NetworkSettings"]["Networks"]
        return cid, next(iter(nets.values()))["IPAddress"]

    def reachable(self, ip: str, timeout: float = 10) -> tuple[bool, str]:
        """ICMP and HTTP (curl) to ``ip`` from the desktop namespace."""
        ping = self.desk_run(["ping", "-c", "1", "-W", "2", ip], timeout=30)
        deadline = time.monotonic() + timeout
        while True:
            curl = self.desk_run(["curl", "-sS", "--max-time", "3", f"http://{ip}/"], timeout=30)
            if curl.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        ok = ping.returncode == 0 and curl.returncode == 0 and "labctl-lab-httpd-ok" in curl.stdout
        return ok, f"ping rc={ping.returncode} {ping.stdout[-200:]}; curl rc={curl.returncode} " \
                   f"{curl.stdout!r} {curl.stderr.strip()}"


def main() -> None:  # pragma: no cover - manual poking: python -m tests.lab.world
    with LabWorld() as w:
        print(f"world: desk={w.desk} root={w.root}")
        print(json.dumps(w.env(), indent=1))
        input("enter to tear down ")


if __name__ == "__main__":
    main()
