"""What failed jobs said: the one-line errors in a run's job logs, for the workflow's console.

Each rule sends its command's stderr to ``RUN/logs/STAGE/NAME.log``; when a job fails, Snakemake's
console names the log but not the error in it. :func:`job_errors` reads back the ``Error:`` line of
every log written since the workflow started, so the cause and its fix reach the console.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import paths

TAIL_BYTES = 65536  # an error line is the command's last words; a log can be long before them


def _last_error(path: Path) -> str | None:
    """The last line starting ``Error:`` in the last :data:`TAIL_BYTES` of ``path``, or None."""
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL_BYTES))
        text = f.read(TAIL_BYTES).decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.startswith("Error:")]
    return lines[-1] if lines else None


def job_errors(run: str | Path, since: float) -> list[str]:
    """``"STAGE/NAME: Error: ..."`` for each regular job log under ``RUN/logs`` modified at or after
    ``since`` (seconds since the epoch) that holds an error line, sorted by log."""
    root = Path(run) / paths.LOGS
    out = []
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            path = Path(dirpath) / name
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_mtime < since:
                    continue  # a FIFO or a link is never opened: reading one could block
                error = _last_error(path)
            except OSError:
                continue
            if error:
                out.append(f"{path.relative_to(root).with_suffix('')}: {error}")
    return sorted(out)
