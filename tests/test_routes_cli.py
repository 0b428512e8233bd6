"""route commands as a real subprocess: bad input is one line and exit 2, `route ls --offline`
loads no Engine SDK, `route persist` writes a validated unit and removes it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, document, one_error

IP_TABLE = [
    {"dst": "default", "gateway": "10.0.2.2", "dev": "eth0", "flags": []},
    {"dst": "192.168.99.0/24", "dev": "vmnet2", "protocol": "kernel", "scope": "link", "flags": []},
    {"dst": "172.17.0.0/16", "gateway": "192.168.99.100", "dev": "vmnet2", "flags": []},
]


@pytest.fixture
def linux_root(tmp_path):
    """A LABCTL_ROOT for Linux with stand-ins: /sbin/ip prints a fixed `ip -j route`,
    /bin/systemctl logs its arguments."""
    root = tmp_path / "root"
    (root / "sbin").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc/systemd/system").mkdir(parents=True)
    ip = root / "sbin" / "ip"
    ip.write_text("#!/bin/sh\n"
                  f"echo \"$*\" >> {tmp_path}/ip.log\n"
                  f"cat <<'EOF'\n{json.dumps(IP_TABLE)}\nEOF\n")
    ip.chmod(0o755)
    sc = root / "bin" / "systemctl"
    sc.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/systemctl.log\n")
    sc.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"version": 1, "routes": [
        {"destination": "172.17.0.0/16", "gateway": "192.168.99.100", "machine": "lab",
         "network": "bridge", "created": "2026-01-01T00:00:00Z"}]}))
    return root


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full.pop("DOCKER_HOST", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          env=full, cwd=REPO)


def labctl_env(root: Path) -> dict[str, str]:
    return {"LABCTL_ROOT": str(root), "LABCTL_PLATFORM": "linux",
            "LABCTL_STATE_DIR": str(root.parent / "state")}


@pytest.mark.parametrize("args,needle", [
    (["route", "add", "--via", "192.168.99.100", "--subnet", "172.17.0.0"], "invalid subnet '172.17.0.0'"),
    (["route", "add", "--via", "192.168.99.100", "--subnet", "172.17.0.1/16"], "host bits set"),
    (["route", "add", "--via", "192.168.99.100", "--subnet", "999.1.0.0/16"], "invalid subnet"),
    (["route", "add", "--via", "192.168.99", "--subnet", "172.17.0.0/16"], "invalid gateway '192.168.99'"),
    (["route", "add", "--via", "0.0.0.0", "--subnet", "172.17.0.0/16"], "not a unicast host address"),
    (["route", "rm", "--subnet", "10.0.0.0/33"], "invalid subnet"),
    (["route", "rm"], "--subnet CIDR (repeatable) or --all"),
    (["route", "add", "--docker-host", "http://x:1"], "invalid Docker host"),
])
def test_bad_input_is_one_line_exit_2(linux_root, args, needle):
    r = run("-m", "labctl", *args, env=labctl_env(linux_root))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [one_error(r.stderr)]
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_unreachable_engine_is_one_line(linux_root, tmp_path):
    r = run("-m", "labctl", "route", "sync", "--via", "192.168.99.100", "--docker-host",
            f"unix://{tmp_path}/no-such.sock", env=labctl_env(linux_root))
    assert r.returncode == 1
    assert one_error(r.stderr)
    assert "cannot reach the Docker Engine" in r.stderr


def test_ls_offline_reads_records_and_table_without_the_sdk(linux_root, tmp_path):
    code = ("import sys, runpy\n"
            "sys.argv = ['labctl', 'route', 'ls', '--offline', '--json']\n"
            "try:\n    runpy.run_module('labctl', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules\n"
            "               if m.split('.')[0] in ('docker', 'jinja2', 'requests', 'sh'))\n"
            "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n")
    # a real host: the table comes from /proc/net/route (this machine's, read only)
    env = {"LABCTL_PLATFORM": "linux", "LABCTL_STATE_DIR": str(tmp_path.parent / tmp_path.name / "st")}
    Path(env["LABCTL_STATE_DIR"]).mkdir()
    (Path(env["LABCTL_STATE_DIR"]) / "state.json").write_text(
        (linux_root.parent / "state" / "state.json").read_text())
    r = run("-c", code, env=env)
    assert "HEAVY=\n" in r.stderr, r.stderr
    rows = document(r.stdout, "routes")["routes"]
    assert [(x["destination"], x["network"]) for x in rows] == [("172.17.0.0/16", "bridge")]
    assert rows[0]["state"] in ("present", "missing", "conflicting")


def test_ls_offline_states_from_ip_table(linux_root):
    r = run("-m", "labctl", "route", "ls", "--offline", env=labctl_env(linux_root))
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split() == ["DESTINATION", "GATEWAY", "STATE", "NETWORK", "MACHINE", "PORTS"]
    assert row.split()[:5] == ["172.17.0.0/16", "192.168.99.100", "present", "bridge", "lab"]


def test_persist_writes_a_validated_unit_and_removes_it(linux_root, tmp_path):
    env = labctl_env(linux_root)
    unit = linux_root / "etc/systemd/system/labctl-routes-lab.service"
    dry = run("-m", "labctl", "route", "persist", "lab", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "+BindsTo=sys-subsystem-net-devices-vmnet2.device" in dry.stdout
    assert "systemctl enable --now --no-block labctl-routes-lab.service" in dry.stdout
    assert not unit.exists()
    r = run("-m", "labctl", "route", "persist", "lab", env=env)
    assert r.returncode == 0, r.stderr
    text = unit.read_text()
    assert "ExecStart=" in text and "route sync lab --offline" in text
    assert f"Environment=\"LABCTL_STATE_DIR={tmp_path / 'state'}\"" in text
    assert (tmp_path / "systemctl.log").read_text().splitlines() == [
        "daemon-reload", "enable --now --no-block labctl-routes-lab.service"]
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["units"]["routes:lab"] == str(unit)
    again = run("-m", "labctl", "route", "persist", "lab", env=env)
    assert "already in place" in again.stderr
    rm = run("-m", "labctl", "route", "persist", "lab", "--remove", env=env)
    assert rm.returncode == 0, rm.stderr
    assert not unit.exists()
    assert "routes:lab" not in json.loads((tmp_path / "state" / "state.json").read_text())["units"]


def test_persist_darwin_plist(tmp_path):
    import plistlib

    root = tmp_path / "root"
    (root / "sbin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "Library/LaunchDaemons").mkdir(parents=True)
    netstat = root / "usr/sbin/netstat"
    netstat.write_text("#!/bin/sh\ncat <<'EOF'\nRouting tables\n\nInternet:\n"
                       "Destination        Gateway            Flags        Refs      Use   Netif Expire\n"
                       "192.168.99         link#7             UC              2        0  vmnet2\n"
                       "172.17             192.168.99.100     UGSc            0        0  vmnet2\nEOF\n")
    netstat.chmod(0o755)
    lc = root / "bin/launchctl"
    lc.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/launchctl.log\n")
    lc.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"version": 1, "routes": [
        {"destination": "172.17.0.0/16", "gateway": "192.168.99.100", "machine": "lab"}]}))
    env = {"LABCTL_ROOT": str(root), "LABCTL_PLATFORM": "darwin", "LABCTL_STATE_DIR": str(state)}
    ls = run("-m", "labctl", "route", "ls", "--offline", "--json", env=env)
    assert document(ls.stdout, "routes")["routes"][0]["state"] == "present"
    r = run("-m", "labctl", "route", "persist", "lab", env=env)
    assert r.returncode == 0, r.stderr
    plist = root / "Library/LaunchDaemons/io.labctl.routes.lab.plist"
    doc = plistlib.loads(plist.read_bytes())
    assert doc["Label"] == "io.labctl.routes.lab"
    assert doc["ProgramArguments"][-4:] == ["route", "sync", "lab", "--offline"]
    assert doc["EnvironmentVariables"]["LABCTL_PLATFORM"] == "darwin"
    assert (tmp_path / "launchctl.log").read_text().split() == ["bootstrap", "system", str(plist)]


class _Engine:
    """An Engine API on a unix socket that answers /version and /networks with a recorded
    Engine 20.10 inspect, and ends every /events stream at once (as an engine or a proxy that
    drops the stream does); it counts the /events requests."""

    def __init__(self, sock: Path) -> None:
        import socketserver
        import threading
        from http.server import BaseHTTPRequestHandler

        recorded = json.loads((REPO / "tests/data/routes/engine-20.10-network-inspect.json").read_text())
        self.events = 0
        engine = self

        class Api(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def address_string(self):
                return "unix"

            def do_GET(self):
                path = self.path.split("?")[0]
                if path.endswith("/events"):
                    engine.events += 1
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"0\r\n\r\n")  # the stream ends before any event
                    return
                if path.endswith("/version"):
                    body = {"Version": recorded["engine_version"], "ApiVersion": "1.41",
                            "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"}
                elif path.endswith("/networks"):
                    body = recorded["networks"]
                else:
                    body = {"message": "page not found"}
                data = json.dumps(body).encode()
                self.send_response(200 if "message" not in body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = socketserver.ThreadingUnixStreamServer(str(sock), Api)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_watch_backs_off_when_the_event_stream_ends_at_once(linux_root, tmp_path):
    """--retry 0.5 over 4 s: waits of 0.5, 1, 2 s between attempts (not one request after
    another), and each warning is printed once."""
    import signal

    # labctl's routes to both networks are in place: each sync has nothing to do
    table = [*IP_TABLE, {"dst": "10.201.0.0/24", "gateway": "192.168.99.100", "dev": "vmnet2", "flags": []}]
    (linux_root / "sbin" / "ip").write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(table)}\nEOF\n")
    (tmp_path / "state" / "state.json").write_text(json.dumps({"version": 1, "routes": [
        {"destination": d, "gateway": "192.168.99.100", "machine": "", "network": n,
         "created": "2026-01-01T00:00:00Z"} for d, n in (("172.17.0.0/16", "bridge"),
                                                         ("10.201.0.0/24", "labnet"))]}))
    sock = tmp_path / "engine.sock"
    eng = _Engine(sock)
    full = {**os.environ, "PYTHONPATH": str(REPO), **labctl_env(linux_root)}
    full.pop("DOCKER_HOST", None)
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "route", "watch", "--via", "192.168.99.100",
                             "--docker-host", f"unix://{sock}", "--retry", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full, cwd=REPO)
    try:
        time.sleep(4.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        eng.close()
    lines = err.strip().splitlines()
    assert proc.returncode == 0, err
    assert 2 <= eng.events <= 4, (eng.events, err)  # at 0, 0.5, 1.5, 3.5 s
    assert sum("ended its event stream at once" in ln for ln in lines) == 1, err
    assert len(lines) == len(set(lines)), err  # no line repeated
    assert lines[-1] == "stopped watching"
