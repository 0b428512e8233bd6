"""What a new user sees, captured in a real terminal: tmux runs labctl in a window of 80
columns, and the screen is compared with golden files in tests/golden/ — ``labctl --help``,
``labctl up --help``, ``labctl doctor`` in an empty world, a guide and an error.  Every capture
must read well at 80 columns: no line longer than the terminal (nothing the terminal had to
wrap, so nothing broken inside a word or cut), colour only without NO_COLOR, none in a pipe.

``LABCTL_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` rewrites the files (read the diff).
The help screens are typer's rendering of labctl's parameters, so they are compared exactly only
with the typer version the files were taken with (tests/golden/versions.json); with another
typer the same rules about width, wrapping and colour still hold.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO

GOLDEN = REPO / "tests" / "golden"
COLS = 80
UPDATE = os.environ.get("LABCTL_UPDATE_GOLDEN") == "1"
ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def typer_version() -> str:
    from importlib.metadata import version

    return version("typer")


def require_tmux() -> None:
    if shutil.which("tmux") is None:
        if IN_CI:
            pytest.fail("tmux is missing: scripts/bootstrap installs it")
        pytest.skip("tmux is not installed (apt-get install tmux)")


@pytest.fixture(scope="module")
def world():
    """An empty world: no VMware, no docker-machine, no records.  Its root has a fixed-length
    name so that lines wrap the same way every run; the name is replaced by ROOT in captures."""
    root = Path(f"/tmp/labctl-golden-{secrets.token_hex(3)}")
    root.mkdir()
    (root / "state").mkdir()
    env = {"LABCTL_ROOT": str(root), "LABCTL_PLATFORM": "darwin", "LABCTL_ARCH": "x86_64",
           "LABCTL_MACOS_VERSION": "14.4.1", "LABCTL_STATE_DIR": str(root / "state"),
           "HOME": str(root), "PATH": "/usr/bin:/bin", "PAGER": "cat", "LANG": "C.UTF-8",
           "PYTHONPATH": str(REPO)}
    yield root, env
    shutil.rmtree(root, ignore_errors=True)


def tmux(args: list[str], socket: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *args], capture_output=True,
                          text=True, timeout=60, **kw)


def capture(argv: list[str], env: dict[str, str], *, colour: bool = False) -> tuple[str, str]:
    """Run argv in a fresh tmux server (a window of COLS columns) and return the screen
    as the terminal shows it (rows) and with the terminal's wraps joined (lines); with
    ``colour`` the escapes are kept."""
    require_tmux()
    socket = f"labctl-golden-{os.getpid()}-{secrets.token_hex(2)}"
    done = Path(f"/tmp/{socket}.done")
    shell = " ".join(_quote(a) for a in argv) + f"; touch {done}; sleep 30"
    full = {k: v for k, v in os.environ.items() if k.startswith(("TMUX", "LC_")) is False}
    full.update(env)
    full["TERM"] = "xterm-256color"
    try:
        # only the world's variables reach labctl (no proxy or colour setting of this machine)
        inner = {"TERM": "tmux-256color", **env}
        r = tmux(["new-session", "-d", "-x", str(COLS), "-y", "400", "-s", "g",
                  "env", "-i", *[f"{k}={v}" for k, v in inner.items()], "sh", "-c", shell], socket,
                 env=full)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.exists(), "the command did not finish in the terminal"
        flags = ["-e"] if colour else []
        rows = tmux(["capture-pane", "-p", "-t", "g", *flags, "-S", "-", "-E", "-"], socket).stdout
        lines = tmux(["capture-pane", "-p", "-J", "-t", "g", *flags, "-S", "-", "-E", "-"], socket).stdout
    finally:
        tmux(["kill-server"], socket)
        done.unlink(missing_ok=True)
    return _trim(rows), _trim(lines)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _trim(screen: str) -> str:
    return "\n".join(line.rstrip() for line in screen.rstrip("\n").split("\n")).rstrip("\n") + "\n"


def _normal(text: str, root: Path) -> str:
    text = text.replace(str(root), "ROOT")
    return re.sub(r"in \d+\.\ds$", "in N.Ns", text, flags=re.MULTILINE)


CASES = {
    "help": ["--help"],
    "up-help": ["up", "--help"],
    "doctor-empty": ["doctor"],
    "guide-photon4": ["photon", "reset-password", "--photon", "4"],
    "error-no-vmware": ["vmnet", "ls"],
}
HELP = {"help", "up-help"}


@pytest.mark.parametrize("name", list(CASES))
def test_capture_at_80_columns_matches_golden(world, name):
    root, env = world
    argv = [sys.executable, "-m", "labctl", *CASES[name]]
    rows, lines = capture(argv, {**env, "NO_COLOR": "1"})
    # the terminal wrapped nothing (every line fits in 80 columns, so no word was broken and
    # nothing cut), except a single word longer than the terminal: a URL cannot fit
    long_words = [line for line in lines.splitlines() if len(line) > COLS]
    assert all(" " not in line.strip() for line in long_words), long_words
    if not long_words:
        assert rows == lines, f"the terminal had to wrap {name}:\n{rows}"
    # labctl itself never breaks a word at a hyphen
    broken = [(a, b) for a, b in zip(lines.splitlines(), lines.splitlines()[1:], strict=False)
              if re.search(r"[A-Za-z]-$", a) and re.match(r"\s*[a-z]", b)]
    assert not broken, broken
    assert "\x1b" not in rows and "\\[" not in rows and "Traceback" not in rows
    got = _normal(lines, root)
    path = GOLDEN / f"{name}.txt"
    versions_file = GOLDEN / "versions.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
        versions_file.write_text(json.dumps({"typer": typer_version()}, indent=2) + "\n")
        return
    recorded = json.loads(versions_file.read_text())
    if name in HELP and recorded["typer"] != typer_version():
        pytest.skip(f"help is typer's rendering: the golden file is from typer {recorded['typer']}, "
                    f"this is {typer_version()} (width and wrapping were checked above)")
    assert got == path.read_text(), f"{name} differs from {path} (LABCTL_UPDATE_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize("name", ["doctor-empty", "error-no-vmware"])
def test_colour_in_a_terminal_none_with_no_color_or_in_a_pipe(world, name):
    root, env = world
    argv = [sys.executable, "-m", "labctl", *CASES[name]]
    coloured, _ = capture(argv, env, colour=True)
    assert "\x1b[" in coloured
    assert ESC.sub("", coloured).replace(str(root), "ROOT").strip()
    plain, _ = capture(argv, {**env, "NO_COLOR": "1"}, colour=True)
    assert not ESC.search(plain), plain
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                       env={**{k: v for k, v in os.environ.items() if k not in ("NO_COLOR",)}, **env,
                            "TERM": "xterm-256color"})
    assert "\x1b" not in r.stdout + r.stderr
    assert r.stdout + r.stderr


def test_help_has_argument_help_and_no_markup_escapes():
    """Whatever typer renders it: the arguments' help is shown and no markup escape leaks."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": str(COLS)}
    for cmd, argument_help in ((["up"], "Machine name (default: lab"),
                               (["doctor"], "The lab machine (default: the one labctl"),
                               (["route", "add"], "The docker-machine (default: every labctl"),
                               (["photon", "reset-password"], "The VM: a .vmx path")):
        out = subprocess.run([sys.executable, "-m", "labctl", *cmd, "--help"], capture_output=True,
                             text=True, timeout=60, env=env).stdout
        assert "\\[" not in out, out
        assert argument_help in " ".join(out.split()), out
