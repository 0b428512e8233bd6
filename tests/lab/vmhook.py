"""The simulated hypervisor of the lab in a box: a "VM" is a network namespace.

The docker-machine stand-in calls it through ``LABCTL_STANDIN_VM_HOOK`` (and the vmrun
stand-in directly) as::

    vmhook.py create|start|provision|stop|rm|ip NAME MACHINEDIR
    vmhook.py ssh NAME MACHINEDIR CMD

It finds the world (the desktop namespace, the run's prefix and scratch directory) in
``$LABCTL_ROOT/.standin/world.json``, written by :class:`tests.lab.world.LabWorld`.

* ``start`` powers the VM on: it reads ``MACHINEDIR/NAME.vmx`` and, for every present
  ``ethernetN``, makes a veth pair whose desktop end is enslaved to the bridge of its vmnet
  (``nat`` -> vmnet8, ``hostonly`` -> vmnet1, ``custom`` -> ``vnet``) and whose VM end
  (``ethN``) has the adapter's MAC (``address`` or ``generatedAddress``; a ``generated``
  adapter without one gets ``00:0c:29:xx:xx:xx`` written into the .vmx, as VMware does at
  first power-on).  A real ``dhclient`` runs on each NIC.  Then the VM boots the way
  boot2docker v19.03.12 does, as strict as the real one: IPv4 forwarding is OFF,
  ``/var/lib/boot2docker/bootsync.sh`` runs (``sh``, synchronously) if the persistent disk has
  one, and, once docker-machine has provisioned TLS certificates, a real ``dockerd`` starts
  with iptables ON (``nsenter --net``, vfs, TLS on :2376 with the machine's server certificate,
  the machine's ``--engine-opt`` flags from config.json).  Because dockerd switches forwarding
  on itself, it sets the ``FORWARD`` policy to ``DROP``: without a VM-side rule only published
  ports are reachable by route, exactly as on boot2docker.  ``bootlocal.sh`` runs after dockerd,
  in the background.
* ``stop`` stops dockerd and the DHCP clients and deletes the namespace (its veths go with
  it); dockerd's data directory (``MACHINEDIR/disk``) stays, like a VM disk.
* ``provision`` restarts dockerd with the (new) certificates; ``rm`` deletes everything.
* dockerd starts as boot2docker's ``/etc/init.d/docker`` starts it: with the arguments in
  ``EXTRA_ARGS`` of ``/var/lib/boot2docker/profile`` (the docker-machine stand-in writes it when
  it provisions, as docker-machine does) and the variables it exports in its environment; each
  start adds a line to ``RUN_DIR/engine-starts``.
* ``ip`` prints ethernet0's IPv4 address (nothing when it has none).
* ``ssh CMD`` runs ``sh -c CMD`` in the VM namespace, in a mount namespace of its own where
  ``/var/lib/boot2docker`` is the VM's persistent disk (``MACHINEDIR/persist``), ``/etc/os-release``
  is boot2docker's and ``sudo`` runs its arguments (the VM's ``docker`` user may sudo); output
  and exit code pass through.
* The VM's CA store is its own, as boot2docker's (a tmpfs root, rebuilt at each boot):
  ``/etc/ssl/certs`` starts at each VM start as a copy of this machine's (the "ISO's" store) and
  ``/usr/local/share/ca-certificates`` empty; dockerd runs with that ``/etc/ssl/certs`` (it
  trusts what the VM's system store holds when it starts).  Before ``bootsync.sh`` the boot
  does what boot2docker's own boot script does with ``/var/lib/boot2docker/certs/*.pem|*.crt``:
  links each into ``/usr/local/share/ca-certificates/boot2docker/`` (``.crt`` added) and runs
  ``/usr/local/tce.installed/ca-certificates``, whose stand-in rebuilds
  ``/etc/ssl/certs/ca-certificates.crt`` from the base bundle plus every ``*.crt`` there.
  ``/etc/init.d/docker stop|start|restart`` in the VM stops/starts the hook's dockerd.

A VM whose disk (.vmdk) holds a fuller VM (tests/lab/fullvm.py: a user's Debian VM with sshd
and dockerd, the kind ``labctl up --adopt`` takes) boots that instead of the hook's dockerd;
its disk keeps what it wrote in ``MACHINEDIR/disk``.

Test knobs (environment): ``LABCTL_VMHOOK_NO_DHCP=ethernet1[,…]`` runs no DHCP client on those
adapters (the VM "never gets" an address there).  ``LABCTL_VMHOOK_ENGINE_MODEL=28`` models the
filtering Docker Engine >= 28 adds on top (this is a MODEL: the engine is still Debian's 20.10):
forwarding is on before dockerd starts, as on a systemd host, so the ``FORWARD`` policy stays
``ACCEPT``; the default bridge's ``DOCKER`` chain ends with the drop Engine 28 appends for a
``nat`` gateway mode network (``-A DOCKER ! -i docker0 -o docker0 -j DROP``), so only a rule
before it (``DOCKER-USER``) or a published port lets routed traffic in; and, unless the machine's
engine flags say ``--allow-direct-routing=true`` (which the model takes out of dockerd's argv: 20.10
does not know it), the raw table drops what is addressed to docker0's subnet from any other
interface (``-t raw -A PREROUTING -d SUBNET ! -i docker0 -j DROP``: current engines drop each
container address that way, which no filter rule can undo).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` and `labctl` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from labctl.hypervisor.vmware.vmx import Vmx  # noqa: E402

DOCKERD_TIMEOUT = 90.0
DHCP_TIMEOUT = 20
PERSIST_MOUNT = "/var/lib/boot2docker"
# boot2docker v19.03.12's /etc/os-release (docker-machine's provisioner matches ID=boot2docker)
B2D_OS_RELEASE = """NAME=Boot2Docker
VERSION=19.03.12
ID=boot2docker
ID_LIKE=tcl
VERSION_ID=19.03.12
PRETTY_NAME="Boot2Docker 19.03.12 (TCL 10.1)"
ANSI_COLOR="1;34"
HOME_URL="https://github.com/boot2docker/boot2docker"
SUPPORT_URL="https://blog.docker.com/2016/07/live-debugging-docker/"
BUG_REPORT_URL="https://github.com/boot2docker/boot2docker/issues"
"""
CA_LINKS = "/usr/local/share/ca-certificates"
TCE_DIR = "/usr/local/tce.installed"
# boot2docker's boot: its CA files on the persistent disk into the (volatile) system store
B2D_CERT_STEP = """
for f in /var/lib/boot2docker/certs/*.pem /var/lib/boot2docker/certs/*.crt; do
  [ -e "$f" ] || continue
  link="/usr/local/share/ca-certificates/boot2docker/${f##*/}"
  case "$link" in *.crt) ;; *) link="$link.crt" ;; esac
  mkdir -p /usr/local/share/ca-certificates/boot2docker && ln -sfT "$f" "$link"
done
[ -d /usr/local/share/ca-certificates/boot2docker ] && /usr/local/tce.installed/ca-certificates
true
"""
SUDO_SHIM = """#!/bin/sh
# the lab VM's sudo: its user may run anything as root (as docker may on boot2docker)
while [ $# -gt 0 ]; do case "$1" in -n|-E|-H) shift ;; --) shift; break ;; *) break ;; esac; done
exec "$@"
"""


class HookError(Exception):
    pass


# ---- small process helpers (no pytest here: this runs as a subprocess) ------------------------
def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise HookError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def kill(pid: int, timeout: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.05)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---- the world ---------------------------------------------------------------------------------
def load_world(root: str | None = None) -> dict:
    root = root or os.environ.get("LABCTL_ROOT")
    if not root:
        raise HookError("LABCTL_ROOT is not set: the VM hook cannot find the lab world")
    path = Path(root) / ".standin" / "world.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HookError(f"no lab world at {path}: {exc}") from exc


class VM:
    def __init__(self, world: dict, name: str, mdir: Path) -> None:
        self.world = world
        self.name = name
        self.mdir = Path(mdir)
        self.id = hashlib.sha256(str(self.mdir.resolve()).encode()).hexdigest()[:5]
        self.ns = f"{world['prefix']}-vm{self.id}"
        self.run_dir = Path(world["tmp"]) / "vm" / self.id  # short: containerd sockets live here
        self.vmx_path = self.mdir / f"{name}.vmx"
        self.disk = self.mdir / "disk"

    # paths
    @property
    def persist(self) -> Path:
        """The VM's persistent disk, mounted at /var/lib/boot2docker inside the VM."""
        return self.mdir / "persist"

    @property
    def engine_model(self) -> str:
        return os.environ.get("LABCTL_VMHOOK_ENGINE_MODEL", "")

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "dockerd.pid"

    @property
    def cgroup(self) -> str:
        return f"labctl-{self.world['prefix']}-{self.id}"

    def client(self, ifname: str, kind: str) -> Path:
        return self.run_dir / f"dhclient-{ifname}.{kind}"

    @property
    def running(self) -> bool:
        return Path(f"/run/netns/{self.ns}").exists()

    def record(self, running: bool) -> None:
        """The world's list of VMs (vmrun list reads it; the world tears them all down)."""
        d = Path(self.world["tmp"]) / "vms"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{self.id}.json").write_text(json.dumps({
            "name": self.name, "mdir": str(self.mdir), "vmx": str(self.vmx_path), "ns": self.ns,
            "run_dir": str(self.run_dir), "cgroup": self.cgroup, "running": running}) + "\n")

    def forget(self) -> None:
        (Path(self.world["tmp"]) / "vms" / f"{self.id}.json").unlink(missing_ok=True)

    # ---- the .vmx ----------------------------------------------------------------------------
    def nics(self) -> list[tuple[int, str, str]]:
        """(index, bridge in the desktop namespace, MAC) of each present adapter; a generated
        adapter without an address gets one written into the .vmx (first power-on)."""
        data = self.vmx_path.read_bytes()
        vmx = Vmx.parse(data)
        out = []
        changed = False
        for nic in vmx.nics():
            if not nic.present:
                continue
            p = f"ethernet{nic.index}."
            mac = nic.address
            if not mac and (nic.address_type or "generated") != "static":
                h = secrets.token_bytes(3)
                mac = f"00:0c:29:{h[0]:02x}:{h[1]:02x}:{h[2]:02x}"
                vmx.set(p + "generatedAddress", mac)
                vmx.set(p + "generatedAddressOffset", "0")
                changed = True
            if not mac:
                continue
            kind = nic.connection_type or "nat"
            bridge = {"nat": "vmnet8", "hostonly": "vmnet1"}.get(kind)
            if kind == "custom":
                bridge = nic.vnet
            if not bridge:
                continue  # bridged: not simulated
            out.append((nic.index, bridge, mac.lower()))
        if changed:
            self.vmx_path.write_bytes(vmx.dump())
        return out

    @property
    def profile(self) -> Path:
        """boot2docker's /var/lib/boot2docker/profile (docker-machine writes it when it
        provisions the VM; labctl edits it): what /etc/init.d/docker starts dockerd with."""
        return self.persist / "profile"

    def engine_flags(self) -> list[str]:
        """dockerd's extra arguments: EXTRA_ARGS of the VM's profile, as boot2docker's init
        script passes them (word-split); without a profile, the flags in config.json."""
        if self.profile.exists():
            text = self.profile.read_text()
            m = re.search(r"^EXTRA_ARGS='\n(.*?)^'$", text, re.S | re.M)
            return m.group(1).split() if m else []
        try:
            cfg = json.loads((self.mdir / "config.json").read_text())
        except (OSError, ValueError):
            return []
        flags = cfg.get("HostOptions", {}).get("EngineOptions", {}).get("ArbitraryFlags") or []
        return [f"--{f}" for f in flags]

    # ---- power -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            self.stop()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        desk = self.world["desk"]
        sh("ip", "netns", "add", self.ns)
        self.record(True)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        # boot2docker >= 18.09: forwarding stays off until dockerd starts (a model of Engine 28 on
        # a systemd host has it on already)
        forward = "1" if self.engine_model == "28" else "0"
        sh("ip", "netns", "exec", self.ns, "sysctl", "-qw", f"net.ipv4.ip_forward={forward}")
        blocked = {x.strip() for x in os.environ.get("LABCTL_VMHOOK_NO_DHCP", "").split(",") if x.strip()}
        for index, bridge, mac in self.nics():
            outer = f"v{self.id}e{index}"
            tmp = f"v{self.id}t{index}"
            sh("ip", "-n", desk, "link", "del", outer, check=False)
            sh("ip", "link", "add", outer, "netns", desk, "type", "veth", "peer", "name", tmp,
               "netns", self.ns)
            sh("ip", "-n", self.ns, "link", "set", tmp, "name", f"eth{index}")
            sh("ip", "-n", self.ns, "link", "set", f"eth{index}", "address", mac)
            sh("ip", "-n", self.ns, "link", "set", f"eth{index}", "up")
            if sh("ip", "-n", desk, "link", "show", bridge, check=False).returncode == 0:
                sh("ip", "-n", desk, "link", "set", outer, "master", bridge)
            sh("ip", "-n", desk, "link", "set", outer, "up")
            if f"ethernet{index}" not in blocked:
                self.dhclient(f"eth{index}")
        guest = self.guest()
        if guest is not None:
            self.fullvm(guest).boot()
            return
        # boot2docker's boot: bootsync.sh (before dockerd), dockerd, bootlocal.sh (background)
        self.prepare_rootfs(fresh=True)
        subprocess.run(self.vm_shell(B2D_CERT_STEP), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60, check=False)
        self.boot_script("bootsync.sh")
        if (self.mdir / "server.pem").exists():
            self.start_dockerd()
        self.boot_script("bootlocal.sh", background=True)

    def boot_script(self, name: str, background: bool = False) -> None:
        if not (self.persist / name).exists():
            return
        argv = self.vm_shell(f"sh {PERSIST_MOUNT}/{name}")
        with open(self.run_dir / f"{name}.log", "ab") as log:
            if background:
                subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            else:
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               timeout=60, check=False)

    @property
    def rootfs(self) -> Path:
        """The VM's volatile root parts (rebuilt at each start): its CA store and init scripts."""
        return self.run_dir / "rootfs"

    def prepare_rootfs(self, fresh: bool) -> None:
        root = self.rootfs
        if root.exists() and not fresh:
            return
        if root.exists():
            shutil.rmtree(root)
        (root / "local-ca").mkdir(parents=True)
        sh("cp", "-a", "/etc/ssl/certs/.", str(root / "ssl-certs"))
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "base-bundle.crt")
        tce = root / "tce"
        tce.mkdir()
        base = shlex.quote(str(root / "base-bundle.crt"))
        (tce / "ca-certificates").write_text(
            "#!/bin/sh\n"
            "# lab stand-in for boot2docker's ca-certificates extension script: the system\n"
            f"# bundle is the base one plus every *.crt below {CA_LINKS}\n"
            "out=/etc/ssl/certs/ca-certificates.crt\n"
            f"cat {base} > $out.new\n"
            f"find -L {CA_LINKS} -name '*.crt' -type f | sort | while read -r f; do\n"
            '  cat "$f"; echo\n'
            "done >> $out.new\n"
            "mv -f $out.new $out\n")
        (tce / "ca-certificates").chmod(0o755)
        hook = Path(__file__).resolve()
        (root / "init.d-docker").write_text(
            "#!/bin/sh\n"
            "# lab stand-in for boot2docker's /etc/init.d/docker: the hook's dockerd\n"
            f"exec {shlex.quote(sys.executable)} {shlex.quote(str(hook))} engine "
            f'{shlex.quote(self.name)} {shlex.quote(str(self.mdir))} "$1"\n')
        (root / "init.d-docker").chmod(0o755)

    def vm_shell(self, command: str) -> list[str]:
        """argv that runs ``sh -c command`` inside the VM: its network namespace, and a mount
        namespace where /var/lib/boot2docker is its persistent disk, /etc/os-release is
        boot2docker's and sudo runs its arguments."""
        self.persist.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        Path(PERSIST_MOUNT).mkdir(parents=True, exist_ok=True)  # the mount point on the host
        osrel = self.run_dir / "os-release"
        if not osrel.exists():
            osrel.write_text(B2D_OS_RELEASE)
        shim = self.run_dir / "bin"
        if not (shim / "sudo").exists():
            shim.mkdir(parents=True, exist_ok=True)
            (shim / "sudo").write_text(SUDO_SHIM)
            (shim / "sudo").chmod(0o755)
        self.prepare_rootfs(fresh=False)
        Path(TCE_DIR).mkdir(parents=True, exist_ok=True)  # the mount point on the host
        root = self.rootfs
        inner = ('mount --bind "$1" ' + PERSIST_MOUNT + ' && mount --bind "$2" /etc/os-release && '
                 f'mount --bind "$5/ssl-certs" /etc/ssl/certs && mount --bind "$5/local-ca" {CA_LINKS} && '
                 f'mount --bind "$5/tce" {TCE_DIR} && mount --bind "$5/init.d-docker" /etc/init.d/docker && '
                 'PATH="$3:$PATH" && export PATH && exec sh -c "$4"')
        # nsenter --net, not `ip netns exec` (which remounts /sys without the cgroup mounts):
        # /etc/init.d/docker restart starts dockerd from this shell, and dockerd needs them
        return ["nsenter", f"--net=/run/netns/{self.ns}", "unshare", "--mount", "--propagation",
                "private", "sh", "-c", inner, "sh", str(self.persist), str(osrel), str(shim), command,
                str(root)]

    # ---- a fuller VM (a Debian root with sshd and dockerd, tests/lab/fullvm.py) -------------------
    def guest(self) -> dict | None:
        from tests.lab.fullvm import guest_of

        return guest_of(self.vmx_path) if self.vmx_path.exists() else None

    def fullvm(self, guest: dict):
        from tests.lab.fullvm import FullVM

        return FullVM(self.ns, self.disk, self.run_dir, hostname=str(guest.get("hostname") or self.name),
                      authorized_keys=list(guest.get("authorized_keys") or []),
                      user=str(guest.get("user") or "lab"), os_release=guest.get("os_release"),
                      cgroup=self.cgroup, sshd=bool(guest.get("sshd", True)))

    def dhclient(self, ifname: str) -> None:
        from tests.lab.netns import DHCLIENT_SCRIPT  # (imports pytest: only where needed)

        script = self.run_dir / "dhclient-script"
        if not script.exists():
            script.write_text(DHCLIENT_SCRIPT)
            script.chmod(0o755)
        conf = self.client(ifname, "conf")
        conf.write_text(f"timeout {DHCP_TIMEOUT};\nretry 2;\ninitial-interval 1;\nbackoff-cutoff 2;\n")
        # no client lease file kept: every boot asks afresh (DHCPDISCOVER), so a new reservation
        # is taken at once; the server remembers the address it gave this MAC.
        self.client(ifname, "leases").unlink(missing_ok=True)
        argv = ["ip", "netns", "exec", self.ns, "dhclient", "-4", "-v",
                "-pf", str(self.client(ifname, "pid")), "-lf", str(self.client(ifname, "leases")),
                "-cf", str(conf), "-sf", str(script), ifname]
        with open(self.client(ifname, "log"), "ab") as log:
            # without -1 dhclient keeps trying in the background when no answer came in time
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           timeout=DHCP_TIMEOUT + 15, check=False)

    def start_dockerd(self) -> None:
        self.stop_dockerd()
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.disk.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "daemon.json").write_text("{}\n")
        self.prepare_rootfs(fresh=False)
        # its own mount namespace: the VM's /etc/ssl/certs (what it trusts for registries)
        # the variables the profile exports reach dockerd's environment, as with boot2docker's
        # /etc/init.d/docker (which sources the profile)
        argv = ["nsenter", f"--net=/run/netns/{self.ns}", "unshare", "--mount", "--propagation",
                "private", "sh", "-c",
                'mount --bind "$1" /etc/ssl/certs && p="$2" && shift 2 && '
                'if [ -f "$p" ]; then . "$p"; fi && exec "$@"', "sh",
                str(self.rootfs / "ssl-certs"), str(self.profile), "dockerd",
                "--config-file", str(self.run_dir / "daemon.json"),
                "--data-root", str(self.disk), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.pidfile),
                "-H", f"unix://{self.socket}", "-H", "tcp://0.0.0.0:2376",
                "--tlsverify", "--tlscacert", str(self.mdir / "ca.pem"),
                "--tlscert", str(self.mdir / "server.pem"), "--tlskey", str(self.mdir / "server-key.pem"),
                "--storage-driver", "vfs", "--userland-proxy=false", "--shutdown-timeout", "2",
                "--cgroup-parent", f"/{self.cgroup}", "--exec-opt", "native.cgroupdriver=cgroupfs",
                *[f for f in self.engine_flags() if not f.startswith("--allow-direct-routing")]]
        with open(self.run_dir / "engine-starts", "a") as starts:  # tests count engine (re)starts
            starts.write(f"{time.time():.3f}\n")
        log = open(self.run_dir / "dockerd.log", "ab")  # noqa: SIM115 (the daemon keeps it)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "TMPDIR": str(self.run_dir)})
        log.close()
        deadline = time.monotonic() + DOCKERD_TIMEOUT
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.run_dir / "cli")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise HookError(f"dockerd exited with {proc.returncode}: {self.log_tail()}")
            if self.socket.exists() and subprocess.run(
                    ["docker", "-H", f"unix://{self.socket}", "version", "--format", "{{.Server.Version}}"],
                    capture_output=True, env=env, timeout=30).returncode == 0:
                if self.engine_model == "28":
                    self.model_engine_28()
                return
            time.sleep(0.2)
        raise HookError(f"dockerd did not answer within {DOCKERD_TIMEOUT:g}s: {self.log_tail()}")

    def model_engine_28(self) -> None:
        """MODEL of Engine >= 28's filtering for the default bridge in ``nat`` gateway mode: the
        ``DOCKER`` chain ends with a drop of everything that does not come from the bridge."""
        rule = ["DOCKER", "!", "-i", "docker0", "-o", "docker0", "-j", "DROP"]
        ipt = ["ip", "netns", "exec", self.ns, "iptables"]
        if sh(*ipt, "-C", *rule, check=False).returncode != 0:
            sh(*ipt, "-A", *rule)
        if any(f in ("--allow-direct-routing", "--allow-direct-routing=true")
               for f in self.engine_flags()):
            return
        out = sh("ip", "-n", self.ns, "-j", "-4", "addr", "show", "dev", "docker0").stdout
        for link in json.loads(out or "[]"):
            for a in link.get("addr_info", []):
                subnet = str(ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network)
                for raw in (["PREROUTING", "-d", subnet, "-i", "lo", "-j", "ACCEPT"],
                            ["PREROUTING", "-d", subnet, "!", "-i", "docker0", "-j", "DROP"]):
                    if sh(*ipt, "-t", "raw", "-C", *raw, check=False).returncode != 0:
                        sh(*ipt, "-t", "raw", "-A", *raw)

    def log_tail(self) -> str:
        try:
            return " | ".join((self.run_dir / "dockerd.log").read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return ""

    def stop_dockerd(self) -> None:
        pid = read_pid(self.pidfile)
        if pid is not None and alive(pid) and "dockerd" in cmdline(pid):
            # power-off kills the containers at once (dockerd alone would wait 10 s for each
            # container that ignores SIGTERM, as busybox httpd as PID 1 does)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
            env["DOCKER_CONFIG"] = str(self.run_dir / "cli")
            docker = ["docker", "-H", f"unix://{self.socket}"]
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                ids = subprocess.run([*docker, "ps", "-q"], capture_output=True, text=True, env=env,
                                     timeout=20).stdout.split()
                if ids:
                    subprocess.run([*docker, "kill", *ids], capture_output=True, env=env, timeout=30)
            kill(pid, timeout=20)
        # containerd and its shims for this engine carry our exec-root in their command line
        marker = str(self.run_dir)
        for p in Path("/proc").iterdir():
            if p.name.isdigit() and marker in cmdline(int(p.name)):
                kill(int(p.name), timeout=5)
        unmount_below(self.run_dir)
        unmount_below(self.disk)

    def stop(self) -> None:
        guest = None
        with contextlib.suppress(Exception):  # a broken disk must not keep the VM running
            guest = self.guest()
        if guest is not None:
            self.fullvm(guest).halt()
        self.stop_dockerd()
        for pidfile in self.run_dir.glob("dhclient-*.pid"):
            pid = read_pid(pidfile)
            if pid is not None and "dhclient" in cmdline(pid):
                kill(pid)
            pidfile.unlink(missing_ok=True)
        if self.running:
            pids = sh("ip", "netns", "pids", self.ns, check=False).stdout.split()
            for pid in pids:
                if pid.isdigit():
                    kill(int(pid))
            sh("ip", "netns", "del", self.ns, check=False)
        remove_cgroups(self.cgroup)
        if self.mdir.exists():
            self.record(False)

    def rm(self) -> None:
        self.stop()
        unmount_below(self.disk)
        shutil.rmtree(self.disk, ignore_errors=True)
        shutil.rmtree(self.persist, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.forget()

    def ip(self) -> str:
        if not self.running:
            return ""
        out = sh("ip", "-n", self.ns, "-j", "-4", "addr", "show", "dev", "eth0", check=False).stdout
        try:
            data = json.loads(out or "[]")
        except ValueError:
            return ""
        for link in data:
            for a in link.get("addr_info", []):
                return str(a["local"])
        return ""

    def ssh(self, command: str) -> int:
        if not self.running:
            sys.stderr.write(f"ssh: connect to host {self.name} port 22: No route to host\n")
            return 255
        if self.guest() is not None:  # a fuller VM is reached over its own sshd (generic driver)
            return subprocess.run(["ip", "netns", "exec", self.ns, "sh", "-c", command]).returncode
        return subprocess.run(self.vm_shell(command)).returncode


def unmount_below(path: Path) -> None:
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for m in sorted((m for m in mounts if m.startswith(str(path) + "/") or m == str(path)),
                    key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True, timeout=30, check=False)


def remove_cgroups(name: str) -> None:
    for top in list(Path("/sys/fs/cgroup").glob(f"*/{name}")) + [Path(f"/sys/fs/cgroup/{name}")]:
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                        reverse=True) + [top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def destroy_all(world: dict) -> None:
    """Tear down every VM the world knows (called by LabWorld.close, even after failures)."""
    d = Path(world["tmp"]) / "vms"
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        with contextlib.suppress(Exception):
            VM(world, info["name"], Path(info["mdir"])).rm()


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write("usage: vmhook create|start|provision|stop|rm|ip NAME MACHINEDIR\n"
                         "       vmhook ssh NAME MACHINEDIR CMD\n")
        return 2
    verb, name, mdir = argv[0], argv[1], Path(argv[2])
    try:
        vm = VM(load_world(), name, mdir)
        if verb == "create":
            vm.record(False)
        elif verb == "start":
            vm.start()
        elif verb == "provision":
            if vm.running:
                vm.start_dockerd()
        elif verb == "stop":
            vm.stop()
        elif verb == "rm":
            vm.rm()
        elif verb == "ip":
            ip = vm.ip()
            if ip:
                print(ip)
        elif verb == "ssh":
            return vm.ssh(" ".join(argv[3:]))
        elif verb == "engine":  # /etc/init.d/docker inside the VM
            action = argv[3] if len(argv) > 3 else ""
            if action in ("stop", "restart"):
                vm.stop_dockerd()
            if action in ("start", "restart"):
                vm.start_dockerd()
            if action not in ("stop", "start", "restart"):
                sys.stderr.write("Usage /etc/init.d/docker {start|stop|restart}\n")
                return 1
        else:
            sys.stderr.write(f"vmhook: unknown verb {verb!r}\n")
            return 2
    except (HookError, OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"vmhook {verb} {name}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
