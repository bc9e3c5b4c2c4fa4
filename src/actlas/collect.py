"""collect's core: activations and their attribution to the logits, at sampled positions.

For every image: run the model, pick ``positions`` random positions per layer (edges avoided) or
all of them (a layer of any kind is read as a map of positions, ``actlas.nn.kinds.layer_view``:
patch tokens on their grid, a pooled vector or CLS token at one position), and take the
activation vector there and its attribution to each of the ``attr_top`` top predicted classes:
sum over channels of activation x d(logit)/d(activation) at that position. Max-pool gradients
are relaxed to average-pool gradients (as in the Activation Atlas article). The stage
``actlas.stages.collect`` feeds it images and writes a shard store.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .models.spec import ModelSpec
from .nn.kinds import LayerKind, detect_kind, layer_view
from .nn.layers import capture, output_tensor


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
    kinds : layer -> ``LayerKind`` (``actlas.nn.kinds``); missing ones are declared by the spec or detected

    Returns
    -------
    logits : (B, n_classes)
    activations : layer -> (B, C, h, w), detached: every kind of output as a map of positions
        (``actlas.nn.kinds.layer_view``: patch tokens on their grid, a pooled vector at one position)
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
        if attr_top > logits.shape[1]:
            raise ConfigError(
                f"collect.attr_top is {attr_top} but the model has {logits.shape[1]} classes: "
                f"set collect.attr_top (--attr-top) to at most {logits.shape[1]}"
            )
        classes = logits.detach().topk(attr_top, dim=1).indices
        acts = [outs[name] for name in layers]
        for name, act in zip(layers, acts):
            if name not in kinds:
                kinds[name] = detect_kind(act.shape[1:], hw, spec.layer_kind(name), name)
        views = [layer_view(act.detach(), kinds[name], hw) for name, act in zip(layers, acts)]
        attributions = {name: [] for name in layers}
        if not logits.requires_grad:
            _check_reached(layers, [None] * len(layers))
        for j in range(attr_top):
            picked = logits.gather(1, classes[:, j : j + 1]).sum()
            grads = torch.autograd.grad(picked, acts, retain_graph=j < attr_top - 1, allow_unused=True)
            _check_reached(layers, grads)
            for name, view, grad in zip(layers, views, grads):
                attributions[name].append((view.float() * layer_view(grad, kinds[name], hw).float()).sum(1))
    return (
        logits.detach(),
        dict(zip(layers, views)),
        {n: torch.stack(v, 1) for n, v in attributions.items()},
        classes,
    )


def photo_means(activation: torch.Tensor, attribution: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's mean over every position a sample may be drawn from (``sample_positions`` with k = 0: edges
    avoided), the points an aligned atlas lays out: activation (B, C, h, w), attribution (B, k, h, w) ->
    (means (B, C), mean attributions (B, k)), float32.

    Aligned atlases match two maps by photo: a photo's mean over every position aligned better than its
    samples, and than its mean over the drawn positions, in every pair measured (BENCHMARKS.md, bench_align).
    """
    grid = torch.from_numpy(_position_grid(tuple(activation.shape[-2:])).astype(np.int64))
    y, x = grid[:, 0], grid[:, 1]
    means = activation[:, :, y.to(activation.device), x.to(activation.device)].float().mean(-1)
    attr = attribution[:, :, y.to(attribution.device), x.to(attribution.device)].float().mean(-1)
    return means.cpu().numpy(), attr.cpu().numpy()


def activations(
    model: nn.Module, spec: ModelSpec, x: torch.Tensor, layers: list[str], kinds: dict[str, LayerKind] | None = None
) -> dict[str, torch.Tensor]:
    """The layers' outputs as maps of positions, layer -> (B, C, h, w), from one forward without gradients
    that stops after the last of ``layers``: a model without a class head (``head: none``) has no logits
    to attribute to. ``x`` float (B, 3, H, W) in [0, 1]."""
    from .nn.layers import run_until

    kinds = dict(kinds or {})
    hw = tuple(x.shape[-2:])
    with torch.no_grad(), capture(model, layers, stop=True) as outs:
        found = run_until(model, spec.normalize(x), outs)
    views = {}
    for name in layers:
        act = output_tensor(found[name])
        kind = kinds.get(name) or detect_kind(act.shape[1:], hw, spec.layer_kind(name), name)
        views[name] = layer_view(act, kind, hw)
    return views


def _check_reached(layers: list[str], grads) -> None:
    """Refuse, in one line, a layer the logits do not depend on (its gradient is None)."""
    from .nn.problems import unreached_layer

    for name, grad in zip(layers, grads):
        if grad is None:
            raise unreached_layer(name)


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


# float16 (what collect stores activations as) holds magnitudes from about 6e-8 (below: 0) to 65504 (above: inf)
FLOAT16_MAX = float(np.finfo(np.float16).max)
# the share of a batch's activation energy float16 may lose before the stored rows stop being the layer's
FLOAT16_LOSS = 1e-2


def first_nonfinite(logits: torch.Tensor, acts: dict, attrs: dict, ok: list[bool]) -> tuple[str, int] | None:
    """The first non-finite output of a batch: (what, image in 0..B-1) or None when all are finite.

    ``what`` is ``"logits"`` (the model output), ``"activation:LAYER"`` or ``"attribution:LAYER"``;
    logits (B, n_classes), acts LAYER -> (B, C, h, w), attrs LAYER -> (B, k, h, w); images not ``ok``
    (undecodable, zeros) are left out.
    """
    keep = torch.as_tensor(ok, dtype=torch.bool, device=logits.device)
    tensors = [("logits", logits)] + [(f"activation:{n}", a) for n, a in acts.items()]
    tensors += [(f"attribution:{n}", a) for n, a in attrs.items()]
    for what, t in tensors:
        bad = ~torch.isfinite(t.reshape(len(t), -1)).all(1) & keep.to(t.device)
        if bool(bad.any()):
            return what, int(bad.nonzero()[0, 0])
    return None


def float16_loss(rows: np.ndarray) -> tuple[float, float] | None:
    """Rows (n, C) float32 that float16 cannot hold: (largest magnitude, smallest nonzero magnitude), else None.

    Refused: any magnitude over 65504 (inf in float16), or a share of the rows' energy over ``FLOAT16_LOSS``
    lost by the round trip (magnitudes near or under 6e-8 flush to 0).
    """
    a = np.abs(np.asarray(rows, dtype=np.float32))
    if not a.size:
        return None
    top = float(a.max())
    nonzero = a[a > 0]
    low = float(nonzero.min()) if nonzero.size else 0.0
    if top > FLOAT16_MAX:
        return top, low
    energy = float(np.square(a, dtype=np.float64).sum())
    lost = float(np.square(a.astype(np.float16).astype(np.float64) - a).sum())
    return (top, low) if energy > 0 and lost > FLOAT16_LOSS * energy else None
