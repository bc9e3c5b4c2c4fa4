"""Progress for long steps: a rich bar on a terminal, a plain line every few seconds in a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class _Bar:
    def __init__(self, description: str, total: int, completed: int, progress=None, task=None):
        self.description, self.total, self.done = description, total, completed
        self.progress, self.task = progress, task
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress.advance(self.task, n)
            return
        now = time.perf_counter()
        if self.total >= 0 and (now - self.last >= 10 or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            print(
                f"{self.description}: {self.done}/{self.total} ({now - self.start:.0f} s, {rate:.1f}/s)",
                file=sys.stderr,
                flush=True,
            )


@contextmanager
def progress_bar(description: str, total: int, completed: int = 0, enabled: bool = True) -> Iterator[_Bar]:
    """``with progress_bar("collect", total) as bar: bar.update(n)``; silent when not ``enabled``."""
    if not enabled:
        yield _Bar(description, total=-1, completed=completed)  # never prints
        return
    if not sys.stderr.isatty():
        yield _Bar(description, total, completed)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total, completed=completed)
        yield _Bar(description, total, completed, progress, task)
