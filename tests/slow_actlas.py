"""The ``actlas`` command with a pause after every commit to a shard store, so that a test can kill
collect between two commits (``python slow_actlas.py SECONDS ARGS...``; ``slow_bin`` makes an
``actlas`` executable of it for the workflow's rules)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def slow_bin(folder: Path, seconds: float) -> Path:
    """A folder holding an ``actlas`` executable that pauses ``seconds`` after each commit (put it first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "actlas"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} {seconds} "$@"\n')
    script.chmod(0o755)
    return folder


def main() -> None:
    from actlas.data import store

    seconds = float(sys.argv.pop(1))
    append = store.append

    def slow_append(group, rows) -> None:
        append(group, rows)
        time.sleep(seconds)

    store.append = slow_append
    from actlas.cli import main as cli

    sys.argv[0] = "actlas"
    cli()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
