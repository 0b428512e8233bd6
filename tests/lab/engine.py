"""Lab in a box, step 2: a real Docker Engine in the VM namespace, on TCP with TLS.

    from tests.lab.engine import DockerEngine, require_engine
    require_engine()                               # skip unless root + dockerd/docker/openssl/busybox
    with Lab() as lab:
        vm = lab.netns("vm"); ...; lab.addr(vm, "eth1", "192.168.99.100/24")
        eng = DockerEngine(lab, vm, "192.168.99.100")
        eng.start()                                # dockerd -H unix://S -H tcp://IP:2376 --tlsverify …
        eng.import_busybox()                       # labbox:latest from busybox-static
        cid = eng.docker("run", "-d", "labbox:latest", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
        eng.env                                    # DOCKER_CERT_PATH/DOCKER_TLS_VERIFY for clients
        eng.url                                    # tcp://192.168.99.100:2376

The certificates (a CA, a server certificate for the VM's IP, a client certificate) are made
with openssl for each run.  dockerd runs under ``nsenter --net`` so it shares the host's
mount and cgroup view (``--cgroup-parent`` is unique per run) but owns the namespace's
network: docker0 and every bridge live inside the VM namespace.  ``stop`` (called by the
Lab at teardown too) removes the containers, stops dockerd by pid, unmounts anything left
under its directories and deletes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from tests.lab.netns import Lab, _alive, _read_pid, kill_pid, require_lab

ENGINE_TOOLS = ("dockerd", "docker", "openssl", "busybox", "nsenter")
IMAGE = "labbox:latest"
INDEX = "labctl-lab-httpd-ok\n"


def require_engine() -> None:
    """Skip unless the engine lab can run (root, the lab tools, dockerd and friends); with
    CI=true a missing piece fails instead."""
    require_lab(*ENGINE_TOOLS)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: Path, server_ip: str, ca: tuple[Path, Path] | None = None) -> dict[str, Path]:
    """A CA (or the given (ca.pem, ca-key.pem), e.g. a docker-machine store's), a server
    certificate for ``server_ip`` and a client certificate (EC P-256)."""
    d.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if ca is None:
        _openssl("req", "-x509", *key, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=labctl-lab-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    else:
        shutil.copy(ca[0], d / "ca.pem")
        shutil.copy(ca[1], d / "ca-key.pem")
    for name, ext in (("server", f"subjectAltName=IP:{server_ip},IP:127.0.0.1\n"
                                 "extendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *key, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                 "-subj", f"/CN=labctl-lab-{name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
                 cwd=d)
    client = d / "client"
    client.mkdir(exist_ok=True)
    shutil.copy(d / "ca.pem", client / "ca.pem")
    shutil.copy(d / "client.pem", client / "cert.pem")
    shutil.copy(d / "client-key.pem", client / "key.pem")
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server-key.pem",
            "client_dir": client}


def busybox_rootfs(root: Path) -> Path:
    """/bin/busybox (static) with a symlink per applet, and /www/index.html."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            with contextlib.suppress(FileExistsError):
                (root / "bin" / applet).symlink_to("busybox")
    for sub in ("www", "tmp", "etc", "proc", "sys", "dev"):
        (root / sub).mkdir(exist_ok=True)
    (root / "www" / "index.html").write_text(INDEX)
    return root


class DockerEngine:
    def __init__(self, lab: Lab, netns: str, ip: str, port: int = 2376) -> None:
        self.lab = lab
        self.netns = netns
        self.ip = ip
        self.port = port
        self.dir = lab.tmp / f"engine-{netns}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "dockerd.pid"
        self.log_path = self.dir / "dockerd.log"
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"
        self.certs: dict[str, Path] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        lab_close = lab.close

        def close_with_engine() -> None:  # the engine goes before the namespaces
            with contextlib.suppress(Exception):
                self.stop()
            lab_close()

        lab.close = close_with_engine  # type: ignore[method-assign]

    @property
    def url(self) -> str:
        return f"tcp://{self.ip}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a TLS client needs (DOCKER_CERT_PATH holds ca.pem, cert.pem, key.pem)."""
        return {"DOCKER_CERT_PATH": str(self.certs["client_dir"]), "DOCKER_TLS_VERIFY": "1"}

    def argv(self) -> list[str]:
        (self.dir / "daemon.json").write_text("{}\n")
        return ["nsenter", f"--net=/run/netns/{self.netns}", "dockerd",
                "--config-file", str(self.dir / "daemon.json"),
                "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.pidfile),
                "-H", f"unix://{self.socket}", "-H", self.url,
                "--tlsverify", "--tlscacert", str(self.certs["ca"]),
                "--tlscert", str(self.certs["cert"]), "--tlskey", str(self.certs["key"]),
                "--storage-driver", "vfs", "--userland-proxy=false", "--shutdown-timeout", "2",
                "--cgroup-parent", f"/labctl-{self.lab.prefix}",
                "--exec-opt", "native.cgroupdriver=cgroupfs"]

    def start(self, timeout: float = 90.0, ca: tuple[Path, Path] | None = None) -> None:
        self.certs = make_certs(self.dir / "certs", self.ip, ca)
        self._launch(timeout)

    def open_path(self, iface: str, source: str) -> None:
        """What ``labctl up`` does in the VM: accept routed traffic arriving on ``iface`` from
        ``source`` in DOCKER-USER (for lab tests of routes alone, without ``up``)."""
        self.iptables("-I", "DOCKER-USER", "-i", iface, "-s", source, "-j", "ACCEPT")

    def close_path(self, iface: str, source: str) -> None:
        self.iptables("-D", "DOCKER-USER", "-i", iface, "-s", source, "-j", "ACCEPT")

    def iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "netns", "exec", self.netns, "iptables", *args],
                              capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def restart(self, timeout: float = 90.0) -> None:
        """Stop dockerd (containers stop with it) and start it again with the same data."""
        pid = _read_pid(self.pidfile)
        if pid is not None and _alive(pid):
            kill_pid(pid, timeout=20)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        self._launch(timeout)

    def _launch(self, timeout: float) -> None:
        # as strict as boot2docker >= 18.09: forwarding is off until dockerd starts, so dockerd
        # switches it on itself and sets the FORWARD policy to DROP (only published ports and
        # DOCKER-USER accepts get through)
        subprocess.run(["ip", "netns", "exec", self.netns, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
                       check=True, capture_output=True, timeout=30)
        with open(self.log_path, "ab") as log:
            # TMPDIR: containerd's stack dumps land in the engine's own dir, removed at teardown
            self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, "TMPDIR": str(self.log_path.parent)})
        self.lab._pids.append(self._proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.socket.exists() and self.docker("version", "--format", "{{.Server.Version}}",
                                                     check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer within {timeout}s:\n{self.log_tail()}")

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The docker CLI over the unix socket (no TLS needed there)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.dir / "cli")
        proc = subprocess.run(["docker", "-H", f"unix://{self.socket}", *args], capture_output=True,
                              input=input, timeout=timeout, env=env)
        out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({out.returncode}): {out.stderr}")
        return out

    def import_busybox(self) -> None:
        root = busybox_rootfs(self.dir / "busybox-root")
        tar_path = self.dir / "busybox.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(root, arcname=".")
        self.docker("import", "-", IMAGE, input=tar_path.read_bytes())

    def run_httpd(self, network: str | None = None, name: str | None = None) -> tuple[str, str]:
        """A busybox httpd container; returns (id, its IP on ``network`` or the default bridge)."""
        args = ["run", "-d"]
        if network:
            args += ["--network", network]
        if name:
            args += ["--name", name]
        cid = self.docker(*args, IMAGE, "/bin/httpd", "-f", "-p", "80", "-h", "/www").stdout.strip()
        return cid, self.container_ip(cid)

    def run_sleep(self, network: str | None = None) -> tuple[str, str]:
        args = ["run", "-d"] + (["--network", network] if network else [])
        cid = self.docker(*args, IMAGE, "/bin/sleep", "600").stdout.strip()
        return cid, self.container_ip(cid)

    def container_ip(self, cid: str) -> str:
        data = json.loads(self.docker("inspect", cid).stdout)[0]
        nets = data["NetworkSettings"]["Networks"]
        return next(iter(nets.values()))["IPAddress"]

    def network_inspect(self, name: str) -> dict:
        return json.loads(self.docker("network", "inspect", name).stdout)[0]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.socket.exists():
            ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=60)
        pid = _read_pid(self.pidfile)
        if pid is not None and _alive(pid):
            kill_pid(pid, timeout=20)
        if self._proc is not None:
            if self._proc.poll() is None:
                kill_pid(self._proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        # containerd-shims started for this engine carry our exec-root in their command line
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if str(self.dir) in cmd:
                    kill_pid(int(proc.name), timeout=5)
        self._unmount_below(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        self._remove_cgroups(f"labctl-{self.lab.prefix}")

    @staticmethod
    def _remove_cgroups(name: str) -> None:
        """The per-run --cgroup-parent directories (empty once the containers are gone)."""
        for top in Path("/sys/fs/cgroup").glob(f"*/{name}"):
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                            reverse=True) + [top]:
                with contextlib.suppress(OSError):
                    d.rmdir()
        with contextlib.suppress(OSError):
            Path(f"/sys/fs/cgroup/{name}").rmdir()

    @staticmethod
    def _unmount_below(path: Path) -> None:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(path))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, timeout=30, check=False)
