"""align_render: icons of one batch of an aligned atlas's cells -> ``RUN/aligned/NAME/MAP/grid-N/render/``.

The render stage's own ``render_folder``, with the map's model and layer: a layer of another model takes
its whitening from ``RUN/models/MODEL/LAYER/whiten.npy`` and keeps its icons in ``RUN/models/MODEL/cache/``.
An aligned cell is a mean of photo means, so its icon is optimised, and its faithfulness read, on the icon's
own mean over the layer's positions (``POOL``), as collect reads a photo's. Measured against the centre
position (a main atlas's objective; BENCHMARKS.md, bench_align): median faithfulness 0.852 against 0.778 on
the CIFAR-10 ViT's blocks.3, 0.917 against 0.872 on MobileNetV2's features.13, 0.850 against 0.858 on its
features.16.
"""

from __future__ import annotations

from pathlib import Path

from .. import paths
from ..alignments import parse_map
from ..settings import Render, RenderParams, Run
from .render import render_folder

POOL = "mean"  # actlas.viz.objectives.POOLS: what an aligned icon is optimised and scored on


def align_render(
    run_dir: str | Path,
    name: str,
    map_id: str,
    n: int,
    model,
    *,
    batch: int = 0,
    cells_per_job: int = Render.cells_per_job,
    params: RenderParams | None = None,
    device: str = Run.device,
    threads: int | None = None,
    cache: bool = True,
    progress: bool = True,
) -> Path:
    """Render batch ``batch`` of aligned map ``map_id`` (``LAYER`` or ``LAYER@MODEL``; ``model``: that map's)."""
    layer, model_name = parse_map(map_id)
    return render_folder(
        paths.aligned_grid_dir(run_dir, name, map_id, n),
        paths.model_root(run_dir, model_name),
        layer,
        model,
        batch=batch,
        cells_per_job=cells_per_job,
        params=params,
        device=device,
        threads=threads,
        cache=cache,
        progress=progress,
        pool=POOL,
    )
