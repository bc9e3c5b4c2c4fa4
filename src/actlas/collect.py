"""collect: activations and their attribution to the logits, at sampled positions, into a shard store.

For every image: run the model, pick ``positions`` random positions per layer (edges avoided) or
all of them (a layer of any kind is read as a map of positions, ``actlas.layers.layer_view``:
patch tokens on their grid, a pooled vector or CLS token at one position), record the activation vector there and its attribution to each of the ``attr_top``
top predicted classes: sum over channels of activation x d(logit)/d(activation) at that position.
Max-pool gradients are relaxed to average-pool gradients (as in the Activation Atlas article).
"""

from __future__ import annotations

import functools
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import images as imgs
from . import store
from .layers import LayerKind, capture, detect_kind, fold_batchnorm, layer_kinds, layer_view, memory_format_for
from .models import ModelSpec, load_model, to_float
from .progress import progress_bar

# --------------------------------------------------------------------------- pure pieces


def sample_positions(spatial: tuple[int, int], k: int, seed: int, key: int) -> np.ndarray:
    """Positions (y, x), shape (k, 2) int, drawn without replacement away from the edges.

    ``k=0`` means every position. The margin is one position on layers at least 5 wide. The draw
    depends only on (seed, key), so it does not change with batching or sharding.
    """
    grid = _position_grid(tuple(spatial))
    if k <= 0 or k >= len(grid):
        return grid.copy()
    pick = np.random.default_rng([seed, key]).choice(len(grid), size=k, replace=False)
    return grid[np.sort(pick)]


@functools.lru_cache(maxsize=64)
def _position_grid(spatial: tuple[int, int]) -> np.ndarray:
    """Every position (y, x) of a layer, edges avoided, shape (n, 2) int (read only: cached)."""
    h, w = spatial
    margin = 1 if min(h, w) >= 5 else 0
    ys, xs = np.meshgrid(np.arange(margin, h - margin), np.arange(margin, w - margin), indexing="ij")
    grid = np.stack([ys.ravel(), xs.ravel()], axis=1)
    grid.setflags(write=False)
    return grid


def image_key(path: str) -> int:
    """A stable integer for an image path (seeds its positions)."""
    return zlib.crc32(path.encode())


class _RelaxedMaxPool(torch.autograd.Function):
    """max_pool2d forward, avg_pool2d gradient backward."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode):
        ctx.save_for_backward(x)
        ctx.args = (kernel, stride, padding, ceil_mode)
        return F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        kernel, stride, padding, ceil_mode = ctx.args
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            out = F.avg_pool2d(leaf, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=False)
            (gx,) = torch.autograd.grad(out, leaf, grad)
        return gx, None, None, None, None


@contextmanager
def relaxed_max_pool(model: nn.Module) -> Iterator[None]:
    """Within the block, every nn.MaxPool2d of ``model`` back-propagates as an average pool."""
    patched = []
    for module in model.modules():
        if isinstance(module, nn.MaxPool2d):
            m = module

            def forward(x, m=m):
                return _RelaxedMaxPool.apply(x, m.kernel_size, m.stride or m.kernel_size, m.padding, m.ceil_mode)

            module.forward = forward
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def attribute(
    model: nn.Module,
    spec: ModelSpec,
    x: torch.Tensor,
    layers: list[str],
    attr_top: int,
    amp: bool = False,
    kinds: dict[str, LayerKind] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """One forward and ``attr_top`` batched backward passes.

    Parameters
    ----------
    x : float tensor, shape (B, 3, H, W), RGB in [0, 1]
    amp : run the forward under bf16 autocast (activations come back bf16; logits and attributions float32)
    kinds : layer -> ``LayerKind`` (``actlas.layers``); missing ones are declared by the spec or detected

    Returns
    -------
    logits : (B, n_classes)
    activations : layer -> (B, C, h, w), detached: every kind of output as a map of positions
        (``actlas.layers.layer_view``: patch tokens on their grid, a pooled vector at one position)
    attributions : layer -> (B, attr_top, h, w): sum over channels of activation x gradient of
        the logit of the j-th top class, at every position
    classes : (B, attr_top) int64, the top predicted classes
    """
    kinds = dict(kinds or {})
    hw = tuple(x.shape[-2:])
    with relaxed_max_pool(model), capture(model, layers, leaf=True) as outs, torch.enable_grad():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(spec.normalize(x))
        logits = logits.float()
        classes = logits.detach().topk(attr_top, dim=1).indices
        acts = [outs[name] for name in layers]
        for name, act in zip(layers, acts):
            if name not in kinds:
                kinds[name] = detect_kind(act.shape[1:], hw, spec.layer_kind(name), name)
        views = [layer_view(act.detach(), kinds[name], hw) for name, act in zip(layers, acts)]
        attributions = {name: [] for name in layers}
        for j in range(attr_top):
            picked = logits.gather(1, classes[:, j : j + 1]).sum()
            grads = torch.autograd.grad(picked, acts, retain_graph=j < attr_top - 1)
            for name, view, grad in zip(layers, views, grads):
                attributions[name].append((view.float() * layer_view(grad, kinds[name], hw).float()).sum(1))
    return (
        logits.detach(),
        dict(zip(layers, views)),
        {n: torch.stack(v, 1) for n, v in attributions.items()},
        classes,
    )


def gather_rows(
    activation: torch.Tensor, attribution: torch.Tensor, positions: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows at sampled positions.

    activation (B, C, h, w), attribution (B, k, h, w), positions: one (n_b, 2) array per image.
    Returns activations (n, C), attribution values (n, k), and each row's image (n,) in 0..B-1.
    """
    owner = np.concatenate([np.full(len(p), b) for b, p in enumerate(positions)]).astype(np.int64)
    where = np.concatenate(positions).astype(np.int64)
    b, y, xx = torch.from_numpy(owner), torch.from_numpy(where[:, 0]), torch.from_numpy(where[:, 1])
    acts = activation[b, :, y, xx]
    vals = attribution[b, :, y, xx]
    return acts.float().cpu().numpy(), vals.float().cpu().numpy(), owner


# --------------------------------------------------------------------------- data loading


class ShardImages(torch.utils.data.Dataset):
    """Images of a shard list, decoded and preprocessed to uint8 (``spec.pixels``); undecodable ones come back flagged.

    Items are uint8 (3, H, W): a quarter of float32 to move between processes; ``_collate`` stacks
    them and scales the whole batch to float32 [0, 1] at once, exactly as ``spec.transform`` would.
    """

    def __init__(self, rows: list[tuple[str, int]], spec: ModelSpec):
        self.rows, self.spec = rows, spec

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        path, _ = self.rows[i]
        image, reason = imgs.decode_pixels(path)
        if image is None:
            return torch.zeros(3, *self.spec.input_size, dtype=torch.uint8), False, reason, (0, 0)
        try:
            return self.spec.pixels(image), True, "", tuple(image.shape[1:])
        except Exception as err:  # noqa: BLE001 - any failure of one image skips that image only
            return torch.zeros(3, *self.spec.input_size, dtype=torch.uint8), False, f"cannot preprocess: {err}", (0, 0)


def _collate(batch):
    """Items of ``ShardImages`` -> (x float32 (B, 3, H, W) in [0, 1], ok, reasons, sizes)."""
    x = to_float(torch.stack([b[0] for b in batch]))
    return x, [b[1] for b in batch], [b[2] for b in batch], [b[3] for b in batch]


# --------------------------------------------------------------------------- the stage


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def collect(
    shard: str | Path,
    out: str | Path,
    model: str | Mapping,
    layers: list[str],
    *,
    positions: int = 1,
    attr_top: int = 5,
    batch_size: int = 32,
    chunk: int = 256,
    seed: int = 0,
    workers: int = 1,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    amp: bool = False,
) -> dict:
    """Collect activations and attributions for the images of one shard list into a Zarr store.

    Resumes a store left by a killed run at its last committed chunk. Undecodable images are
    skipped, counted, and listed with their reason in ``OUT.skipped.tsv``.

    Parameters
    ----------
    shard : path of a shard list (``path<TAB>label`` lines)
    out : path of the shard store to write (``.zarr``)
    model : model source or model block (see ``actlas.load_model``)
    layers : layer paths to record
    positions : positions per image (0 = every position)
    attr_top : number of top predicted classes whose attribution is stored
    amp : bf16 autocast for the forward pass (faster on GPUs with bf16; activations are stored float16 anyway)

    Returns a summary dict (images, skipped, rows per layer, seconds).
    """
    start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    net, spec = load_model(model)
    net.to(dev)
    found = layer_kinds(net, layers, spec.input_size, spec.layer_kinds, dev)  # fails before any store exists
    fold_batchnorm(net, spec, list(layers), tuple(spec.input_size), dev)  # the same function, fewer ops
    memory_format = memory_format_for(net, spec, None, tuple(spec.input_size), dev)  # channels_last: 1.45x on CPU
    rows = imgs.read_shard(shard)
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
    if amp:
        params["amp"] = "bf16"  # recorded only when on, so float32 stores keep their parameters
    chunk = max(batch_size, chunk - chunk % batch_size)  # commits fall on batch boundaries
    group = store.open_shard(out, columns, params)
    if group.attrs.get("complete"):
        return dict(group.attrs["summary"])
    for name in layers:
        group[name].attrs.update(
            {"spatial": list(shapes[name][1:]), "channels": shapes[name][0], "kind": kinds[name].to_json()}
        )
    done = store.committed(group, "images/ok")
    skipped_path = Path(str(out) + ".skipped.tsv")
    _keep_skipped(skipped_path, {path for path, _ in rows[:done]})
    loader = torch.utils.data.DataLoader(
        ShardImages(rows[done:], spec),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
    )
    n_classes = None
    pending: dict[str, list[np.ndarray]] = {c.name: [] for c in columns}
    pending_skips: list[tuple[str, str]] = []
    offset = done

    def commit():
        store.append(group, {k: np.concatenate(v) for k, v in pending.items()})
        if pending_skips:
            with open(skipped_path, "a") as f:
                f.writelines(f"{p}\t{r}\n" for p, r in pending_skips)
        for v in pending.values():
            v.clear()
        pending_skips.clear()

    with progress_bar(f"collect {Path(shard).name}", total=len(rows), completed=done, enabled=progress) as bar:
        for x, ok, reasons, sizes in loader:
            x = x.to(dev, non_blocking=True).contiguous(memory_format=memory_format)
            logits, acts, attrs, classes = attribute(net, spec, x, layers, attr_top, amp=amp, kinds=kinds)
            n_classes = logits.shape[1]
            top_p, top_c = logits.softmax(1).topk(min(5, n_classes), dim=1)
            b = len(ok)
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


def _keep_skipped(path: Path, committed_paths: set[str]) -> None:
    """Drop skip-log lines of images past the last commit (they will be tried again)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.split("\t")[0] in committed_paths]
    path.write_text("".join(lines))


def _pad5(a: np.ndarray) -> np.ndarray:
    if a.shape[1] >= 5:
        return a[:, :5]
    return np.pad(a, ((0, 0), (0, 5 - a.shape[1])), constant_values=-1)
