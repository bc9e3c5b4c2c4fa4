"""render: icons of one batch of a grid's cells -> ``FOLDER/render/batch-BBBBB.npz``.

The model is loaded once and the batch's cells are optimised together (``actlas.viz.render``).
Icons are also kept in ``RUN/cache/icons/`` under a key of everything an icon depends on
(direction, whitening, model, layer, render settings, the render code, the device and torch
version, and ``ICON_CACHE_FORMAT``), so a killed job resumes without redoing finished icons and a
hit is exactly what a fresh render would give.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..device import resolve_device, set_threads
from ..digest import code_digest
from ..errors import ConfigError
from ..formats.batches import RenderBatch, cells_digest, read_cached_icon, write_batch, write_cached_icon
from ..formats.cells import read_directions
from ..formats.layout import read_whitening
from ..models.load import load_model
from ..models.sizes import fit_icons
from ..models.sources import model_files
from ..nn.fastpaths import fast_paths
from ..nn.layers import layer_kinds
from ..settings import Render, RenderParams, Run
from ..viz import render as render_core

# The version of the icon cache's keys: raise it when what a key covers changes, so that no icon
# cached under the old meaning is served (every icon renders once more).
ICON_CACHE_FORMAT = 2


def icon_key(direction: np.ndarray, context: str, layer: str, params: RenderParams) -> str:
    """Content key of an icon: its direction (C,), the layer, every render setting, ``ICON_CACHE_FORMAT``
    and ``context``, a digest of everything else the icon depends on (whitening, model, code, device)."""
    h = hashlib.sha256()
    h.update(f"icon cache format {ICON_CACHE_FORMAT}\0".encode())
    h.update(np.ascontiguousarray(direction, dtype=np.float32).tobytes())
    h.update(context.encode())
    h.update(layer.encode())
    h.update(repr(sorted(params.to_json().items())).encode())
    return h.hexdigest()[:32]


def array_digest(a: np.ndarray | None) -> str:
    """A short digest of an array's bytes ("" for None)."""
    if a is None:
        return ""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def files_digest(files: list[str]) -> str:
    """Digest of the contents of files (the model's weights and cards: an icon depends on them)."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0")
        with open(name, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def compute_context(dev: torch.device) -> str:
    """What an icon's bytes depend on besides its inputs: the device type and, on a CPU, the thread
    count (kernels and their summation order follow it); on a GPU, its name."""
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
    pool: str = "centre",
) -> Path:
    """Render batch ``batch`` of the cells in ``FOLDER/cells.npz`` (all cells when ``cells_per_job`` is 0).

    Icons span at least ``params.min_positions`` of the layer's positions and are never larger than
    the model's input (``actlas.viz.render.fit_to_layer``); a network that takes only its input size gets
    icons of that size (``actlas.models.sizes.fit_icons``). ``pool``: where the icon is read
    (``actlas.viz.render.render``; ``mean`` for an aligned atlas's photo means, keyed and recorded in the
    batch's ``params``). Writes the render batch (``actlas.formats.batches``).
    """
    set_threads(threads)
    params = params or RenderParams()
    folder = Path(folder)
    directions = read_directions(paths.cells(folder))
    if batch >= paths.n_batches(len(directions), cells_per_job):
        raise ConfigError(
            f"{folder} has {len(directions)} cells: batch {batch} of {cells_per_job} cells is past its end"
        )
    lo = batch * cells_per_job if cells_per_job else 0
    hi = min(lo + cells_per_job, len(directions)) if cells_per_job else len(directions)
    index = np.arange(lo, hi)
    whitening = read_whitening(paths.whiten(run_dir, layer))
    net, spec = load_model(model)
    dev = resolve_device(device)
    net.to(dev)
    ((_, _, grid),) = layer_kinds(net, [layer], spec.input_size, spec.layer_kinds, dev).values()
    params = render_core.fit_to_layer(params, spec.input_size, grid)  # deep layers: larger icons; 32 px model: 32 px
    params = fit_icons(params, net, spec, layer, dev)  # a network of one input size: icons of that size
    # the same function, fewer ops (BatchNorm folded), in its fastest memory format; 1x1 convolutions
    # of a small CPU batch as matmuls (the same sums, bit for bit: their count is not part of the key)
    fast = fast_paths(net, spec, [layer], params.size, dev, stop_at=layer)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = False  # the same kernels every run: cached icons equal fresh ones
        torch.backends.cudnn.deterministic = True
    context = "|".join(
        [
            array_digest(whitening),
            json.dumps(spec.to_json(), sort_keys=True, default=str),
            files_digest(model_files(model)),
            code_digest("actlas.stages.render"),
            compute_context(dev),
            torch.__version__,
            str(fast.memory_format),  # the kernels, and so the bytes, differ between formats
            f"folded {fast.folded}",  # likewise a folded BatchNorm (the rounding differs)
        ]
        + ([f"pool {pool}"] if pool != "centre" else [])  # only a pooled icon names its pool
    )
    keys = [icon_key(directions[i], context, layer, params) for i in index]
    icon = np.zeros((len(index), params.size, params.size, 3), dtype=np.uint8)
    objective = np.zeros(len(index), dtype=np.float32)
    faith = np.zeros(len(index), dtype=np.float32)
    todo = []
    for r, k in enumerate(keys):
        # a cached icon that does not pass its digest (repainted, damaged, copied) is rendered again
        hit = read_cached_icon(paths.cached_icon(run_dir, k), params.size) if cache else None
        if hit is None:
            todo.append(r)
        else:
            icon[r], objective[r], faith[r] = hit
    seconds = 0.0
    for lo_t in range(0, len(todo), params.batch_size):  # commit to the cache one batch at a time
        part = todo[lo_t : lo_t + params.batch_size]
        out = render_core.render(
            net,
            spec,
            layer,
            directions[index[part]],
            whitening=whitening,
            params=params,
            device=dev,
            memory_format=fast.memory_format,
            progress=progress,
            pool=pool,
        )
        seconds += float(out["seconds"])
        for j, r in enumerate(part):
            icon[r], objective[r], faith[r] = out["icon"][j], out["objective"][j], out["faithfulness"][j]
            if cache:
                write_cached_icon(
                    paths.cached_icon(run_dir, keys[r]), out["icon"][j], out["objective"][j], out["faithfulness"][j]
                )
    record = RenderBatch(
        cell=index,
        icon=icon,
        objective=objective,
        faithfulness=faith,
        cells_digest=cells_digest(directions),
        rendered=len(todo),
        seconds=seconds,
        params=params.to_json() | ({"pool": pool} if pool != "centre" else {}),
    )
    return write_batch(paths.render_batch(folder, batch), record)


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
