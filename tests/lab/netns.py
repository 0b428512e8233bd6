"""Lab in a box: network namespaces joined by veth pairs, a real ISC dhcpd, a real dhclient.

    from tests.lab.netns import Lab, require_lab

    require_lab()                       # skip unless root + ip/dhcpd/dhclient (CI=true: fail)
    with Lab() as lab:                  # unique short prefix per run, e.g. lab.prefix == "l4f2a"
        desk = lab.netns("desk")        # namespace f"{lab.prefix}-desk"
        vm = lab.netns("vm")
        lab.veth(desk, "vmnet2", vm, "eth1", mac="00:50:56:2a:bb:cc")
        lab.addr(desk, "vmnet2", "192.168.99.1/24")
        server = lab.start_dhcpd(desk, conf_path, "vmnet2")
        ip = lab.dhclient(vm, "eth1")   # "192.168.99.10" or None

Everything a Lab starts lives in its own namespaces and its own temporary directory; on exit
(and at interpreter exit, should a test be killed mid-way) it kills every process still in
its namespaces by pid, deletes the namespaces and removes the directory.  Nothing is written
under /var/lib/dhcp or /etc: dhclient gets its own lease, pid and config files and a
minimal script that only sets the interface address (Debian's dhclient-script would also
rewrite the host's /etc/resolv.conf).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

TOOLS = ("ip", "dhcpd", "dhclient")

DHCLIENT_SCRIPT = """#!/bin/sh
# labctl lab: a minimal dhclient script.  It sets (or removes) the interface address and
# nothing else: no resolv.conf, no hostname, no NTP.
echo "$interface $reason ${new_ip_address:-} ${old_ip_address:-}" >> "$0.log"
case "$reason" in
  PREINIT)
    ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr flush dev "$interface"
    fi
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    for router in $new_routers; do
      ip -4 route replace default via "$router" dev "$interface"
      break
    done ;;
  EXPIRE|FAIL|RELEASE|STOP)
    if [ -n "$old_ip_address" ]; then
      ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi ;;
esac
exit 0
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def lab_problem() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (f"lab tests need {', '.join(missing)} "
                "(apt-get install iproute2 isc-dhcp-server isc-dhcp-client)")
    if not Path("/run").is_dir():
        return "lab tests need /run for network namespaces"
    return None


def require_lab(*tools: str) -> None:
    """Skip the calling test unless the lab can run (root, ip, dhcpd, dhclient and any extra
    ``tools``); with CI=true a missing piece fails the test instead."""
    problem = lab_problem()
    if problem is None:
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            problem = f"lab test needs {', '.join(missing)}"
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem} (CI=true: lab tests must run)")
    pytest.skip(problem)


def require_tools(*tools: str) -> None:
    """Skip unless every tool is on PATH (no root needed); with CI=true fail instead."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    problem = f"test needs {', '.join(missing)}"
    if in_ci():
        pytest.fail(f"{problem} (CI=true: .ci/run installs it)")
    pytest.skip(problem)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


def _read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL one process by pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                return
            time.sleep(0.05)


class DhcpServer:
    """A real ISC dhcpd serving one interface of a namespace (foreground, logging to
    ``log_path``).  The VMware tool stand-ins restart it through the same pid file."""

    def __init__(self, lab: Lab, netns: str, conf_path: Path, interface: str,
                 leases_path: Path, pidfile: Path, log_path: Path) -> None:
        self.lab = lab
        self.netns = netns
        self.conf_path = Path(conf_path)
        self.interface = interface
        self.leases_path = Path(leases_path)
        self.pidfile = Path(pidfile)
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, "dhcpd", "-4", "-f", "-d",
                "-cf", str(self.conf_path), "-lf", str(self.leases_path),
                "-pf", str(self.pidfile), self.interface]

    def as_standin_entry(self) -> dict[str, str]:
        """What the vmnet-cli / vmware-networks stand-ins need to restart this server."""
        return {"netns": self.netns, "interface": self.interface, "conf": str(self.conf_path),
                "leases": str(self.leases_path), "pidfile": str(self.pidfile),
                "log": str(self.log_path)}

    @property
    def pid(self) -> int | None:
        """The running dhcpd's pid (it changes when a stand-in restarts it)."""
        pid = _read_pid(self.pidfile)
        if pid is not None and _alive(pid):
            return pid
        return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 10.0) -> None:
        self.leases_path.parent.mkdir(parents=True, exist_ok=True)
        self.leases_path.touch(exist_ok=True)
        self.pidfile.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.lab._pids.append(self._proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dhcpd exited with {self._proc.returncode}:\n{self.log_tail()}")
            if _read_pid(self.pidfile) == self._proc.pid:
                return
            time.sleep(0.05)
        raise RuntimeError(f"dhcpd did not write {self.pidfile} within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        pid = _read_pid(self.pidfile)
        if pid is not None and str(self.pidfile) in _cmdline(pid):
            kill_pid(pid)
        if self._proc is not None:
            if self._proc.poll() is None:
                kill_pid(self._proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def leases_text(self) -> str:
        return self.leases_path.read_text(errors="replace") if self.leases_path.exists() else ""


_LIVE: set[Lab] = set()


@atexit.register
def _teardown_leftovers() -> None:
    for lab in list(_LIVE):
        lab.close()


class Lab:
    """A set of uniquely named network namespaces and the processes in them."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or self._fresh_prefix()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"labctl-{self.prefix}-"))
        self.namespaces: list[str] = []
        self.servers: list[DhcpServer] = []
        self._pids: list[int] = []
        self._popens: list[subprocess.Popen[bytes]] = []
        self._links = 0
        self._closed = False
        self.script = self.tmp / "dhclient-script"
        self.script.write_text(DHCLIENT_SCRIPT)
        self.script.chmod(0o755)
        _LIVE.add(self)

    @staticmethod
    def _fresh_prefix() -> str:
        """'l' + 4 hex digits not used by any namespace that exists now."""
        taken = {p.name.split("-")[0] for p in Path("/run/netns").glob("*-*")} \
            if Path("/run/netns").is_dir() else set()
        while True:
            prefix = "l" + secrets.token_hex(2)
            if prefix not in taken:
                return prefix

    # ---- context -------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __hash__(self) -> int:
        return id(self)

    # ---- building ------------------------------------------------------------------------
    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)

    def netns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        self._ip("netns", "add", ns)
        self.namespaces.append(ns)
        self._ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, mac: str | None = None,
             mac_a: str | None = None) -> None:
        """A veth pair: ``if_a`` in ``ns_a``, ``if_b`` (with ``mac``) in ``ns_b``; both up."""
        self._links += 1
        tmp_a = f"{self.prefix}a{self._links}"
        tmp_b = f"{self.prefix}b{self._links}"
        self._ip("link", "add", tmp_a, "netns", ns_a, "type", "veth", "peer", "name", tmp_b,
                 "netns", ns_b)
        self._ip("-n", ns_a, "link", "set", tmp_a, "name", if_a)
        self._ip("-n", ns_b, "link", "set", tmp_b, "name", if_b)
        if mac_a:
            self._ip("-n", ns_a, "link", "set", if_a, "address", mac_a)
        if mac:
            self._ip("-n", ns_b, "link", "set", if_b, "address", mac)
        self._ip("-n", ns_a, "link", "set", if_a, "up")
        self._ip("-n", ns_b, "link", "set", if_b, "up")

    def addr(self, ns: str, ifname: str, cidr: str) -> None:
        self._ip("-n", ns, "addr", "add", cidr, "dev", ifname)

    def addresses(self, ns: str, ifname: str) -> list[str]:
        """IPv4 addresses on an interface, without prefix length."""
        out = subprocess.run(["ip", "-n", ns, "-j", "-4", "addr", "show", "dev", ifname],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        return [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])]

    def run(self, ns: str, argv: list[str], check: bool = True, timeout: float = 30,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout,
                              capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]

    def spawn(self, ns: str, argv: list[str], log_path: Path | str,
              nsenter: bool = False) -> subprocess.Popen[bytes]:
        """A long-running process in ``ns`` (output to ``log_path``), killed at teardown.
        ``nsenter=True`` enters only the network namespace (``nsenter --net=``), keeping the
        host's /sys and cgroups visible, as dockerd needs; ``ip netns exec`` remounts /sys."""
        prefix = (["nsenter", f"--net=/run/netns/{ns}"] if nsenter
                  else ["ip", "netns", "exec", ns])
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([*prefix, *argv], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._popens.append(proc)
        self._pids.append(proc.pid)
        return proc

    # ---- DHCP ------------------------------------------------------------------------------
    def start_dhcpd(self, ns: str, conf_path: Path | str, interface: str,
                    leases_path: Path | str | None = None) -> DhcpServer:
        tag = f"{ns}-{interface}"
        server = DhcpServer(self, ns, Path(conf_path), interface,
                            Path(leases_path) if leases_path else self.tmp / f"dhcpd-{tag}.leases",
                            self.tmp / f"dhcpd-{tag}.pid", self.tmp / f"dhcpd-{tag}.log")
        self.servers.append(server)
        server.start()
        return server

    def _client_files(self, ns: str, ifname: str) -> dict[str, Path]:
        tag = f"{ns}-{ifname}"
        return {k: self.tmp / f"dhclient-{tag}.{k}" for k in ("pid", "leases", "conf", "log")}

    def dhclient(self, ns: str, ifname: str, timeout: int = 20,
                 keep_leases: bool = False) -> str | None:
        """Run a real ``dhclient -1`` on ``ifname``; return the IPv4 address it was given (now
        on the interface) or None.  A previous client on the interface is stopped first; its
        lease file is forgotten unless ``keep_leases``."""
        f = self._client_files(ns, ifname)
        self._stop_client(f["pid"])
        if not keep_leases:
            f["leases"].unlink(missing_ok=True)
        subprocess.run(["ip", "-n", ns, "-4", "addr", "flush", "dev", ifname], check=True,
                       capture_output=True, timeout=30)
        f["conf"].write_text(f"timeout {timeout};\nretry 60;\ninitial-interval 1;\n"
                             "backoff-cutoff 2;\n")
        argv = ["ip", "netns", "exec", ns, "dhclient", "-4", "-1", "-v", "-pf", str(f["pid"]),
                "-lf", str(f["leases"]), "-cf", str(f["conf"]), "-sf", str(self.script), ifname]
        with open(f["log"], "ab") as log:
            log.write(f"--- dhclient {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            # Output to a file, not a pipe: the client daemonises after it binds and would keep
            # a pipe open.
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout + 15)
        pid = _read_pid(f["pid"])
        if pid is not None:
            self._pids.append(pid)
        if proc.returncode != 0:
            return None
        addrs = self.addresses(ns, ifname)
        return addrs[0] if addrs else None

    def dhclient_release(self, ns: str, ifname: str) -> None:
        """``dhclient -r``: send DHCPRELEASE, stop the client, drop the address."""
        f = self._client_files(ns, ifname)
        if not f["conf"].exists():
            return
        with open(f["log"], "ab") as log:
            subprocess.run(["ip", "netns", "exec", ns, "dhclient", "-4", "-r", "-v",
                            "-pf", str(f["pid"]), "-lf", str(f["leases"]), "-cf", str(f["conf"]),
                            "-sf", str(self.script), ifname],
                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           timeout=30, check=False)
        self._stop_client(f["pid"])

    def dhclient_log(self, ns: str, ifname: str) -> str:
        path = self._client_files(ns, ifname)["log"]
        return path.read_text(errors="replace") if path.exists() else ""

    def _stop_client(self, pidfile: Path) -> None:
        pid = _read_pid(pidfile)
        if pid is not None and "dhclient" in " ".join(_cmdline(pid)):
            kill_pid(pid)
        pidfile.unlink(missing_ok=True)

    # ---- teardown -------------------------------------------------------------------------
    def ns_pids(self, ns: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                             timeout=30).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def close(self) -> None:
        """Kill what runs in the lab's namespaces (by pid), delete them, remove the tmp dir.
        Safe to call twice; never raises."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        pids = set(self._pids)
        for ns in self.namespaces:
            with contextlib.suppress(Exception):
                pids.update(self.ns_pids(ns))
        for pid in pids:
            with contextlib.suppress(Exception):
                kill_pid(pid)
        for proc in self._popens:
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- VMware tool stand-ins --------------------------------------------------------------------
STANDINS = Path(__file__).resolve().parent.parent / "standins"
FUSION_TOOL = "Applications/VMware Fusion.app/Contents/Library/vmnet-cli"
WORKSTATION_TOOL = "usr/bin/vmware-networks"


def install_standin(root: Path, platform: str) -> Path:
    """Put the vmnet-cli (darwin) or vmware-networks (linux) stand-in where labctl looks for
    the real tool under LABCTL_ROOT ``root``; return its path."""
    name, rel = ("vmnet-cli", FUSION_TOOL) if platform == "darwin" else ("vmware-networks",
                                                                         WORKSTATION_TOOL)
    dest = Path(root) / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(STANDINS / name, dest)
    dest.chmod(0o755)
    (Path(root) / ".standin").mkdir(exist_ok=True)
    return dest


def register_vmnet(root: Path, number: int, server: DhcpServer, **extra: object) -> None:
    """Tell the stand-ins which real dhcpd serves vmnet ``number`` (``$root/.standin/vmnets.json``)."""
    path = Path(root) / ".standin" / "vmnets.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[str(number)] = {**server.as_standin_entry(), **extra}
    path.write_text(json.dumps(data, indent=2) + "\n")


def standin_calls(root: Path) -> list[list[str]]:
    """Every argv the stand-ins were invoked with, oldest first (argv[0] excluded)."""
    path = Path(root) / ".standin" / "calls.log"
    if not path.exists():
        return []
    return [json.loads(line)["args"] for line in path.read_text().splitlines() if line.strip()]
