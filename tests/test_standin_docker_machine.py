"""The docker-machine stand-in answers byte for byte like the recorded docker-machine 0.16.2.

Every recorded command the stand-in supports runs in the recorded order and groups, each group
from an empty store, and its stdout, stderr and exit code are compared with the fixture files.

How: the recordings contain the literal store path /tmp/dm-store and were made in a network
namespace with only loopback.  So each group runs inside ``unshare --mount --net`` (root):
a private tmpfs on /tmp (so /tmp/dm-store is the real path, no substitution), loopback up,
and for the "reachable" group 192.168.99.10 on lo with a small TLS stub on :2376 answering
``GET /v1.15/version`` with 19.03.5 (as in the recording).  Unreachable/refused come from the
kernel, not from the stand-in.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
FMT3 = r"{{.Name}}\t{{.State}}\t{{.URL}}"
FMT6 = r"{{.Name}}\t{{.DriverName}}\t{{.State}}\t{{.URL}}\t{{.DockerVersion}}\t{{.Error}}"
URL = "tcp://192.168.99.10:2376"
LOCAL = "tcp://127.0.0.1:2376"

# (fixture name, argv after docker-machine, extra env); None name = run but do not compare.
# Rows in INDEX.md order.  Not reproduced: create --help (the virtualbox driver's flags).
GROUPS: dict[str, list[tuple[str | None, list[str], dict[str, str]]]] = {
    "main": [
        ("version", ["--version"], {}),
        ("help", ["--help"], {}),
        ("create-d-vmwarefusion-help", ["create", "-d", "vmwarefusion", "--help"], {}),
        ("create-d-vmwarefusion-lab", ["create", "-d", "vmwarefusion", "lab"], {}),
        ("ls-empty", ["ls"], {}),
        ("ls-format-empty", ["ls", "--format", FMT3], {}),
        ("ls-q-empty", ["ls", "-q"], {}),
        ("create-d-none-lab", ["create", "-d", "none", "--url", URL, "lab"], {}),
        ("ls", ["ls"], {}),
        ("ls-format", ["ls", "--format", FMT3], {}),
        ("ls-q", ["ls", "-q"], {}),
        ("status-lab", ["status", "lab"], {}),
        ("ip-lab", ["ip", "lab"], {}),
        ("url-lab", ["url", "lab"], {}),
        ("inspect-lab", ["inspect", "lab"], {}),
        ("inspect-format-driver-ipaddress-lab", ["inspect", "--format", "{{.Driver.IPAddress}}", "lab"], {}),
        ("config-lab", ["config", "lab"], {}),
        ("env-lab", ["env", "lab"], {}),
        ("env-shell-bash-lab", ["env", "--shell", "bash", "lab"], {}),
        ("env-shell-fish-lab", ["env", "--shell", "fish", "lab"], {}),
        ("env-u", ["env", "-u"], {}),
        ("start-lab", ["start", "lab"], {}),
        ("stop-lab", ["stop", "lab"], {}),
        ("status-lab-after-stop", ["status", "lab"], {}),
        ("rm-y-lab", ["rm", "-y", "lab"], {}),
        ("ls-after-rm", ["ls"], {}),
        ("status-nope", ["status", "nope"], {}),
        ("ip-nope", ["ip", "nope"], {}),
        ("inspect-nope", ["inspect", "nope"], {}),
        ("env-nope", ["env", "nope"], {}),
        ("rm-y-nope", ["rm", "-y", "nope"], {}),
    ],
    "reachable": [
        ("reachable-create-d-none-lab", ["create", "-d", "none", "--url", URL, "lab"], {}),
        ("@stub", [], {}),
        ("reachable-ls", ["ls"], {}),
        ("reachable-ls-format", ["ls", "--format", FMT3], {}),
        ("reachable-ls-format-docker", ["ls", "--format", FMT6], {}),
        ("reachable-active", ["active"], {}),
        ("reachable-config-lab", ["config", "lab"], {}),
        ("reachable-env-lab", ["env", "lab"], {}),
        ("reachable-env-shell-bash-lab", ["env", "--shell", "bash", "lab"], {}),
        ("reachable-env-shell-fish-lab", ["env", "--shell", "fish", "lab"], {}),
        ("reachable-env-shell-fish-u", ["env", "--shell", "fish", "-u"], {}),
        ("reachable-version-lab", ["version", "lab"], {}),
        ("reachable-active-with-docker-host", ["active"], {"DOCKER_HOST": URL}),
        ("reachable-ls-with-docker-host", ["ls"], {"DOCKER_HOST": URL}),
        ("reachable-rm-y-lab", ["rm", "-y", "lab"], {}),
    ],
    "refused": [
        ("refused-create-d-none-lab", ["create", "-d", "none", "--url", LOCAL, "lab"], {}),
        ("refused-ls", ["ls"], {}),
        ("refused-env-lab", ["env", "lab"], {}),
        ("create-d-none-lab-exists", ["create", "-d", "none", "--url", LOCAL, "lab"], {}),
        ("create-d-none-no-url", ["create", "-d", "none", "lab2"], {}),
        ("create-d-none-no-name", ["create", "-d", "none"], {}),
        ("refused-rm-y-lab", ["rm", "-y", "lab"], {}),
    ],
    "unsupported-driver": [
        (None, ["create", "-d", "none", "--url", LOCAL, "fus"], {}),
        ("@fus-config", [], {}),
        ("unsupported-driver-ls", ["ls"], {}),
        ("unsupported-driver-ls-format", ["ls", "--format", FMT3], {}),
        ("unsupported-driver-status-fus", ["status", "fus"], {}),
        ("unsupported-driver-ip-fus", ["ip", "fus"], {}),
        ("unsupported-driver-url-fus", ["url", "fus"], {}),
        ("unsupported-driver-env-fus", ["env", "fus"], {}),
        ("unsupported-driver-start-fus", ["start", "fus"], {}),
        ("unsupported-driver-stop-fus", ["stop", "fus"], {}),
        ("unsupported-driver-rm-y-fus", ["rm", "-y", "fus"], {}),
    ],
}
# store snapshots taken after these fixture rows: (row, snapshot file)
TREES = {
    "create-d-vmwarefusion-lab": "store-tree-after-vmwarefusion-create.txt",
    "create-d-none-lab": "store-tree-after-none-create.txt",
    "reachable-env-shell-fish-u": "store-tree-after-env.txt",
    "rm-y-lab": "store-tree-after-rm.txt",
    "refused-rm-y-lab": "store-tree-after-refused-rm.txt",
    "unsupported-driver-rm-y-fus": "store-tree-after-unsupported-driver-rm.txt",
}


# ---- inside the namespace ----------------------------------------------------------------------
def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _tree() -> str:
    if not os.path.exists("/tmp/dm-store"):
        return ""
    out = []
    for root, dirs, files in os.walk("/tmp/dm-store"):
        dirs.sort()
        rel = os.path.relpath(root, "/tmp")
        out.append(rel)
        out.extend(os.path.join(rel, f) for f in sorted(files))
    return "\n".join(sorted(out)) + "\n"


def _modes() -> dict[str, str]:
    modes = {}
    for root, dirs, files in os.walk("/tmp/dm-store"):
        for n in dirs + files:
            p = os.path.join(root, n)
            modes[os.path.relpath(p, "/tmp")] = oct(os.stat(p).st_mode & 0o777)
    return modes


def _start_stub() -> None:
    """A TLS endpoint on 192.168.99.10:2376, cert signed by the store's CA (as recorded)."""
    import http.server
    import ssl
    import tempfile
    import threading

    d = tempfile.mkdtemp(dir="/tmp")
    certs = "/tmp/dm-store/certs"
    _sh("openssl", "genrsa", "-out", f"{d}/k.pem", "2048")
    _sh("openssl", "req", "-new", "-key", f"{d}/k.pem", "-subj", "/O=stub", "-out", f"{d}/r.csr")
    Path(f"{d}/ext").write_text("subjectAltName=IP:192.168.99.10\nextendedKeyUsage=serverAuth\n")
    _sh("openssl", "x509", "-req", "-in", f"{d}/r.csr", "-CA", f"{certs}/ca.pem", "-CAkey",
        f"{certs}/ca-key.pem", "-CAcreateserial", "-CAserial", f"{d}/srl", "-days", "2",
        "-extfile", f"{d}/ext", "-out", f"{d}/c.pem")

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"Version": "19.03.5", "ApiVersion": "1.40"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("192.168.99.10", 2376), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{d}/c.pem", f"{d}/k.pem")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def _outside_tmp(path: str) -> str:
    """Where ``path`` is seen once a fresh tmpfs hides /tmp (the checkout may live in /tmp)."""
    return "/mnt/t" + path[len("/tmp"):] if path == "/tmp" or path.startswith("/tmp/") else path


def run_group_inside(group: str, fixtures: str) -> None:
    _sh("mount", "--make-rprivate", "/")
    # keep the old /tmp reachable at /mnt/t (a private tmpfs on /mnt), then hide it
    _sh("mount", "-t", "tmpfs", "tmpfs", "/mnt")
    os.makedirs("/mnt/t")
    _sh("mount", "--rbind", "/tmp", "/mnt/t")
    _sh("mount", "-t", "tmpfs", "tmpfs", "/tmp")
    fixtures = _outside_tmp(fixtures)
    _sh("ip", "link", "set", "lo", "up")
    if group == "reachable":
        _sh("ip", "addr", "add", "192.168.99.10/32", "dev", "lo")
    os.makedirs("/tmp/dm-home")
    base = {"MACHINE_STORAGE_PATH": "/tmp/dm-store", "HOME": "/tmp/dm-home", "SHELL": "/bin/bash",
            "LANG": "C.UTF-8", "PATH": f"{_outside_tmp(str(STANDINS))}:/usr/local/bin:/usr/bin:/bin"}
    results = []
    for name, argv, extra in GROUPS[group]:
        if name == "@stub":
            _start_stub()
            continue
        if name == "@fus-config":
            shutil.copyfile(os.path.join(fixtures, "unsupported-driver-fus-config.json"),
                            "/tmp/dm-store/machines/fus/config.json")
            continue
        proc = subprocess.run(["docker-machine", *argv], env={**base, **extra}, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=60)
        results.append({"name": name, "stdout": base64.b64encode(proc.stdout).decode(),
                        "stderr": base64.b64encode(proc.stderr).decode(), "rc": proc.returncode,
                        "tree": _tree(), "modes": _modes()})
    print(json.dumps(results))


# ---- the tests ------------------------------------------------------------------------------------
def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("openssl"):
        return False
    return subprocess.run(["unshare", "--mount", "--net", "true"], capture_output=True).returncode == 0


needs_ns = pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare (mount + net namespaces)")


@pytest.fixture(scope="module")
def recorded() -> Path:
    from conftest import fixtures_dir

    return fixtures_dir("docker-machine")


_cache: dict[str, list[dict]] = {}


def _run_group(group: str, fixtures: Path) -> list[dict]:
    if group not in _cache:
        proc = subprocess.run(
            ["unshare", "--mount", "--net", sys.executable, __file__, "--inside", group, str(fixtures)],
            capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        _cache[group] = json.loads(proc.stdout)
    return _cache[group]


def _cases() -> list:
    return [pytest.param(g, n, id=n) for g, rows in GROUPS.items() for n, _, _ in rows
            if n and not n.startswith("@")]


@needs_ns
@pytest.mark.parametrize("group,name", _cases())
def test_output_matches_recording(recorded: Path, group: str, name: str) -> None:
    row = next(r for r in _run_group(group, recorded) if r["name"] == name)
    assert base64.b64decode(row["stdout"]) == (recorded / f"{name}.stdout").read_bytes(), "stdout"
    assert base64.b64decode(row["stderr"]) == (recorded / f"{name}.stderr").read_bytes(), "stderr"
    assert row["rc"] == int((recorded / f"{name}.rc").read_text().strip()), "exit code"


@needs_ns
@pytest.mark.parametrize("row,snapshot", sorted(TREES.items()))
def test_store_tree_matches_snapshot(recorded: Path, row: str, snapshot: str) -> None:
    group = next(g for g, rows in GROUPS.items() if any(n == row for n, _, _ in rows))
    got = next(r for r in _run_group(group, recorded) if r["name"] == row)["tree"]
    want = (recorded / snapshot).read_text()
    if want.startswith("(empty"):
        assert got == ""
    else:
        assert got == want


@needs_ns
def test_store_modes_and_config_json_bytes(recorded: Path) -> None:
    row = next(r for r in _run_group("main", recorded) if r["name"] == "create-d-none-lab")
    modes = row["modes"]
    assert modes["dm-store/certs"] == modes["dm-store/machines"] == modes["dm-store/machines/lab"] == "0o700"
    assert modes["dm-store/certs/ca-key.pem"] == modes["dm-store/certs/key.pem"] == "0o600"
    assert modes["dm-store/certs/ca.pem"] == modes["dm-store/certs/cert.pem"] == "0o644"
    assert modes["dm-store/machines/lab/config.json"] == "0o600"
    # config.json bytes == the recorded copy: inspect prints the same JSON plus a newline
    inspect = next(r for r in _run_group("main", recorded) if r["name"] == "inspect-lab")
    assert base64.b64decode(inspect["stdout"]) == (recorded / "machines-lab-config.json").read_bytes() + b"\n"


def test_every_supported_fixture_is_covered(recorded: Path) -> None:
    """Each recorded command file is either compared above or listed as not reproduced."""
    compared = {n for rows in GROUPS.values() for n, _, _ in rows if n}
    not_reproduced = {"create-help"}
    names = {p.name.rsplit(".", 1)[0] for p in recorded.glob("*.rc")}
    assert names - compared - not_reproduced == set()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--inside":
    run_group_inside(sys.argv[2], sys.argv[3])
