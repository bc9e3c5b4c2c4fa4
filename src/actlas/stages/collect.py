"""collect: activations and attributions of one shard list -> one Zarr store (``RUN/collect/shard-N.zarr``)."""

from __future__ import annotations

from pathlib import Path

from ..settings import Collect, Run


def collect(
    shard: str | Path,
    out: str | Path,
    model,
    layers: list[str],
    *,
    positions: int = Collect.positions,
    attr_top: int = Collect.attr_top,
    batch_size: int = Collect.batch_size,
    chunk: int = Collect.chunk,
    seed: int = Run.seed,
    workers: int = Collect.workers,
    device: str = Run.device,
    threads: int | None = None,
    amp: bool = Collect.amp,
    progress: bool = True,
) -> dict:
    """Collect one shard: K positions per image (edges avoided), activation and attribution there.

    Resumes a store left by a killed run at its last committed chunk; undecodable images are
    listed with their reason in ``OUT.skipped.tsv``. Returns the store's summary.
    """
    from ..collect import collect as collect_shard

    summary = collect_shard(
        shard,
        out,
        model,
        list(layers),
        positions=positions,
        attr_top=attr_top,
        batch_size=batch_size,
        chunk=chunk,
        seed=seed,
        workers=workers,
        device=device,
        threads=threads,
        progress=progress,
        amp=amp,
    )
    skipped = Path(f"{out}.skipped.tsv")  # always there, so the workflow can declare it
    if not skipped.exists():
        skipped.touch()
    return summary
