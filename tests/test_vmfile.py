"""labctl.vmfile: the shell text that replaces a VM file, run by a real ``sh`` on a temporary
tree (what ``docker-machine ssh`` runs inside the VM, minus the VM)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from labctl.vmfile import replace_cmd

HOSTILE = "line 'one'\n$(touch pwned) `touch pwned` \"$HOME\" ; rm -rf /nothing\n\\n%s\n"


def run(command: str, cwd: Path) -> None:
    r = subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_content_byte_for_byte_and_no_temp_file_stays(tmp_path):
    target = tmp_path / "a dir" / "new file.sh"
    run(replace_cmd(str(target), HOSTILE), tmp_path)
    assert target.read_text() == HOSTILE
    assert sorted(p.name for p in target.parent.iterdir()) == ["new file.sh"]
    assert not list(tmp_path.rglob("pwned"))


def test_an_existing_file_keeps_its_mode(tmp_path):
    target = tmp_path / "bootsync.sh"
    target.write_text("#!/bin/sh\nold\n")
    target.chmod(0o750)
    run(replace_cmd(str(target), "#!/bin/sh\nnew\n"), tmp_path)
    assert target.read_text() == "#!/bin/sh\nnew\n"
    assert mode(target) == 0o750


def test_a_given_mode_is_set(tmp_path):
    target = tmp_path / "labctl-0123.crt"
    target.write_text("old")
    target.chmod(0o600)
    run(replace_cmd(str(target), "pem\n", mode="644"), tmp_path)
    assert target.read_text() == "pem\n" and mode(target) == 0o644


def test_none_removes_the_file_and_hostile_paths_stay_one_word(tmp_path):
    target = tmp_path / "x; touch pwned" / "$(touch pwned) f"
    target.parent.mkdir()
    target.write_text("old")
    run(replace_cmd(str(target), "new"), tmp_path)
    assert target.read_text() == "new"
    run(replace_cmd(str(target), None), tmp_path)
    assert not target.exists() and target.parent.exists()
    assert not list(tmp_path.rglob("pwned"))
