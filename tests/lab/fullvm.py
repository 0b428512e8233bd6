"""A fuller lab VM: a debootstrapped Debian root booted in namespaces, with a real ``sshd``
and a real ``dockerd`` (iptables on, forwarding off until dockerd starts), the way
``docker-machine create --driver generic`` finds an Ubuntu/Debian VM a user installed.

    from tests.lab.fullvm import require_fullvm, rootfs
    require_fullvm()                  # skip (CI=true: fail) unless root + debootstrap + network
    root = rootfs()                   # the cached Debian root (built once, ~40 s, ~580 MB)
    vm = FullVM(ns="l1234-vmab", run_dir=Path(...), hostname="debian", user="lab",
                authorized_key="ssh-ed25519 AAAA…")
    vm.boot()                         # the namespace must exist and have its NICs already
    vm.halt()

**The root** is ``debootstrap --variant=minbase --include=openssh-server,sudo,iptables,
iproute2,docker.io,procps,ca-certificates,curl bookworm`` plus a few files of the recipe
below (an init, a ``systemctl`` stand-in, an ``apt-get`` that needs no network).  It is cached
under ``/var/cache/labctl-tests/fullvm-<hash of the recipe>`` (``LABCTL_TEST_CACHE`` moves it)
and shared by every run; a changed recipe builds a new one.  A build is serialised by a lock
and lands by rename, so parallel test runs never see half a root.

**A boot** mounts an overlay (the cached root read-only below, the VM's own upper layer above:
what the VM writes stays its own and goes at teardown), binds a real directory onto
``/var/lib/docker`` (overlay2 needs a real file system under it), then in the VM's network
namespace ``unshare --mount --uts --pid --fork`` and ``pivot_root`` into it (a real mount, not
a ``chroot``: dockerd cannot unpack image layers in a chroot).  PID 1 is the recipe's init: it
sets ``net.ipv4.ip_forward=0``, starts docker through the ``systemctl`` stand-in (which runs
the unit's ``ExecStart``, honouring docker-machine's drop-in
``/etc/systemd/system/docker.service.d/10-machine.conf``) and runs ``sshd -D``.  Killing PID 1
ends the VM (the kernel kills the whole PID namespace).

What is not a real VM: the kernel is the host's, NICs and DHCP are made from outside (the lab's
VM hook does that as for the other lab VMs), and ``apt-get update`` succeeds without fetching
(the VM has no internet; every package docker-machine asks for is already installed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("LABCTL_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("openssh-server", "sudo", "iptables", "iproute2", "docker.io", "procps",
            "ca-certificates", "curl")
DEBOOTSTRAP_TIMEOUT = 900

#: PID 1 of the VM.
INIT = r"""#!/bin/sh
# labctl lab "fuller VM": PID 1.  As a real boot2docker/Debian boot: forwarding off until
# dockerd starts (dockerd then switches it on and sets the FORWARD policy to DROP), docker
# started by its service manager, sshd in the foreground of the init.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
hostname "$(cat /etc/hostname)"
ip link set lo up
sysctl -qw net.ipv4.ip_forward=0
mkdir -p /run/sshd /var/log
chmod 0755 /run/sshd
systemctl start docker >> /var/log/labctl-init.log 2>&1
if [ ! -e /etc/labctl-no-sshd ]; then
  /usr/sbin/sshd -D -e >> /var/log/sshd.log 2>&1 &
  i=0; while [ $i -lt 100 ] && ! ss -Hltn 'sport = :22' | grep -q .; do sleep 0.1; i=$((i+1)); done
fi
echo booted > /run/labctl-booted
trap 'kill -TERM -1; exit 0' TERM INT
while :; do wait; sleep 1; done
"""

#: systemctl stand-in: only what docker-machine's systemd provisioner and labctl ask for.
SYSTEMCTL = r"""#!/bin/sh
# labctl lab "fuller VM": a small systemctl.  It knows two services, docker and containerd,
# and starts them the way systemd would: the unit's ExecStart, or the last ExecStart of its
# drop-ins in /etc/systemd/system/NAME.service.d/ (docker-machine writes 10-machine.conf
# there), with the Environment= values.  Debian's docker.service starts dockerd with `-H fd://`
# (a socket systemd opens from docker.socket, /run/docker.sock) and wants containerd.service:
# both are modelled.  daemon-reload, enable and the like succeed without doing anything.

unitfile() { for d in /etc/systemd/system /lib/systemd/system; do
  [ -f "$d/$1.service" ] && { echo "$d/$1.service"; return; }; done; }

execstart() {
  line=""
  for f in "$(unitfile "$1")" /etc/systemd/system/"$1".service.d/*.conf; do
    [ -f "$f" ] || continue
    while IFS= read -r l; do
      case "$l" in ExecStart=*) line="${l#ExecStart=}" ;; esac
    done < "$f"
  done
  printf '%s\n' "$line" | sed 's#-H fd://#-H unix:///run/docker.sock#'
}

execstartpost() {
  for f in "$(unitfile "$1")" /etc/systemd/system/"$1".service.d/*.conf; do
    [ -f "$f" ] || continue
    sed -n 's/^ExecStartPost=//p' "$f"
  done
}

environment() {
  for f in "$(unitfile "$1")" /etc/systemd/system/"$1".service.d/*.conf; do
    [ -f "$f" ] || continue
    sed -n 's/^Environment=//p' "$f"
  done
}

pidfile() { echo "/run/labctl-$1.pid"; }
running() { p=$(pidfile "$1"); [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null; }

stop_service() {
  local pid i
  if running "$1"; then
    pid=$(cat "$(pidfile "$1")")
    kill "$pid"
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$(pidfile "$1")"
}

ready() {
  case "$1" in
    docker) docker version > /dev/null 2>&1 ;;
    containerd) [ -S /run/containerd/containerd.sock ] ;;
  esac
}

start_service() {
  local cmd env log i
  running "$1" && return 0
  cmd=$(execstart "$1")
  [ -n "$cmd" ] || { echo "$1.service: no ExecStart" >&2; return 1; }
  case "$cmd" in *--containerd=*) start_service containerd || return 1 ;; esac
  env=$(environment "$1")
  log=/var/log/$1.log
  echo "--- $(date +%T) start: $cmd" >> "$log"
  # shellcheck disable=SC2086 (systemd splits ExecStart into words as well)
  eval "exec env $env $cmd" < /dev/null >> "$log" 2>&1 &
  echo $! > "$(pidfile "$1")"
  i=0
  while [ $i -lt 300 ]; do
    if ready "$1"; then
      execstartpost "$1" | while IFS= read -r post; do
        echo "--- $(date +%T) post: $post" >> "$log"
        eval "$post" >> "$log" 2>&1 || echo "$1.service: ExecStartPost failed: $post" >&2
      done
      return 0
    fi
    running "$1" || { echo "$1.service: the daemon exited; see $log" >&2; tail -n 5 "$log" >&2; return 1; }
    sleep 0.2; i=$((i+1))
  done
  echo "$1.service: no answer in 60 s" >&2
  return 1
}

while [ $# -gt 0 ]; do
  case "$1" in -f|--force|-q|--quiet|--no-block|--now|--no-pager) shift ;; *) break ;; esac
done
verb="$1"; shift
case "$verb" in
  daemon-reload|enable|disable|mask|unmask|reset-failed) exit 0 ;;
esac
unit="${1%.service}"
case "$unit" in docker|containerd) ;; *)
  echo "Failed to $verb $1.service: Unit $1.service not found." >&2; exit 5 ;; esac
case "$verb" in
  start) start_service "$unit" ;;
  stop) stop_service "$unit" ;;
  restart|reload-or-restart|try-restart) stop_service "$unit"; start_service "$unit" ;;
  is-active) running "$unit" && { echo active; exit 0; }; echo inactive; exit 3 ;;
  status) running "$unit" && { echo "$unit.service - active (running)"; exit 0; }
          echo "$unit.service - inactive"; exit 3 ;;
  *) echo "systemctl (lab stand-in): $verb is not supported" >&2; exit 1 ;;
esac
"""

#: apt-get without network: update fetches nothing, install of what is installed succeeds.
APT_GET = r"""#!/bin/sh
# labctl lab "fuller VM": the VM has no internet.  `apt-get update` fetches nothing;
# everything else is the real apt-get (installing an installed package is a no-op).
for a in "$@"; do
  [ "$a" = update ] && { echo "Reading package lists... Done"; exit 0; }
done
exec /usr/bin/apt-get "$@"
"""

SSHD_CONFIG = """\
# labctl lab "fuller VM"
UseDNS no
PasswordAuthentication no
PermitRootLogin prohibit-password
"""

#: name -> (path in the root, mode, content); part of the recipe (and of its hash)
FILES: dict[str, tuple[str, int, str]] = {
    "init": ("usr/local/sbin/labctl-vm-init", 0o755, INIT),
    "systemctl": ("usr/local/bin/systemctl", 0o755, SYSTEMCTL),
    "apt-get": ("usr/local/bin/apt-get", 0o755, APT_GET),
    "sshd": ("etc/ssh/sshd_config.d/labctl.conf", 0o644, SSHD_CONFIG),
    # docker-machine's drop-in starts /usr/bin/dockerd (where get.docker.com installs it);
    # Debian's docker.io has it in /usr/sbin
    "dockerd": ("usr/bin/dockerd", 0o777, "->/usr/sbin/dockerd"),
}


def recipe() -> str:
    """What the cached root is made of (its hash names the cache).  The FILES above are not
    part of it: each boot writes them into the VM's own layer, so changing them needs no
    rebuild."""
    return "\n".join([f"suite={SUITE}", "variant=minbase", f"include={','.join(PACKAGES)}",
                      "post=ssh-keygen -A; useradd lab (sudo NOPASSWD)"])


def cache_root() -> Path:
    return Path(os.environ.get("LABCTL_TEST_CACHE") or "/var/cache/labctl-tests")


def rootfs_dir() -> Path:
    key = hashlib.sha256(recipe().encode()).hexdigest()[:12]
    return cache_root() / f"fullvm-{key}"


def problem() -> str | None:
    """Why a fuller VM cannot run here (None: it can, possibly after building the root)."""
    if os.geteuid() != 0:
        return "the fuller lab VM needs root (namespaces, mounts)"
    missing = [t for t in ("unshare", "nsenter", "pivot_root", "ip") if shutil.which(t) is None]
    if (rootfs_dir() / "ready").exists():
        return f"the fuller lab VM needs {', '.join(missing)}" if missing else None
    if shutil.which("debootstrap") is None:
        missing.append("debootstrap")
    if missing:
        return f"the fuller lab VM needs {', '.join(missing)} (apt-get install debootstrap util-linux)"
    return None


def require_fullvm() -> None:
    import pytest

    from tests.lab.netns import in_ci

    why = problem()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"{why} (CI=true: lab tests must run)")
    pytest.skip(why)


def _write_files(root: Path) -> None:
    for path, mode, text in FILES.values():
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("->"):
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            dest.symlink_to(text[2:])
            continue
        dest.write_text(text)
        dest.chmod(mode)


def _chroot(root: Path, *argv: str) -> None:
    subprocess.run(["chroot", str(root), *argv], check=True, capture_output=True, timeout=120,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})


def build(dest: Path, log: Path) -> None:
    """debootstrap + the recipe's files into ``dest`` (which must not exist)."""
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
            str(dest), MIRROR]
    with open(log, "ab") as out:
        subprocess.run(argv, check=True, stdout=out, stderr=subprocess.STDOUT,
                       timeout=DEBOOTSTRAP_TIMEOUT, stdin=subprocess.DEVNULL)
    _chroot(dest, "ssh-keygen", "-A")
    _chroot(dest, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "lab")
    (dest / "etc/sudoers.d/lab").write_text("lab ALL=(ALL) NOPASSWD:ALL\n")
    (dest / "etc/sudoers.d/lab").chmod(0o440)
    # the VM's own apt caches go with the overlay; nothing of the host's is needed in it
    shutil.rmtree(dest / "var/cache/apt/archives", ignore_errors=True)
    (dest / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (dest / "etc/labctl-recipe").write_text(recipe() + "\n")


def rootfs() -> Path:
    """The cached root, built on first use (serialised between processes by a lock)."""
    final = rootfs_dir()
    ready = final / "ready"
    if ready.exists():
        return final / "root"
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return final / "root"
        tmp = final.parent / f".{final.name}.build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        log = final.parent / f"{final.name}.build.log"
        try:
            tmp.mkdir(parents=True)
            build(tmp / "root", log)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / "ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        tmp.rename(final)
    return final / "root"


#: runs in the VM's network namespace, after ``unshare --mount --uts --pid --fork``: mount the
#: VM's file systems, pivot_root into them, exec the init (PID 1 of the new PID namespace).
LAUNCH = r"""set -eu
lower=$1 upper=$2 work=$3 merged=$4 docker=$5
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
mount --bind "$docker" "$merged/var/lib/docker"
mount --rbind /dev "$merged/dev"
mount -t proc proc "$merged/proc"
mount -t sysfs sysfs "$merged/sys"
mount --rbind /sys/fs/cgroup "$merged/sys/fs/cgroup"
mkdir -p "$merged/.oldroot"
cd "$merged"
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot 2>/dev/null || true
exec /usr/local/sbin/labctl-vm-init
"""


class FullVM:
    """One fuller VM.  ``disk`` keeps what the VM wrote (the overlay's upper layer and
    dockerd's data) across boots, as a VM disk does; ``run_dir`` holds the pid and logs."""

    def __init__(self, ns: str, disk: Path, run_dir: Path, *, hostname: str,
                 authorized_keys: list[str], user: str = "lab", os_release: str | None = None,
                 cgroup: str = "", sshd: bool = True) -> None:
        self.sshd = sshd
        self.ns = ns
        self.disk = Path(disk)
        self.run_dir = Path(run_dir)
        self.hostname = hostname
        self.authorized_keys = authorized_keys
        self.user = user
        self.os_release = os_release
        self.cgroup = cgroup or f"labctl-fvm-{ns}"

    @property
    def upper(self) -> Path:
        return self.disk / "upper"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "fullvm.pid"

    def _layer(self) -> None:
        """The VM's own layer: the recipe's files (fresh each boot, like a package upgrade),
        its name, the user's key, its daemon.json; /run emptied (a reboot clears it)."""
        up = self.upper
        shutil.rmtree(up / "run", ignore_errors=True)
        (up / "run").mkdir(parents=True, exist_ok=True)
        (up / "var/lib/docker").mkdir(parents=True, exist_ok=True)  # dockerd's data: a real fs
        _write_files(up)
        (up / "etc").mkdir(parents=True, exist_ok=True)
        if not (up / "etc/hostname").exists():  # as the installer left it
            (up / "etc/hostname").write_text(self.hostname + "\n")
            hosts = (rootfs() / "etc/hosts").read_text()
            (up / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.hostname}\n" +
                                          hosts.replace("127.0.0.1\tlocalhost\n", ""))
        if self.os_release is not None:
            (up / "etc/os-release").write_text(self.os_release)
        nosshd = up / "etc/labctl-no-sshd"  # a VM whose sshd is not enabled
        if self.sshd:
            nosshd.unlink(missing_ok=True)
        else:
            nosshd.write_text("sshd is not enabled in this VM\n")
        home = up / "home" / self.user / ".ssh"
        home.mkdir(parents=True, exist_ok=True)
        (home / "authorized_keys").write_text("".join(k.strip() + "\n" for k in self.authorized_keys))
        uid = gid = 1000  # the recipe's user "lab"
        for p in (home.parent, home, home / "authorized_keys"):
            os.chown(p, uid, gid)
        home.chmod(0o700)
        (home / "authorized_keys").chmod(0o600)
        # distribution configuration: this VM's containers go in cgroups of their own
        (up / "etc/docker").mkdir(parents=True, exist_ok=True)
        (up / "etc/docker/daemon.json").write_text(json.dumps(
            {"cgroup-parent": f"/{self.cgroup}", "exec-opts": ["native.cgroupdriver=cgroupfs"]}) + "\n")

    def boot(self, timeout: float = 120.0) -> None:
        lower = rootfs()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for d in ("upper", "work", "merged", "docker"):
            (self.disk / d).mkdir(parents=True, exist_ok=True)
        self._layer()
        marker = self.upper / "run/labctl-booted"
        argv = ["nsenter", f"--net=/run/netns/{self.ns}", "unshare", "--mount", "--uts", "--pid",
                "--kill-child=SIGKILL", "--propagation", "private", "sh", "-c", LAUNCH, "sh",
                str(lower), str(self.upper), str(self.disk / "work"), str(self.disk / "merged"),
                str(self.disk / "docker")]
        with open(self.run_dir / "boot.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the fuller VM stopped while booting ({proc.returncode}): "
                                   f"{self.log_tail()}")
            if marker.exists():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the fuller VM did not boot within {timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        out = []
        for p in (self.run_dir / "boot.log", self.upper / "var/log/labctl-init.log",
                  self.upper / "var/log/dockerd.log"):
            with contextlib.suppress(OSError):
                out += [f"{p.name}: {line}" for line in p.read_text(errors="replace").splitlines()[-lines:]]
        return " | ".join(out)

    @property
    def running(self) -> bool:
        pid = _pid(self.pidfile)
        return pid is not None and _alive(pid)

    def halt(self) -> None:
        """Power off: the unshare process dies, its child (PID 1) with it, and with PID 1
        every process of the VM; the VM's mounts go with its mount namespace."""
        pid = _pid(self.pidfile)
        if pid is not None and _alive(pid) and "unshare" in _cmdline(pid):
            # a clean shutdown first: the init (unshare's child) passes SIGTERM on to every
            # process and exits; unshare itself ignores SIGTERM while it waits for its child
            for child in _children(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # --kill-child: its child dies with it
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)


# ---- a user's VM folder whose disk holds a fuller VM ------------------------------------------------
GUEST_MARK = "labctl-lab-guest"


def guest_of(vmx: Path) -> dict | None:
    """The guest a VM's disk holds, when it is a fuller VM: the first ``*.fileName`` of the
    .vmx that names a .vmdk is, in the lab, a small JSON file ``{"labctl-lab-guest":
    "fullvm", "hostname": …, "user": …, "authorized_keys": […], "os_release": …,
    "tools": true}`` (the VM's "installed OS").  None for any other VM."""
    from labctl.hypervisor.vmware.vmx import Vmx

    try:
        conf = Vmx.parse(Path(vmx).read_bytes())
    except OSError:
        return None
    for key, value in conf.items().items():
        if key.lower().endswith(".filename") and value.lower().endswith(".vmdk"):
            disk = Path(value) if Path(value).is_absolute() else Path(vmx).parent / value
            try:
                data = json.loads(disk.read_text())
            except (OSError, ValueError):
                return None
            return data if isinstance(data, dict) and data.get(GUEST_MARK) == "fullvm" else None
    return None


def write_guest(vmdk: Path, *, hostname: str, authorized_keys: list[str], user: str = "lab",
                os_release: str | None = None, tools: bool = True, sshd: bool = True) -> None:
    vmdk.write_text(json.dumps({GUEST_MARK: "fullvm", "hostname": hostname, "user": user,
                                "authorized_keys": authorized_keys, "os_release": os_release,
                                "tools": tools, "sshd": sshd}, indent=1) + "\n")


def _pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main() -> None:  # pragma: no cover - python -m tests.lab.fullvm: build the cache
    started = time.monotonic()
    path = rootfs()
    print(f"{path} ready ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
