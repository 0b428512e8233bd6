"""labctl's one output stack as people see it: steps with elapsed time and the tool's latest
line, a ✗ line that names a failed step, errors with the fix on its own line, guides wrapped
to the terminal and paged when long.  Terminals are real pseudo-terminals of a set size."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

from tests.conftest import REPO


def in_pty(argv: list[str], env: dict[str, str] | None = None, cols: int = 80, rows: int = 24,
           timeout: float = 60) -> str:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal of cols x rows; return
    everything it wrote (carriage returns and escapes included)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    full = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    full.update({"PYTHONPATH": str(REPO), "TERM": "xterm-256color", **(env or {})})
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=full, cwd=REPO)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=10)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


STEP = """
import sys
from labctl import ui
from labctl.errors import CommandFailed
from labctl.runner import Runner
with ui.step("create the docker-machine lab"):
    Runner().run(["sh", "-c", "echo Running pre-create checks...; sleep 0.8; "
                  "echo '(lab) Copying boot2docker.iso to the VM'; sleep 1.6"])
if sys.argv[1:] == ["fail"]:
    with ui.step("start lab and wait for 192.168.99.3"):
        raise CommandFailed("the VM did not get its address")
"""


def test_step_shows_elapsed_time_and_the_tools_latest_line_on_a_terminal():
    out = in_pty([sys.executable, "-c", STEP])
    assert "(lab) Copying boot2docker.iso to the VM" in out, out
    assert "create the docker-machine lab … 1s" in out or "create the docker-machine lab … 2s" in out
    assert re.search(r"✓(\x1b\[0m)? create the docker-machine lab (\x1b\[2m)?\(\d+\.\ds\)", out), out


def test_failed_step_ends_with_a_cross_line_naming_it_and_whether_rerun_is_safe():
    r = subprocess.run([sys.executable, "-c", STEP, "fail"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"})
    lines = r.stderr.splitlines()
    assert lines[0].startswith("✓ create the docker-machine lab (")
    i = next(i for i, line in enumerate(lines) if line.startswith("✗ "))
    assert lines[i].startswith("✗ start lab and wait for 192.168.99.3 failed after 0.")
    assert lines[i + 1] == ("  re-running is safe: labctl reads what is there again and carries on "
                            "from this step")
    out = in_pty([sys.executable, "-c", STEP, "fail"], env={"NO_COLOR": "1"})
    assert "✗ start lab and wait for 192.168.99.3 failed after" in out and "\x1b[31m" not in out


def test_error_then_fix_on_its_own_line_wrapped_on_a_terminal(tmp_path):
    env = {"LABCTL_ROOT": str(tmp_path), "LABCTL_PLATFORM": "darwin",
           "LABCTL_STATE_DIR": str(tmp_path / "state")}
    r = subprocess.run([sys.executable, "-m", "labctl", "vmnet", "ls"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("labctl: error: VMware Fusion networking file")
    assert lines[1].startswith("  fix: install VMware Fusion (https://")  # a pipe: not wrapped
    out = in_pty([sys.executable, "-m", "labctl", "vmnet", "ls"], env={**env, "NO_COLOR": "1"}, cols=60)
    rows = out.replace("\r", "").splitlines()
    assert all(len(row) <= 60 for row in rows if " " in row.strip()), rows
    fix = next(i for i, row in enumerate(rows) if row.startswith("  fix: "))
    # the fix wraps under itself; a word longer than the room there (the URL) gets less indent
    assert rows[fix + 1].startswith("(https://") and rows[fix + 2].startswith("       and start it")
    assert "\x1b[" not in out
    coloured = in_pty([sys.executable, "-m", "labctl", "vmnet", "ls"], env=env)
    assert "\x1b[1;31merror:\x1b[0m" in coloured


def test_guide_wraps_to_the_terminal_and_a_long_one_is_paged(tmp_path):
    paged = tmp_path / "paged"
    argv = [sys.executable, "-m", "labctl", "photon", "reset-password", "--photon", "4"]
    out = in_pty(argv, env={"PAGER": f"cat > {paged}"}, cols=72, rows=24)
    text = paged.read_text()
    assert text.startswith("Reset the root password of Photon OS 4\n")
    assert max(len(line) for line in text.splitlines()) <= 72
    assert "Reset the root password" not in out  # it went to the pager, not the screen
    out = in_pty(argv, env={"PAGER": f"cat > {tmp_path / 'not'}"}, cols=100, rows=200)
    assert "Reset the root password" in out and not (tmp_path / "not").exists()  # fits: no pager
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO), "PAGER": f"cat > {paged}x"})
    assert r.stdout.startswith("Reset the root") and not (tmp_path / "pagedx").exists()  # a pipe
    assert max(len(line) for line in r.stdout.splitlines()) <= 80  # 80 in a pipe
