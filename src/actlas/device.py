"""Where computation runs: the torch device, the CPU thread count, and numba's lasting cache.

Each stage that computes calls these first; nothing else sets global torch or numba state.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_device(device: str = "auto"):
    """``auto`` -> ``torch.device("cuda")`` when a GPU is available, else ``cpu``; any other name as given."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch CPU threads in this process (None or 0: leave torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def numba_cache_dir() -> Path:
    """A lasting folder for numba's on-disk cache, so umap-learn's JIT cost is paid once per machine.

    Sets ``NUMBA_CACHE_DIR`` unless the environment already does (call it before importing umap).
    """
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "actlas" / "numba"
    path = Path(os.environ.setdefault("NUMBA_CACHE_DIR", str(default)))
    path.mkdir(parents=True, exist_ok=True)
    return path
