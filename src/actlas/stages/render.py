"""render: icons of one batch of a grid's cells -> ``FOLDER/render/batch-BBBBB.npz``.

The model is loaded once and the batch's cells are optimised together. Icons are also kept in
``RUN/cache/icons/`` under a key of everything an icon depends on (direction, whitening, model,
layer, render settings, the render code, the device and torch version), so a killed job resumes
without redoing finished icons and a hit is exactly what a fresh render would give.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .. import paths
from ..settings import Render, RenderParams, Run
from .batches import cells_digest


def files_digest(files: list[str]) -> str:
    """Digest of the contents of files (the model's weights and cards: an icon depends on them)."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0")
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _compute(dev) -> str:
    """What an icon's bytes depend on besides its inputs: the device type and, on a CPU, the thread
    count (kernels and their summation order follow it); on a GPU, its name."""
    import torch

    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    if dev.type == "cpu":
        return f"cpu:threads={torch.get_num_threads()}"
    return dev.type


def render_folder(
    folder: str | Path,
    run_dir: str | Path,
    layer: str,
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
    """Render batch ``batch`` of the cells in ``FOLDER/cells.npz`` (all cells when ``cells_per_job`` is 0).

    Icons span at least ``params.min_positions`` of the layer's positions and are never larger than
    the model's input (``actlas.render.fit_to_layer``). The batch file
    holds cell (B,), icon (B, S, S, 3) uint8, objective (B,), faithfulness (B,),
    cells_digest, rendered (how many were not cached) and seconds.
    """
    import torch

    from .. import render as render_core
    from ..collect import resolve_device
    from ..digest import code_digest
    from ..layers import fast_paths, layer_kinds
    from ..models import load_model
    from ..smk import model_files

    if threads:
        torch.set_num_threads(threads)
    params = params or RenderParams()
    folder = Path(folder)
    with np.load(paths.cells(folder)) as f:
        directions = f["direction"]
    if batch >= paths.n_batches(len(directions), cells_per_job):
        raise ValueError(
            f"{folder} has {len(directions)} cells: batch {batch} of {cells_per_job} cells is past its end"
        )
    lo = batch * cells_per_job if cells_per_job else 0
    hi = min(lo + cells_per_job, len(directions)) if cells_per_job else len(directions)
    index = np.arange(lo, hi)
    whitening = np.load(paths.whiten(run_dir, layer))
    net, spec = load_model(model)
    dev = resolve_device(device)
    net.to(dev)
    ((_, _, grid),) = layer_kinds(net, [layer], spec.input_size, spec.layer_kinds, dev).values()
    params = render_core.fit_to_layer(params, spec.input_size, grid)  # deep layers: larger icons; 32 px model: 32 px
    # the same function, fewer ops (BatchNorm folded), in its fastest memory format; 1x1 convolutions
    # of a small CPU batch as matmuls (the same sums, bit for bit: the count is not part of the key)
    folded, memory_format, _ = fast_paths(net, spec, [layer], params.size, dev, stop_at=layer)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = False  # the same kernels every run: cached icons equal fresh ones
        torch.backends.cudnn.deterministic = True
    cache_dir = paths.icon_cache(run_dir)
    context = "|".join(
        [
            render_core.array_digest(whitening),
            json.dumps(spec.to_json(), sort_keys=True, default=str),
            files_digest(model_files(model)),
            code_digest("actlas.stages.render"),
            _compute(dev),
            torch.__version__,
            str(memory_format),  # the kernels, and so the bytes, differ between formats
            f"folded {folded}",  # likewise a folded BatchNorm (the rounding differs)
        ]
    )
    keys = [render_core.icon_key(directions[i], context, layer, params) for i in index]
    found = {k: cache_dir / f"{k}.npz" for k in keys if cache and (cache_dir / f"{k}.npz").exists()}
    todo = [r for r, k in enumerate(keys) if k not in found]
    icon = np.zeros((len(index), params.size, params.size, 3), dtype=np.uint8)
    objective = np.zeros(len(index), dtype=np.float32)
    faith = np.zeros(len(index), dtype=np.float32)
    for r, k in enumerate(keys):
        if k in found:
            c = paths.load_npz(found[k])
            icon[r], objective[r], faith[r] = c["icon"], c["objective"], c["faithfulness"]
    seconds = 0.0
    for lo_t in range(0, len(todo), params.batch_size):  # commit to the cache one batch at a time
        part = todo[lo_t : lo_t + params.batch_size]
        out = render_core.render(
            net, spec, layer, directions[index[part]], whitening=whitening, params=params, device=dev, progress=progress
        )
        seconds += float(out["seconds"])
        for j, r in enumerate(part):
            icon[r], objective[r], faith[r] = out["icon"][j], out["objective"][j], out["faithfulness"][j]
            if cache:
                paths.save_npz(
                    cache_dir / f"{keys[r]}.npz",
                    icon=out["icon"][j],
                    objective=out["objective"][j],
                    faithfulness=out["faithfulness"][j],
                )
    return paths.save_npz(
        paths.render_batch(folder, batch),
        cell=index,
        icon=icon,
        objective=objective,
        faithfulness=faith,
        cells_digest=np.str_(cells_digest(directions)),
        rendered=np.int64(len(todo)),
        seconds=np.float64(seconds),
        params=np.str_(json.dumps(params.to_json())),
    )


def render(
    run_dir: str | Path,
    layer: str,
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
    """Render the icons of one batch of a grid's cells -> ``LAYER/grid-N/render/batch-BBBBB.npz``."""
    return render_folder(
        paths.grid_dir(run_dir, layer, n),
        run_dir,
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
