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
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from labctl.errors import LabctlError, LockBusy, PreconditionMissing

KEEP_BACKUPS = 20


def atomic_write(path: Path, data: bytes, *, default_mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) only ever sees the old
    or the new content.  Mode and owner of an existing file are kept."""
    path = Path(path)
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


def lock_path_for(state_dir: Path) -> Path:
    """The lock lives in labctl's state dir when it can be created there, else in the temp
    dir under a name derived from the state dir, so root and user runs share it."""
    with contextlib.suppress(OSError):
        state_dir.mkdir(parents=True, exist_ok=True)
        if os.access(state_dir, os.W_OK):
            return state_dir / "labctl.lock"
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"labctl-{digest}.lock"


@contextlib.contextmanager
def locked(state_dir: Path, timeout: float = 60.0) -> Iterator[None]:
    """Serialise labctl runs that change things (one flock, waited for up to ``timeout``)."""
    path = lock_path_for(state_dir)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise PreconditionMissing(f"cannot open the lock file {path}: {exc.strerror}") from exc
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LockBusy(
                        f"another labctl run holds {path}",
                        "wait for it to finish, then try again",
                    ) from exc
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


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
    checks a write it cannot read back)."""
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
