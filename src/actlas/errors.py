"""The one error type for problems the user can fix: bad input, a bad config, a missing file.

The CLI prints a ``UserError`` as exactly its message, one line that names the cause and the fix;
any other exception is a bug in actlas and keeps its traceback. Each area has its subclass, so a
caller catches what it expects; each also derives from the built-in error it replaces, so code
that catches ``ValueError`` or ``FileNotFoundError`` keeps working.

Pure: the standard library only (every module may raise these).
"""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A problem with the user's input, config or files; the message says how to fix it, in one line."""


class ConfigError(UserError, ValueError):
    """A setting, option or argument with a value actlas cannot use (a config key, a CLI flag, a patch spec)."""


class DataError(UserError, ValueError):
    """Data actlas cannot work with: too few images or samples, a list file with a bad line."""


class MissingError(UserError, FileNotFoundError):
    """A file or run artifact that is not there: the message names the stage or command that makes it."""


class ExistsError(UserError, FileExistsError):
    """A file or folder is in the way of one actlas would write (an output folder that is not empty)."""


class DependencyError(UserError, ImportError):
    """An optional package this needs is not installed: the message says what to install."""


class ModelError(UserError, ValueError):
    """A model source, card or weights file that cannot be used."""


class LayerError(UserError, ValueError):
    """An unknown layer name, or a layer whose output actlas cannot read; the message lists valid ones."""


class StoreError(UserError, RuntimeError):
    """A shard store that does not match what the caller expects (another model, layer set or format), or is
    damaged, or cannot be written (a full disk)."""


class LockError(UserError, RuntimeError):
    """The run directory is locked by another workflow (or its lock file cannot be read)."""


def no_space_message(err: BaseException) -> str | None:
    """One line for a disk-full error (``ENOSPC``, ``EDQUOT``) anywhere in ``err``'s chain, else None.

    ``"no space left on device writing PATH: free space or move run_dir"``; PATH is the file the
    failed write named, when the error carries one.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "disk quota exceeded" if err.errno == errno.EDQUOT else "no space left on device"
            path = err.filename or _path_in(err)
            where = f" writing {path}" if path else ""
            return f"{what}{where}: free space or move run_dir"
        if "no space left on device" in str(err).lower():  # libraries that wrap it (pyvips.Error, ...)
            return "no space left on device: free space or move run_dir"
        err = err.__cause__ or err.__context__
    return None


def _path_in(err: OSError) -> str | None:
    for arg in err.args:
        if isinstance(arg, (str, os.PathLike)) and os.sep in str(arg):
            return str(arg)
    return None
