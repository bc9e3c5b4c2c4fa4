"""align_render: icons of one batch of an aligned atlas's cells -> ``RUN/aligned/NAME/MAP/grid-N/render/``.

The render stage's own ``render_folder``, with the map's model and layer: a layer of another model takes
its whitening from ``RUN/models/MODEL/LAYER/whiten.npy`` and keeps its icons in ``RUN/models/MODEL/cache/``.
"""

from __future__ import annotations

from pathlib import Path

from .. import paths
from ..alignments import parse_map
from ..settings import Render, RenderParams, Run
from .render import render_folder


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
    )
