"""collect: activations and attributions of one shard list -> one Zarr store (``RUN/collect/shard-N.zarr``).

The core (``actlas.collect``: positions, attribution) runs on batches this stage decodes
(``actlas.data.decode``) and commits to the store chunk by chunk (``actlas.data.store``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..collect import (
    activations,
    attribute,
    first_nonfinite,
    float16_loss,
    gather_rows,
    image_key,
    sample_positions,
)
from ..data import store
from ..data.decode import decode_pixels
from ..device import resolve_device, set_threads
from ..errors import ModelError
from ..formats.atomic import write_text
from ..formats.probe import read_probe
from ..formats.shards import append_skipped, format_skipped, keep_skipped, read_shard
from ..models.headhook import use_probe
from ..models.heads import head_of
from ..models.load import load_model
from ..models.spec import ModelSpec, to_float
from ..nn.fastpaths import fold_batchnorm, memory_format_for
from ..nn.layers import layer_kinds
from ..progress import progress_bar
from ..settings import Collect, Run


class ShardImages(torch.utils.data.Dataset):
    """Images of a shard list, decoded and preprocessed to uint8 (``spec.pixels``); undecodable ones come back flagged.

    Items are uint8 (3, H, W): a quarter of float32 to move between processes; ``collate`` stacks
    them and scales the whole batch to float32 [0, 1] at once, exactly as ``spec.transform`` would.
    """

    def __init__(self, rows: list[tuple[str, int]], spec: ModelSpec):
        self.rows, self.spec = rows, spec

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        path, _ = self.rows[i]
        image, reason = decode_pixels(path)
        if image is None:
            return torch.zeros(3, *self.spec.input_size, dtype=torch.uint8), False, reason, (0, 0)
        try:
            return self.spec.pixels(image), True, "", tuple(image.shape[1:])
        except Exception as err:  # noqa: BLE001 - any failure of one image skips that image only
            return torch.zeros(3, *self.spec.input_size, dtype=torch.uint8), False, f"cannot preprocess: {err}", (0, 0)


def collate(batch):
    """Items of ``ShardImages`` -> (x float32 (B, 3, H, W) in [0, 1], ok, reasons, sizes)."""
    x = to_float(torch.stack([b[0] for b in batch]))
    return x, [b[1] for b in batch], [b[2] for b in batch], [b[3] for b in batch]


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
    probe: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Collect one shard: K positions per image (edges avoided), activation and attribution there,
    into a Zarr store (``actlas.data.store``).

    Resumes a store left by a killed run at its last committed chunk. Undecodable images are
    skipped, counted, and listed with their reason in ``OUT.skipped.tsv`` (always written, so the
    workflow can declare it).

    Parameters
    ----------
    shard : path of a shard list (``actlas.formats.shards``)
    out : path of the shard store to write (``.zarr``)
    model : model source or model block (see ``actlas.load_model``)
    layers : layer paths to record
    positions : positions per image (0 = every position)
    attr_top : number of top predicted classes whose attribution is stored
    amp : bf16 autocast for the forward pass (faster on GPUs with bf16; activations are stored float16 anyway)
    probe : a ``head: probe`` model's ``probe.npz`` (default: the run's, ``RUN/probe/probe.npz`` beside ``out``'s
        ``collect/``). A model with ``head: none`` has no logits: its samples get no attribution (classes -1,
        values 0) and its images no predictions (-1).

    Returns a summary dict (images, skipped, rows per layer, seconds).
    """
    start = time.perf_counter()
    set_threads(threads)
    dev = resolve_device(device)
    net, spec = load_model(model)
    head = head_of(spec)
    if head.kind == "probe":  # before the fast paths: they compare the logits of the folded model
        record = read_probe(probe or paths.probe_npz(Path(out).parent.parent))
        use_probe(net, spec, record.weight, record.bias, record.classes)
    net.to(dev)
    found = layer_kinds(net, layers, spec.input_size, spec.layer_kinds, dev)  # fails before any store exists
    fold_batchnorm(net, spec, list(layers), tuple(spec.input_size), dev, logits=head.has_logits)  # fewer ops
    memory_format = memory_format_for(net, spec, None, tuple(spec.input_size), dev)  # channels_last: 1.45x on CPU
    rows = read_shard(shard)
    kinds = {name: kind for name, (kind, _, _) in found.items()}
    shapes = {name: (channels, *grid) for name, (_, channels, grid) in found.items()}
    columns = [
        store.Column("images/label", (), "int16"),
        store.Column("images/pred", (5,), "int16"),
        store.Column("images/prob", (5,), "float32"),
        store.Column("images/size", (2,), "int32"),
        store.Column("images/ok", (), "bool"),
    ]
    for name in layers:
        c = shapes[name][0]
        columns += [
            store.Column(f"{name}/activation", (c,), "float16"),
            store.Column(f"{name}/image", (), "int32"),
            store.Column(f"{name}/position", (2,), "int16"),
            store.Column(f"{name}/attr_class", (attr_top,), "int16"),
            store.Column(f"{name}/attr_value", (attr_top,), "float32"),
        ]
    params = {
        "model": spec.to_json(),
        "layers": list(layers),
        "positions": positions,
        "attr_top": attr_top,
        "seed": seed,
        "chunk": chunk,
        "images": len(rows),
    }
    if head.kind == "probe":
        params["probe"] = record.digest  # stores collected through different probes are never mixed
    if amp:
        params["amp"] = "bf16"  # recorded only when on, so float32 stores keep their parameters
    chunk = max(batch_size, chunk - chunk % batch_size)  # commits fall on batch boundaries
    group = store.open_shard(out, columns, params)
    if group.attrs.get("complete"):
        if not paths.store_skipped(out).exists():  # deleted since: its rows again, from the store
            _rewrite_skipped(out, rows)
        return dict(group.attrs["summary"])
    for name in layers:
        group[name].attrs.update(
            {"spatial": list(shapes[name][1:]), "channels": shapes[name][0], "kind": kinds[name].to_json()}
        )
    done = store.committed(group, "images/ok")
    skipped_path = paths.store_skipped(out)
    keep_skipped(skipped_path, {path for path, _ in rows[:done]})
    skipped_path.touch()
    loader = torch.utils.data.DataLoader(
        ShardImages(rows[done:], spec),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=dev.type == "cuda",
    )
    n_classes = None
    pending: dict[str, list[np.ndarray]] = {c.name: [] for c in columns}
    pending_skips: list[tuple[str, str]] = []
    offset = done

    def commit():
        store.append(group, {k: np.concatenate(v) for k, v in pending.items()})
        if pending_skips:
            append_skipped(skipped_path, pending_skips)
        for v in pending.values():
            v.clear()
        pending_skips.clear()

    with progress_bar(f"collect {Path(shard).name}", total=len(rows), completed=done, enabled=progress) as bar:
        for x, ok, reasons, sizes in loader:
            x = x.to(dev, non_blocking=True).contiguous(memory_format=memory_format)
            b = len(ok)
            if head.has_logits:
                logits, acts, attrs, classes = attribute(net, spec, x, layers, attr_top, amp=amp, kinds=kinds)
                n_classes = logits.shape[1]
                top_p, top_c = logits.softmax(1).topk(min(5, n_classes), dim=1)
            else:  # no class head: activations only, no attribution (classes -1, values 0), no predictions
                acts = activations(net, spec, x, layers, kinds)
                attrs = {n: torch.zeros(b, attr_top, *a.shape[2:]) for n, a in acts.items()}
                classes = torch.full((b, attr_top), -1)
                logits = top_p = top_c = torch.zeros(b, 0, device=x.device)
            _check_numbers(logits, acts, attrs, ok, [rows[offset + i][0] for i in range(len(ok))])
            pending["images/label"].append(np.array([rows[offset + i][1] for i in range(b)], dtype=np.int16))
            pending["images/pred"].append(_pad5(top_c.cpu().numpy()).astype(np.int16))
            pending["images/prob"].append(_pad5(top_p.cpu().numpy()).astype(np.float32))
            pending["images/size"].append(np.array(sizes, dtype=np.int32).reshape(b, 2))
            pending["images/ok"].append(np.array(ok, dtype=bool))
            for name in layers:
                pos = [
                    sample_positions(shapes[name][1:], positions, seed, image_key(rows[offset + i][0]))
                    if ok[i]
                    else np.zeros((0, 2), dtype=np.int64)
                    for i in range(b)
                ]
                a, v, owner = gather_rows(acts[name], attrs[name], pos)
                _check_float16(name, a)
                pending[f"{name}/activation"].append(a.astype(np.float16))
                pending[f"{name}/image"].append((owner + offset).astype(np.int32))
                pending[f"{name}/position"].append(np.concatenate(pos).astype(np.int16))
                pending[f"{name}/attr_class"].append(classes.cpu().numpy()[owner].astype(np.int16))
                pending[f"{name}/attr_value"].append(v.astype(np.float32))
            pending_skips.extend((rows[offset + i][0], reasons[i]) for i in range(b) if not ok[i])
            offset += b
            if (offset - done) % chunk == 0 or offset == len(rows):
                commit()
            bar.update(b)
    ok_all = store.read([out], "images/ok")
    summary = {
        "images": int(len(ok_all)),
        "skipped": int((~ok_all.astype(bool)).sum()),
        "rows": {name: store.committed(group, f"{name}/activation") for name in layers},
        "seconds": round(time.perf_counter() - start, 2),
        "n_classes": n_classes,
    }
    store.finish(group, summary=summary)
    return summary


def _rewrite_skipped(out, rows: list[tuple[str, int]]) -> None:
    """The skip list of a complete store, written again: the images the store marks not ok, each with the
    reason decoding gives now."""
    ok = store.read([out], "images/ok").astype(bool)
    skipped = [(rows[i][0], decode_pixels(rows[i][0])[1] or "cannot preprocess") for i in np.flatnonzero(~ok)]
    write_text(paths.store_skipped(out), format_skipped(skipped))


def _check_numbers(logits, acts, attrs, ok: list[bool], images: list[str]) -> None:
    """Stop at the first NaN or infinity of a batch, in one line naming the model output or layer and the image."""
    found = first_nonfinite(logits, acts, attrs, ok)
    if found is None:
        return
    what, i = found
    kind, _, layer = what.partition(":")
    if kind == "logits":
        cause = "the model's output (its logits) is NaN or infinite"
        fix = "the model or its weights are broken: check model.weights and model.output"
    elif kind == "activation":
        cause = f"layer {layer!r} gives NaN or infinite activations"
        fix = "the model or its weights are broken there: check model.weights, or choose another layer"
    else:
        cause = f"the attribution of layer {layer!r} to the logits is NaN or infinite (its gradient overflows)"
        fix = "choose another layer, or check model.weights"
    raise ModelError(f"{cause} on {images[i]}; {fix}")


def _check_float16(layer: str, rows: np.ndarray) -> None:
    """Refuse activations the float16 store would flush to 0 or turn to inf, in one line naming the layer."""
    loss = float16_loss(rows)
    if loss is not None:
        top, low = loss
        raise ModelError(
            f"layer {layer!r} has activations of magnitude {low:.3g} to {top:.3g}, outside the float16 range collect "
            "stores (6e-08 to 65504: they would be stored as 0 or inf); choose another layer, or rescale the model"
        )


def _pad5(a: np.ndarray) -> np.ndarray:
    if a.shape[1] >= 5:
        return a[:, :5]
    return np.pad(a, ((0, 0), (0, 5 - a.shape[1])), constant_values=-1)
