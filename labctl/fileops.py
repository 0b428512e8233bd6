"""Safe file changes: atomic replace (temp file in the same directory, same mode and owner,
fsync, rename), a timestamped backup first, and one lock that serialises labctl runs.

When labctl is not root, a privileged write runs this module under ``sudo -n`` (isolated, see
labctl.privileged) as ``write PATH BACKUP_DIR`` with the new bytes on stdin, so the same code
does the atomic replace with root's rights; the caller then reads the file back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shlex
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from labctl.errors import LabctlError, LockBusy, PreconditionMissing

KEEP_BACKUPS = 20


def atomic_write(path: Path, data: bytes, *, default_mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) only ever sees the old
    or the new content.  Mode and owner of an existing file are kept; a symlink stays a
    symlink (its target is replaced)."""
    path = real_target(Path(path))
    directory = path.parent
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    _remove_stale_temps(directory)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}{os.getpid()}-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, default_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def real_target(path: Path) -> Path:
    """``path``, or for a symlink the file it points to (which must exist)."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if not target.is_file():
        raise PreconditionMissing(f"{path} is a symlink to {target}, which is not a file; "
                                  "nothing was changed", f"point {path} at the real file, or "
                                  "replace it with one")
    return target


_TMP_MARK = ".labctl-"
_TMP_RE = re.compile(r"^\..+" + re.escape(_TMP_MARK) + r"(\d+)-")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_temps(directory: Path) -> None:
    """Remove temp files left by labctl runs that died (kill -9, power loss) between creating
    the temp file and renaming it.  The writer's pid is in the name; a live writer's file stays."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = _TMP_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def backup(path: Path, backup_dir: Path) -> Path | None:
    """Copy ``path`` into ``backup_dir`` with a timestamp; keep the newest KEEP_BACKUPS."""
    path = Path(path)
    if not path.exists():
        return None
    backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    flat = str(path).strip("/").replace("/", "__").replace(" ", "_")
    target = backup_dir / f"{flat}.{stamp}"
    atomic_write(target, path.read_bytes(), default_mode=0o600)
    olds = sorted(backup_dir.glob(f"{flat}.*"))
    for old in olds[:-KEEP_BACKUPS]:
        with contextlib.suppress(OSError):
            old.unlink()
    return target


LOCK_NAME = "labctl.lock"


def lock_path_for(state_dir: Path) -> Path:
    """One lock per state dir, inside it: root's runs and a user's runs (through sudo) take
    the same file, and no other user can create, replace or open it."""
    return Path(state_dir) / LOCK_NAME


def _check_state_dir(state_dir: Path) -> os.stat_result:
    """The state dir exists (made 0755 if missing) and only its owner may write it."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    st = os.stat(state_dir)
    if not stat.S_ISDIR(st.st_mode):
        raise PreconditionMissing(f"labctl's state dir {state_dir} is not a directory")
    if st.st_mode & 0o022 or st.st_uid not in (0, os.geteuid()):
        raise PreconditionMissing(
            f"labctl's state dir {state_dir} may be written by other users, so its lock and "
            "records could be tampered with; nothing was changed",
            f"chmod go-w {shlex.quote(str(state_dir))} (and chown it to root or to yourself)")
    return st


def open_lock(state_dir: Path) -> int:
    """Open (create) the lock file: mode 0600, owned like the state dir, never a symlink."""
    state_dir = Path(state_dir)
    st_dir = _check_state_dir(state_dir)
    path = lock_path_for(state_dir)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise PreconditionMissing(f"cannot open labctl's lock {path}: {exc.strerror}",
                                  "run labctl as the user who owns it, or as root") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != st_dir.st_uid:
        os.close(fd)
        raise PreconditionMissing(f"labctl's lock {path} is not a file owned by the owner of "
                                  f"{state_dir}; nothing was changed", f"remove {path}")
    if stat.S_IMODE(st.st_mode) != 0o600:
        os.fchmod(fd, 0o600)  # older labctl made it 0644: nobody else may hold it
    return fd


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"pid {text}"
    return "pid unknown"


def acquire(fd: int, path: Path, pid: int, timeout: float | None = None,
            say: Callable[[str], None] | None = None) -> None:
    """Take the lock, queueing behind the run that holds it (saying so once); then write
    ``pid`` into it so the next run can say whom it waits for."""
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if deadline is not None and time.monotonic() > deadline:
                raise LockBusy(f"another labctl run ({_holder(fd)}) holds {path}",
                               "wait for it to finish, then try again") from exc
            if not told:
                (say or _say)(f"labctl: waiting for another labctl run ({_holder(fd)}) to finish")
                told = True
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid}\n".encode(), 0)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _in_process(state_dir: Path) -> bool:
    """Whether this process may take the lock itself: as root, or as the user owning the
    state dir (e.g. LABCTL_STATE_DIR in one's home); else root takes it for us (sudo)."""
    from labctl.runner import is_root

    if is_root():
        return True
    uid = os.geteuid()
    if uid == 0:  # root acting as a user (LABCTL_ACT_AS_USER)
        return False
    probe = Path(state_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.stat(probe)
    except OSError:
        return False
    return st.st_uid == uid


@contextlib.contextmanager
def locked(state_dir: Path, timeout: float | None = None) -> Iterator[None]:
    """Serialise labctl runs that change things: one flock on ``STATE_DIR/labctl.lock``,
    queued for (as long as it takes, unless ``timeout``).  A user's run whose state dir is
    root's takes it through a privileged helper that holds it until this run ends (or dies)."""
    state_dir = Path(state_dir)
    if not _in_process(state_dir):
        with _locked_by_helper(state_dir):
            yield
        return
    fd = open_lock(state_dir)
    try:
        acquire(fd, lock_path_for(state_dir), os.getpid(), timeout)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked_by_helper(state_dir: Path) -> Iterator[None]:
    import shutil
    import subprocess

    from labctl.privileged import helper_argv
    from labctl.runner import Runner, audit, root_env

    Runner().ensure_privilege()
    argv = helper_argv("labctl.fileops", "lock", str(state_dir), str(os.getpid()))
    audit(argv)
    try:
        proc = subprocess.Popen([shutil.which("sudo") or "sudo", "-n", *argv], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, cwd="/", env=root_env())
    except OSError as exc:
        raise PreconditionMissing(f"cannot run sudo to take labctl's lock: {exc.strerror}",
                                  "run labctl as root") from exc
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != b"locked":
            proc.stdin.close()
            rc = proc.wait(timeout=10)
            raise PreconditionMissing(f"could not take labctl's lock {lock_path_for(state_dir)} "
                                      f"as root (helper exit status {rc})", "run labctl as root")
        yield
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)


def _hold(state_dir: Path, pid: int) -> int:
    """``lock STATE_DIR PID`` (as root): take the lock for the labctl run ``pid``, print
    "locked", hold it until stdin closes (that run ended or was killed)."""
    fd = open_lock(state_dir)
    acquire(fd, lock_path_for(state_dir), pid)
    sys.stdout.write("locked\n")
    sys.stdout.flush()
    while sys.stdin.buffer.read(4096):
        pass
    os.close(fd)
    return 0


def digest(path: Path) -> str | None:
    """sha256 of the file's bytes (None: there is no such file)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str]) -> int:
    """Privileged helper (see labctl.privileged): ``write PATH [BACKUP_DIR]`` (bytes on stdin),
    ``delete PATH [BACKUP_DIR]``, ``backup PATH BACKUP_DIR`` (prints the copy's path) and
    ``digest PATH`` (prints the sha256 of the file, or "absent": how an unprivileged caller
    checks a write it cannot read back) and ``lock STATE_DIR PID`` (see ``_hold``)."""
    try:
        if len(argv) in (2, 3) and argv[0] == "write":
            path = Path(argv[1])
            if len(argv) == 3:
                backup(path, Path(argv[2]))
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            atomic_write(path, sys.stdin.buffer.read())
            return 0
        if len(argv) == 3 and argv[0] == "backup":
            copy = backup(Path(argv[1]), Path(argv[2]))
            print(copy or "")
            return 0
        if len(argv) in (2, 3) and argv[0] == "delete":
            if len(argv) == 3:
                backup(Path(argv[1]), Path(argv[2]))
            Path(argv[1]).unlink(missing_ok=True)
            return 0
        if len(argv) == 3 and argv[0] == "lock" and argv[2].isdigit():
            return _hold(Path(argv[1]), int(argv[2]))
        if len(argv) == 2 and argv[0] == "digest":
            print(digest(Path(argv[1])) or "absent")
            return 0
    except (OSError, LabctlError) as exc:
        print(f"labctl.fileops: {exc}", file=sys.stderr)
        return 1
    print("usage: labctl.fileops write|delete|backup|digest PATH [BACKUP_DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
