"""render: feature visualisation of many directions at once -> icons, with a faithfulness score.

Each direction is optimised as one image of a batch (FFT parameterisation, decorrelated colour,
transformation robustness, Adam), maximising dot(h, v) * cos(h, v) ** power at the centre of the
layer, where v is the whitened direction, moving only low frequencies for the first ``coarse``
steps. Each try keeps its best-scoring image (``check_every``)
and an icon is the best of ``tries``. Faithfulness is the cosine between the icon's own
(unwhitened) centre activation and the cell's direction. With ``pool="mean"`` both read the mean over
the icon's positions instead (``objectives.photo_mean``): the icons of an aligned atlas, whose cells are
means of photo means.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..models.spec import ModelSpec
from ..nn.kinds import detect_kind, layer_view
from ..nn.layers import capture, run_until
from ..progress import progress_bar
from ..settings import SCHEDULES, RenderParams
from . import objectives, param, transforms


def direction_seed(direction: np.ndarray, seed: int, attempt: int) -> int:
    """A seed that depends only on a direction's values, the run seed and the try number."""
    digest = hashlib.sha256(np.ascontiguousarray(direction, dtype=np.float32).tobytes()).digest()
    return (int.from_bytes(digest[:4], "little") ^ (seed * 1_000_003) ^ (attempt * 7919)) & 0x7FFFFFFF


def fit_to_layer(params: RenderParams, input_size: tuple[int, int], grid: tuple[int, int]) -> RenderParams:
    """Render settings for a layer whose map of positions is ``grid`` (h, w) on an input of ``input_size`` (H, W).

    An icon spans at least ``params.min_positions`` of the layer's positions a side, so a deep layer
    (stride 32: one position per 32 input pixels) gets a larger icon than ``params.size``: at 80 px
    its centre position sees mostly the icon's border. Measured on the shared MobileNetV2
    (BENCHMARKS.md), faithfulness at ``features.16`` (stride 32) went from 0.77 at 80 px to 0.84 at
    128 px, while 128 px gained nothing at stride 16 and lost at stride 8. A layer of one position
    (a pooled vector, a CLS token) has no stride: its size stays. Then ``fit_to_input``.
    """
    if params.min_positions > 0 and min(grid) > 1:
        stride = max(input_size[0] / grid[0], input_size[1] / grid[1])
        want = int(math.ceil(params.min_positions * stride))
        if want > params.size:
            params = dataclasses.replace(params, size=want)
    return fit_to_input(params, input_size)


MIN_JITTER = 2  # pixels: fit_to_input shrinks a jitter no further


def fit_to_input(params: RenderParams, input_size: tuple[int, int]) -> RenderParams:
    """Render settings for a model whose input is ``input_size`` (H, W): an icon is never larger than
    the model's input (a 32 px model's icons render at 32 px, shown enlarged by the atlas), and its
    pad and jitter shrink with it in proportion, the jitter to no less than ``MIN_JITTER`` (or the
    asked jitter, if smaller). Settings for a larger input come back unchanged.

    The spectrum decay steepens so that the FFT parameterisation keeps the range it had at the
    asked size: the scale of its highest frequency (0.707 cycles a pixel) over its lowest (one
    cycle an icon) is (0.707 S) ** decay_power, so decay_power becomes
    decay_power * ln(0.707 S) / ln(0.707 side). Asked 80 px at 1.5, a 32 px icon gets 1.94 (asked
    the default 96 px, 2.03). On the CIFAR-10 ResNet-20 at 32 px, steepening 1.25 to 1.62 lifted
    ``layer2``'s saturation ratio from 0.63-0.67 to 1.25 on two direction sets, at about the same
    faithfulness (BENCHMARKS.md).

    The learning rate falls so that the image keeps the pace it had at the asked size: Adam moves
    each spectrum coefficient about ``lr`` a step, and the orthonormal inverse FFT spreads the
    lowest frequency's, scaled by S ** decay_power, over S x S pixels, so a step moves a pixel
    about lr * S ** (decay_power - 1). Asked 80 px at lr 0.025, a 32 px icon gets 0.0086 (asked
    96 px, 0.0069): at 0.025 it moved three times as fast, and on four 32 px models (ResNet-20, a
    ViT, a plain VGG chain, a MobileNetV1-like chain) its icons were neon blow-outs, the VGG's
    high-frequency ratio 1.8 and the ViT's p10 faithfulness 0.68 (BENCHMARKS.md).
    """
    side = int(min(input_size))
    if side >= params.size:
        return params
    ratio = side / params.size
    decay = round(params.decay_power * math.log(0.707 * params.size) / math.log(max(0.707 * side, 2.0)), 3)
    pace = params.size ** (params.decay_power - 1) / side ** (decay - 1)  # lr_end as lr
    # a jitter of 1 px let ResNet-20 layer2's icons fill with pixel-sized grain (BENCHMARKS.md): 2 px at least
    jitter = max(int(round(params.jitter * ratio)), min(params.jitter, MIN_JITTER))
    return dataclasses.replace(
        params,
        size=side,
        pad=int(round(params.pad * ratio)),
        jitter=jitter,
        decay_power=decay,
        lr=float(f"{params.lr * pace:.4g}"),
        lr_end=float(f"{params.lr_end * pace:.4g}"),
    )


COARSE_CYCLES = 4  # render.coarse: the band its first steps move, cycles an icon


def lr_schedule(p: RenderParams) -> list[float]:
    """The learning rate of each of ``p.steps`` steps: a linear ramp over the first ``p.warmup``
    steps, then ``p.lr`` (``constant``) or a half cosine from ``p.lr`` down towards ``p.lr_end``,
    reached one step after the last (``cosine``)."""
    if p.schedule not in SCHEDULES:
        raise ConfigError(f"render.schedule {p.schedule!r} is not one of {', '.join(SCHEDULES)}")
    rates, rest = [], max(p.steps - p.warmup, 1)
    for step in range(p.steps):
        rate = p.lr * (min(1.0, (step + 1) / p.warmup) if p.warmup else 1.0)
        if p.schedule == "cosine":
            rate = p.lr_end + (rate - p.lr_end) * 0.5 * (1 + math.cos(math.pi * max(step - p.warmup, 0) / rest))
        rates.append(rate)
    return rates


class _RedirectedReLU(torch.autograd.Function):
    """ReLU forward; backward also passes the gradient that would raise a negative input (Lucid's redirected
    ReLU gradient): x (any shape) -> relu(x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # where the input is negative only the push upwards passes (grad < 0: the loss wants it higher)
        return torch.where((x > 0) | (grad < 0), grad, torch.zeros_like(grad))


def output_relus(model: nn.Module, spec: ModelSpec, layer: str, images: torch.Tensor) -> list[nn.Module]:
    """The ``nn.ReLU`` modules whose output is ``layer``'s output (a post-ReLU layer: a ResNet block's last
    ReLU, a ReLU layer itself), found on one forward of images (B, 3, S, S) -> a list, empty when the layer
    does not end in an ``nn.ReLU`` module (a functional ReLU is not seen)."""
    found: list[tuple[torch.Tensor, nn.Module]] = []  # the outputs are kept: a freed one's id can be reused

    def hook(module, _inputs, output):
        found.append((output, module))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad(), capture(model, [layer], stop=True) as outs:
            out = run_until(model, spec.normalize(images), outs)[layer]
            return [module for output, module in found if output is out]
    finally:
        for handle in handles:
            handle.remove()


def _redirect(modules: list[nn.Module]) -> list:
    """Give ``modules`` (``nn.ReLU``, in place or not) the redirected gradient while the hooks stay -> handles."""
    inputs: dict[int, torch.Tensor] = {}

    def pre(module, args):
        inputs[id(module)] = args[0]
        return (args[0].clone(),)  # an in-place ReLU then leaves the pre-activation the backward needs

    def post(module, _args, _output):
        return _RedirectedReLU.apply(inputs.pop(id(module)))

    return [h for m in modules for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]


def _optimise(
    model: nn.Module,
    spec: ModelSpec,
    layer: str,
    targets: torch.Tensor,
    seeds: list[int],
    p: RenderParams,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    pool: str = "centre",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise one batch: targets (B, C) unit whitened directions -> (images (B, 3, S, S), objective (B,)).

    Each image is the best-scoring of the images seen at every ``p.check_every``-th step (from the
    start) and at the end, scored untransformed: an icon never ends lower than the optimiser got it.
    With 0, the last image. Measured on the shared MobileNetV2's ``features.6`` (BENCHMARKS.md), the
    optimiser can leave a flat region's faithful grey start for a texture that scores nothing.
    """
    if p.param not in param.PARAMETERISATIONS:
        raise ConfigError(f"render.param {p.param!r} is not one of {', '.join(param.PARAMETERISATIONS)}")
    make = param.PARAMETERISATIONS[p.param]
    params, image_fn = make(len(seeds), p.size, seeds=seeds, decay_power=p.decay_power, device=device)
    draws = transforms.draw(seeds, p.steps, p.jitter, max(p.jitter // 2, 0), p.scale, p.rotate)
    draws = torch.from_numpy(draws).to(device)
    optimizer = torch.optim.Adam(params, lr=p.lr)
    rates = lr_schedule(p)
    # coarse to fine: the first p.coarse steps move only the low frequencies, then a fresh Adam moves
    # all (a coefficient first moved at step t by an old Adam would take steps of several lr)
    low = [param.low_pass(t, p.size, COARSE_CYCLES) for t in params] if p.coarse else None
    best_images, best_score = None, None
    # a post-ReLU layer: the direction's channels are often 0 at the start image's centre, so their gradient is
    # 0 and the icon never makes them fire; the first p.redirect steps let it (BENCHMARKS.md, concept icons)
    hooks = _redirect(output_relus(model, spec, layer, image_fn().detach())) if p.redirect else []
    try:
        with capture(model, [layer], stop=True) as outs:

            def keep_best() -> None:
                # Score the current images as they are (no transforms) and keep each one that beats its best.
                nonlocal best_images, best_score
                with torch.no_grad():
                    images = image_fn()
                    h = _centre(spec, layer, run_until(model, spec.normalize(images), outs)[layer], images, pool)
                    score = objectives.direction_cossim(h, targets, p.power)
                best_images, best_score = keep_better(best_images, best_score, images, score)

            for step in range(p.steps):
                if hooks and step == p.redirect:
                    for handle in hooks:
                        handle.remove()
                    hooks = []
                if p.check_every and step % p.check_every == 0:
                    keep_best()
                if low is not None and step == p.coarse:
                    optimizer = torch.optim.Adam(params, lr=p.lr)
                optimizer.zero_grad(set_to_none=True)
                x = transforms.standard(image_fn(), draws[:, step], p.pad).contiguous(memory_format=memory_format)
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=p.amp):
                    h = _centre(spec, layer, run_until(model, spec.normalize(x), outs)[layer], x, pool).float()
                loss = -objectives.direction_cossim(h, targets, p.power).sum()
                loss.backward()
                if low is not None and step < p.coarse:
                    for t, mask in zip(params, low):
                        t.grad.mul_(mask)
                for group in optimizer.param_groups:
                    group["lr"] = rates[step]
                optimizer.step()
            for handle in hooks:
                handle.remove()
            hooks = []
            keep_best()
    finally:
        for handle in hooks:
            handle.remove()
    return best_images.detach(), best_score.detach()


def keep_better(best_images, best_score, images: torch.Tensor, score: torch.Tensor):
    """Each image (B, 3, S, S) that beats its best score (B,) so far replaces it: (best images, best scores);
    no best yet (``best_score`` None): these."""
    if best_score is None:
        return images, score
    better = score > best_score
    return torch.where(better[:, None, None, None], images, best_images), torch.where(better, score, best_score)


def _centre(spec: ModelSpec, layer: str, output, x: torch.Tensor, pool: str = "centre") -> torch.Tensor:
    """The activation at the centre position of a layer output of any kind -> (B, C): the centre of
    a map, the centre patch token, a pooled vector or the CLS token (``actlas.nn.kinds.layer_view``);
    with ``pool="mean"`` the mean over its positions, edges avoided (``objectives.photo_mean``)."""
    hw = tuple(x.shape[-2:])
    kind = detect_kind(output.shape[1:], hw, spec.layer_kind(layer), layer)
    return objectives.pooled(layer_view(output, kind, hw), pool)


def centre_activations(
    model: nn.Module, spec: ModelSpec, layer: str, images: torch.Tensor, pool: str = "centre"
) -> torch.Tensor:
    """Centre activation of ``layer`` (any kind, see ``_centre``; ``pool="mean"``: the mean over its positions)
    for images (B, 3, S, S) in [0, 1] -> (B, C)."""
    with torch.no_grad(), capture(model, [layer], stop=True) as outs:
        return _centre(spec, layer, run_until(model, spec.normalize(images), outs)[layer], images, pool)


def render(
    model: nn.Module,
    spec: ModelSpec,
    layer: str,
    directions: np.ndarray,
    *,
    whitening: np.ndarray | None = None,
    params: RenderParams | None = None,
    device: str | torch.device = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
    progress: bool = True,
    pool: str = "centre",
) -> dict[str, np.ndarray]:
    """Icons for many directions at once.

    Parameters
    ----------
    directions : (K, C) mean activations (unwhitened)
    whitening : (C, C) regularised inverse covariance (``actlas.layout.whitening``) or None
    params : the render settings (default ``RenderParams()``)
    memory_format : the format the caller put the model in (``actlas.nn.fastpaths``); render never
        converts a caller's model itself, it puts its images in this format
    pool : where the objective and faithfulness read the layer (``objectives.POOLS``): ``centre``, the centre
        position; ``mean``, the mean over every position, edges avoided (an aligned atlas's photo means)

    Every optimisation batch holds ``params.batch_size`` images (a short one is padded), so an
    icon is the same bytes whichever directions it is rendered with, given the device and threads.

    Returns
    -------
    dict with ``icon`` (K, S, S, 3) uint8, ``objective`` (K,) float32, ``faithfulness`` (K,) float32
    (cosine between the icon's centre activation, or with ``pool="mean"`` its mean activation, and the
    unwhitened direction), ``seconds``.
    """
    if pool not in objectives.POOLS:
        raise ConfigError(f"render pool {pool!r} is not one of {', '.join(objectives.POOLS)}")
    start = time.perf_counter()
    params = params or RenderParams()
    device = torch.device(device)
    directions = np.asarray(directions, dtype=np.float32)
    targets = objectives.whiten_directions(directions, whitening)  # row by row: the same bits in any batch
    k, s = len(directions), params.size
    jobs = [(i, t) for t in range(params.tries) for i in range(k)]
    best_img = np.zeros((k, s, s, 3), dtype=np.uint8)
    best_obj = np.full(k, -np.inf, dtype=np.float32)
    best_faith = np.zeros(k, dtype=np.float32)
    with progress_bar(f"render {layer}", total=len(jobs), enabled=progress) as bar:
        for lo in range(0, len(jobs), params.batch_size):
            batch = jobs[lo : lo + params.batch_size]
            # A short batch is padded with copies of its last job and optimised at full size: torch
            # picks convolution kernels by batch size (and threads), so an icon's pixels would
            # otherwise depend on how many icons shared its batch, and a cached icon would differ
            # from the same icon rendered afresh.
            rows = batch + [batch[-1]] * (params.batch_size - len(batch))
            idx = np.array([i for i, _ in rows])
            seeds = [direction_seed(directions[i], params.seed, t) for i, t in rows]
            target = torch.from_numpy(targets[idx]).to(device)
            images, score = _optimise(model, spec, layer, target, seeds, params, device, memory_format, pool)
            h = centre_activations(model, spec, layer, images, pool)
            faith = objectives.cosine(h, torch.from_numpy(directions[idx]).to(device)).cpu().numpy()
            score = score.cpu().numpy()
            pixels = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            for row, i in enumerate(idx[: len(batch)]):
                if score[row] > best_obj[i]:
                    best_obj[i], best_img[i], best_faith[i] = score[row], pixels[row], faith[row]
            bar.update(len(batch))
    return {
        "icon": best_img,
        "objective": best_obj,
        "faithfulness": best_faith,
        "seconds": np.float32(time.perf_counter() - start),
    }
