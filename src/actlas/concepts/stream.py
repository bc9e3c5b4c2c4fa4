"""The training rows of a dictionary as a bounded stream: first-pass figures, float32 blocks, the schedule.

:func:`first_pass` reads the chunks once for the count, mean (C,), scale, minimum and a uniform row
sample; :class:`Blocks` holds at most ``memory_bytes`` of float32 rows at once and yields them, block by
block, with a shuffled order per epoch; :func:`lr_scale` is the learning-rate schedule both trainers use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from .dictionary import Chunks, DictionaryError, row_hash

# --------------------------------------------------------------------------- passes over the stream


class Stats:
    """First-pass figures of the training rows: count, mean (C,), scale, minimum, and a row sample."""

    def __init__(self, n: int, mean: np.ndarray, scale: float, raw_scale: float, minimum: float, sample: np.ndarray):
        self.n, self.mean, self.scale, self.raw_scale, self.minimum, self.sample = (
            n,
            mean,
            scale,
            raw_scale,
            minimum,
            sample,
        )


def first_pass(chunks: Chunks, sample_rows: int) -> Stats:
    n, total, sq, minimum = 0, None, 0.0, math.inf
    keep_x: list[np.ndarray] = []
    keep_h: list[np.ndarray] = []
    kept = 0
    for c in chunks():
        c = np.asarray(c)
        if c.ndim != 2:
            raise DictionaryError(f"activation chunks must be (n, C), got shape {c.shape}")
        if len(c) == 0:
            continue
        x = c.astype(np.float64)
        if not np.isfinite(x).all():
            raise DictionaryError("the activations hold NaN or infinite values; collect the layer again")
        total = x.sum(0) if total is None else total + x.sum(0)
        sq += float((x * x).sum())
        minimum = min(minimum, float(x.min()))
        # a uniform sample whatever the chunking: the rows with the smallest hashes (a bottom-m sketch)
        h = row_hash(n, len(c), 0xA11CE)
        keep_x.append(c.astype(np.float32))
        keep_h.append(h)
        kept += len(c)
        n += len(c)
        if kept > 2 * sample_rows:
            keep_x, keep_h, kept = prune(keep_x, keep_h, sample_rows)
    if n == 0:
        return Stats(0, np.zeros(0, np.float32), 1.0, 1.0, 0.0, np.zeros((0, 0), np.float32))
    keep_x, keep_h, _ = prune(keep_x, keep_h, sample_rows)
    mean = total / n
    var = max(sq / n - float(mean @ mean), 0.0)
    scale = math.sqrt(var) if var > 0 else 1.0
    raw = math.sqrt(sq / n) if sq > 0 else 1.0
    return Stats(n, mean.astype(np.float32), scale, raw, minimum, keep_x[0])


def prune(xs: list[np.ndarray], hs: list[np.ndarray], m: int):
    x, h = np.concatenate(xs), np.concatenate(hs)
    order = np.argsort(h, kind="stable")[:m]
    order.sort()
    return [x[order]], [h[order]], len(order)


class Blocks:
    """Epochs over the training rows in float32 blocks of at most ``memory_bytes`` (one buffer, reused).

    Rows are centred and scaled as they are copied in (``offset``, ``div``); each block comes with a
    random order of its rows, and minibatches gather rows in that order.
    """

    def __init__(self, chunks: Chunks, stats: Stats, memory_bytes: int, center: bool):
        self.chunks, self.stats = chunks, stats
        self.channels = len(stats.mean)
        self.cap = min(stats.n, max(1024, int(memory_bytes // (4 * max(self.channels, 1)))))
        self.offset = stats.mean if center else np.zeros_like(stats.mean)
        self.div = stats.scale if center else stats.raw_scale
        self._buffer: np.ndarray | None = None
        self._whole = False  # the buffer holds every row: read once, kept for every epoch

    def sizes(self) -> list[int]:
        """Rows of each block of an epoch."""
        full, rest = divmod(self.stats.n, self.cap)
        return [self.cap] * full + ([rest] if rest else [])

    def epoch(self, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The blocks of one epoch as (rows (n_b, C) float32, a random order of them (n_b,) from ``g``)."""
        if self._buffer is None:
            self._buffer = np.empty((self.cap, self.channels), np.float32)
        if self._whole:
            yield torch.from_numpy(self._buffer), torch.randperm(self.cap, generator=g)
            return
        held = 0
        for c in self.chunks():
            c = np.asarray(c)
            while len(c):
                take = min(len(c), self.cap - held)
                part = self._buffer[held : held + take]
                part[:] = c[:take]
                part -= self.offset
                part /= self.div
                held += take
                c = c[take:]
                if held == self.cap:
                    self._whole = self.cap == self.stats.n
                    yield torch.from_numpy(self._buffer), torch.randperm(held, generator=g)
                    held = 0
        if held:
            yield torch.from_numpy(self._buffer[:held]), torch.randperm(held, generator=g)


def lr_scale(step: int, total: int) -> float:
    """Warm-up over the first 2% of the steps (at most 100), linear decay to 0 over the last 20%."""
    warmup = max(1, min(100, total // 50))
    decay_from = int(0.8 * total)
    scale = min(1.0, (step + 1) / warmup)
    if step >= decay_from:
        scale *= max(0.0, (total - step) / max(1, total - decay_from))
    return scale
