"""One writer per run directory: a lock file ``RUN/.actlas.lock``, across checkouts.

``acquire`` creates the lock atomically (``O_CREAT | O_EXCL``) with the holder's host, pid, the
pid's start time, owner (the checkout or command that runs the workflow) and time; ``release``
removes it, only when it is the caller's. A second ``acquire`` while the holder lives is refused
with one line (``actlas.errors.LockError``).

A lock whose holder is provably dead is taken over: on the same host, when its pid no longer
exists or now belongs to a process started at another time (pid reuse). ``acquire`` then returns
a note saying so. A lock held from another host cannot be checked from here: it is refused, with
how to clear it (remove ``RUN/.actlas.lock`` if no other workflow is running).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from . import paths
from .errors import LockError

__all__ = ["LockError", "acquire", "check", "holder", "release"]


def lock_path(run_dir: str | Path) -> Path:
    return paths.lock(run_dir)


def _start_time(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), after the command name


def _alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` (on this host) is the process that wrote the lock."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _start_time(pid)
    return not (started and now and now != started)


def _describe(held: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("time", 0)))
    return f"{held.get('owner', '?')} (pid {held.get('pid', '?')} on {held.get('host', '?')}, since {when})"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _create(path: Path, tmp: Path) -> None:
    """Create ``path`` with the content of ``tmp``, atomically; ``FileExistsError`` when it exists."""
    try:
        os.link(tmp, path)  # atomic, fails when the lock exists, and never shows half a lock file
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: O_EXCL (a reader may briefly see it empty)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(tmp.read_text())


def _refuse_if_held(held: dict, run_dir: Path, path: Path) -> None:
    """Raise ``LockError`` unless the lock ``held`` is provably stale (its holder dead on this host)."""
    if held.get("host") != socket.gethostname():
        raise LockError(
            f"{run_dir} is in use by another workflow: {_describe(held)}; it runs on another host, so "
            f"it cannot be checked from here: remove {path} if no other workflow is running"
        )
    if _alive(int(held.get("pid", 0)), held.get("started")):
        raise LockError(
            f"{run_dir} is in use by another workflow: {_describe(held)}; wait for it to finish or use another run_dir"
        )


def check(run_dir: str | Path) -> None:
    """Raise ``LockError`` (one line) when another live process holds the run directory's lock; take nothing.

    For work done before ``acquire`` can run (Snakemake writes shard lists at parse time).
    """
    path = lock_path(run_dir)
    held = _read(path)
    if held is None or (held.get("host") == socket.gethostname() and held.get("pid") == os.getpid()):
        return
    if not held:
        raise LockError(f"{path} exists but cannot be read: remove {path} if no other workflow is running on {run_dir}")
    _refuse_if_held(held, Path(run_dir), path)


def acquire(run_dir: str | Path, owner: str) -> str | None:
    """Take the run directory's lock for this process, or raise ``LockError`` in one line.

    Returns None, or a one-line note when a stale lock of a dead process was taken over. Taking a
    lock this process already holds is a no-op.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    host, pid = socket.gethostname(), os.getpid()
    me = {"host": host, "pid": pid, "started": _start_time(pid), "owner": str(owner), "time": time.time()}
    note = None
    tmp = path.with_name(f"{path.name}.new-{host}-{pid}")
    for _ in range(5):
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        try:
            _create(path, tmp)
        except FileExistsError:
            held = _read(path)
            if held is None:  # released meanwhile: try again
                continue
            if not held:
                raise LockError(
                    f"{path} exists but cannot be read: remove {path} if no other workflow is running on {run_dir}"
                ) from None
            if held.get("host") == host and held.get("pid") == pid:
                return None  # ours already
            _refuse_if_held(held, run_dir, path)
            stale = path.with_name(f"{path.name}.stale-{pid}")
            try:
                os.rename(path, stale)  # atomic: of two processes taking over, only one moves it
            except FileNotFoundError:
                continue
            if _read(stale) != held:  # another process took over first: give its lock back
                try:
                    os.link(stale, path)
                finally:
                    os.unlink(stale)
                continue
            os.unlink(stale)
            note = f"took over the lock of {run_dir} left by {_describe(held)}, which is no longer running"
            continue
        finally:
            if tmp.exists():
                tmp.unlink()
        return note
    raise LockError(f"cannot take the lock {path}: it keeps changing; is another workflow starting on {run_dir}?")


def release(run_dir: str | Path, owner: str | None = None) -> bool:
    """Remove the lock when this process holds it; True if removed. Never removes another's lock."""
    path = lock_path(run_dir)
    held = _read(path)
    if not held or held.get("host") != socket.gethostname() or held.get("pid") != os.getpid():
        return False
    if owner is not None and held.get("owner") != str(owner):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def holder(run_dir: str | Path) -> dict | None:
    """The lock's content (host, pid, owner, time), or None when the run directory is not locked."""
    return _read(lock_path(run_dir))


# --------------------------------------------------------------------------- commands run by hand

# Set by the workflow that holds a run's lock, in its own environment: the jobs it starts inherit it,
# so a stage command run by the workflow works under its lock, and one run by hand must take the lock.
ENV = "ACTLAS_RUN_LOCK"


def token(held: dict | None) -> str:
    """What names one holder of a lock: host, pid and the pid's start time."""
    held = held or {}
    return f"{held.get('host')}:{held.get('pid')}:{held.get('started')}"


def mark_holder(run_dir: str | Path) -> None:
    """Tell the jobs this process starts that it holds ``run_dir``'s lock (``ENV``)."""
    os.environ[ENV] = token(_read(lock_path(run_dir)))


def for_command(run_dir: str | Path, owner: str) -> bool:
    """A stage command's right to write ``run_dir``: the workflow that started it holds the lock (``ENV``),
    this process holds it already, or it takes it now. True when taken here (``release`` it after);
    ``LockError`` in one line when another live process holds it."""
    held = _read(lock_path(run_dir))
    if held and os.environ.get(ENV) == token(held):
        return False
    if held and held.get("host") == socket.gethostname() and held.get("pid") == os.getpid():
        return False
    acquire(run_dir, owner)
    return True
