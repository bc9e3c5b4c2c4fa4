"""Compile umap-learn's numba code once into the lasting on-disk cache (run by `make env`).

A new process otherwise spends about a minute compiling before its first fit.
"""

from __future__ import annotations

import time

import numpy as np

from .device import numba_cache_dir
from .layout import umap


def main() -> None:
    start = time.perf_counter()
    cache = numba_cache_dir()
    # above 4,096 rows UMAP switches to pynndescent, whose numba code must be compiled too
    x = np.random.default_rng(0).normal(size=(5000, 16)).astype(np.float32)
    umap(x, n_neighbors=10, backend="umap-learn")
    print(f"numba cache warm in {cache} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
