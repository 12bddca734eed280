"""What the two servers the project runs itself (the embedded S3, the Celery broker) share:
a file lock around start and stop, owner-only folders and files, liveness of a recorded pid,
stopping a process group, and the tail of a log; `private_dir` also guards the UCI download
cache (lib/source.py). POSIX only.

Their folders are configured from outside (S3_ASSETS_LOCAL_DIR, S3_ASSETS_CLUSTER_DIR,
S3_ASSETS_CACHE_DIR), so a folder is data, not ours by default: `private_dir` changes the mode
only of a folder the project created (it leaves a marker file in it), refuses one that others
own or may write into, and nothing here follows a symlink when it writes or changes a mode."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from s3_assets.lib.errors import ConfigError

MARKER = ".s3-assets-created"  # in each folder the project created itself; only those are chmodded


class UnsafeDirectoryError(ConfigError):
    """A configured folder that others own or may write into, or a symlink where the project
    keeps its own files: refused, never chmodded or written into."""


def _refuse(path: Path, what: str, why: str) -> UnsafeDirectoryError:
    return UnsafeDirectoryError(
        f"refusing {what} {path}: {why}. The project keeps owner-only state there; choose a folder of "
        "your own (or a new path, which the project creates owner-only)"
    )


def private_dir(path: Path, what: str) -> Path:
    """`path` as an owner-only folder of the project's. Missing: created 0700 with a marker.
    Existing: must be a real directory (not a symlink) owned by this user; made 0700 only if
    the project created it (the marker), else refused if others may write into it."""
    created = False
    try:
        path.mkdir(mode=0o700, parents=True)
        created = True
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        why = "it is a symlink or not a directory" if error.errno in (errno.ELOOP, errno.ENOTDIR) else str(error.strerror)
        raise _refuse(path, what, why) from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise _refuse(path, what, f"it belongs to another user (uid {info.st_uid})")
        if created:
            os.close(os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd))
        if created or _marked(fd):
            if stat.S_IMODE(info.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        elif info.st_mode & (stat.S_IWOTH | stat.S_IWGRP):
            raise _refuse(path, what, f"others may write into it (mode {stat.S_IMODE(info.st_mode):04o}), "
                                      "and the project did not create it, so it does not change its mode")
    finally:
        os.close(fd)
    return path


def _marked(dir_fd: int) -> bool:
    try:
        info = os.stat(MARKER, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()


def open_private(path: Path, flags: int) -> int:
    """os.open for a file the project keeps in its folder: owner-only when created, never
    through a symlink (ELOOP is refused by name)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _refuse(path, "the file", "it is a symlink") from None
        raise


def chmod_private(path: Path) -> None:
    """Make an existing file of the project's owner-only, without following a symlink."""
    fd = open_private(path, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an flock on `path` (several processes may start the same server at once)."""
    import fcntl  # POSIX: not at import time, so that merely importing never fails elsewhere

    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_private(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write a file that only its owner may read, created with that mode (no window), never
    through a symlink; `exclusive`: fail if it exists (a secret generated once)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    with os.fdopen(open_private(path, flags), "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch, as psutil reads it), or None if gone.
    Recorded beside a pid, it tells the process from a later one that reuses the pid."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_recorded_process(pid: int, started: float | None, *names: str) -> bool:
    """True if `pid` still names the process a state file recorded: alive (not a zombie) and
    started when recorded; a state file without a start time (an older version's) instead needs
    each of `names` in the process's command line. A stale file's pid may since name anything
    (a `sleep`, another folder's server): it is then not reported as running, nor signalled."""
    if not pid_alive(pid):
        return False
    if started is not None:
        now = started_at(pid)
        return now is not None and abs(now - started) <= 0.01
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            arguments = handle.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return bool(names) and all(_in_arguments(name.split(" "), arguments) for name in names)


def _in_arguments(wanted: list[str], arguments: list[str]) -> bool:
    """`wanted` as whole consecutive arguments (the first may be a program's file name): a
    substring is not enough (`-dir=/data/s3` is not `-dir=/data/s3b`)."""
    for start in range(len(arguments) - len(wanted) + 1):
        first = arguments[start]
        if (first == wanted[0] or Path(first).name == wanted[0]) and arguments[start + 1:start + len(wanted)] == wanted[1:]:
            return True
    return False


def recorded_start(raw: object) -> float | None:
    """The `started` field of a state file's record (None if absent or not a number)."""
    value = raw.get("started") if isinstance(raw, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def terminate(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)  # polling the exit of a process we do not own the handle of
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def log_tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
