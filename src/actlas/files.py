"""Files actlas reads that the user names (weights, cards, label and list files, patch images and
directions) and files it finds in a run: only regular files are read, so nothing blocks on a FIFO or a
device and no walk of a run fails on a dangling or looping link.

``file_problem`` says why a path is not a readable regular file; ``require_file`` refuses one in one line,
as images are refused (``actlas.data.decode``); ``run_entry_problem`` judges an entry of a run directory
without following it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import MissingError, UserError
from .text import one_line


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def file_problem(path: str | Path) -> str:
    """Why ``path`` is not a readable regular file (links followed), or "" when it is one."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "not found"
    except PermissionError:
        return "permission denied"
    except OSError as err:
        return (
            "a symbolic link loop" if err.errno == errno.ELOOP else one_line(f"cannot be read: {err.strerror or err}")
        )
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({_kind(st.st_mode)})"
    return ""


def require_file(path: str | Path, what: str, error: type[UserError] = UserError) -> Path:
    """``path`` when it is a readable regular file; else ``error`` in one line: ``"{what} not found: {path}"``
    (``MissingError`` when ``error`` is ``UserError``) or ``"{what} {path} is {problem}: give a regular file"``."""
    problem = file_problem(path)
    if not problem:
        return Path(path)
    if problem == "not found":
        raise (MissingError if error is UserError else error)(f"{what} not found: {path}")
    raise error(f"{what} {path} is {problem}: give a regular file")


def run_entry_problem(path: str | Path) -> str:
    """Why an entry of a run directory is not a regular file (judged without following a link), or ""."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return one_line(f"cannot be read: {err.strerror or err}")
    if stat.S_ISLNK(st.st_mode):
        target = file_problem(path)
        return f"a symbolic link to what is {target}" if target else ""
    return "" if stat.S_ISREG(st.st_mode) else f"not a regular file ({_kind(st.st_mode)})"


def regular(entries) -> list[Path]:
    """The entries of a run directory that are regular files (or links to one), in order."""
    return [Path(p) for p in entries if not run_entry_problem(p)]
