"""What the Snakefile needs at parse time: the run directory checked, stage arguments quoted.

Pure: nothing here writes a file or loads a model (``snakemake -n`` and ``--lint`` write nothing).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from .errors import ConfigError


def check_run_dir(run_dir: str, checkout: str | Path) -> str:
    """The config's ``run_dir``, checked: never ``/``, the checkout or a folder above it.

    Spaces and any unicode are fine (every path reaches the shell quoted). Returns it without a
    trailing slash; raises ``ConfigError`` with the fix.
    """
    text = str(run_dir).strip()
    if not text:
        raise ConfigError("run_dir is empty: set run_dir in your config to a new folder, e.g. runs/my_model")
    if "\0" in text or "\n" in text:
        raise ConfigError(f"run_dir {run_dir!r} holds a NUL or newline: choose a plain folder name")
    path = Path(os.path.abspath(Path(checkout) / text))
    home = Path(checkout).resolve()
    # the guards hold on the real path too: a link runs/x -> / or -> another checkout is where the run would go
    for where in dict.fromkeys([path, Path(os.path.realpath(path))]):
        checkout_like = where.is_dir() and any((where / marker).exists() for marker in (".git", "Snakefile"))
        if where == Path(where.anchor) or where == home or home.is_relative_to(where) or checkout_like:
            raise ConfigError(
                f"run_dir {run_dir!r} is {where}, which would mix a run with an actlas checkout or the "
                "file system root: set run_dir to a folder of its own, e.g. runs/my_model"
            )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run_dir {run_dir!r} is a file, not a folder: choose another run_dir")
    return text.rstrip("/") or text


def or_exit(step, *args, **kwargs):
    """``step(*args, **kwargs)`` at parse time; a ``UserError`` ends Snakemake with its one line,
    ``Error: MESSAGE``, as the CLI prints it (not Snakemake's exception report)."""
    import sys

    from .errors import UserError

    try:
        return step(*args, **kwargs)
    except UserError as err:
        sys.exit(f"Error: {err}")


def model_arg(model) -> str:
    """``--model``'s value for a config's ``model``: the source string, or the block as one JSON string
    (sorted keys, so a rule's command changes only when the block does)."""
    return model if isinstance(model, str) else json.dumps(model, sort_keys=True, default=str)


def cli_args(**options) -> str:
    """Shell-quoted command-line options: ``layer=["a", "b"]`` -> ``--layer a --layer b``.

    ``True``/``False`` become ``--name``/``--no-name``; ``None`` is left out; dicts become JSON.
    Every value is quoted with ``shlex.quote``, so no config string can reach the shell as code.
    """
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            out += [flag, shlex.quote(json.dumps(v) if isinstance(v, dict) else str(v))]
    return " ".join(out)
