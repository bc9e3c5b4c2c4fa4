"""Speed-ups that put a model in the form render, collect and the patch scores run it in, in place.

Each computes the same function: BatchNorm folded into the convolution before it
(``fold_batchnorm``), the memory format the model runs fastest in (``memory_format_for``), and
a small CPU batch's 1x1 convolutions as matmuls (``pointwise_as_matmul``). ``fast_paths`` applies
all three and returns a ``FastPaths`` record of what it did: the caller puts its inputs in
``memory_format`` and keys cached results on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .kinds import output_tensor
from .layers import capture, run_until


def memory_format_for(
    model: nn.Module, spec, layer: str | None, size: int | tuple[int, int], device: str | torch.device = "cpu"
) -> torch.memory_format:
    """The memory format to run ``model`` in (render, collect): channels_last when it runs in it, else contiguous.

    Converts ``model``'s 4-D weights to channels_last and runs one (1, 3, H, W) forward (``size``: a
    side, or (H, W)) up to ``layer`` (None: to the logits). A model that fails in it (a ``view`` on
    a permuted tensor, say) goes back to contiguous. The caller puts its inputs in the format returned.
    channels_last let oneDNN's convolutions run 1.3 to 1.9 times
    as fast on 2 CPU cores (MobileNetV2, forward and backward, BENCHMARKS.md); on CUDA it is the
    usual choice. ``spec`` is the model's ``ModelSpec`` (its ``normalize``).
    """
    fmt = torch.channels_last
    try:
        model.to(memory_format=fmt)
        h, w = (size, size) if isinstance(size, int) else size
        x = spec.normalize(torch.zeros(1, 3, h, w, device=device)).contiguous(memory_format=fmt)
        with torch.no_grad():
            if layer is None:  # the whole forward, to the logits
                model(x)
            else:
                with capture(model, [layer], stop=True) as outs:
                    run_until(model, x, outs)
    except Exception:  # noqa: BLE001 - any failure in channels_last: the model keeps its usual format
        model.to(memory_format=torch.contiguous_format)
        fmt = torch.contiguous_format
    return fmt


def fold_batchnorm(
    model: nn.Module,
    spec,
    layers: list[str],
    size: int | tuple[int, int],
    device: str | torch.device = "cpu",
    logits: bool = True,
) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it, in place (render, collect).

    The network computes the same function with one operation fewer per block, forward and
    backward: BatchNorm was about a fifth of a render step on the shared MobileNetV2 (BENCHMARKS.md).
    One probe forward of a seeded (1, 3, H, W) input (``size``: a side, or (H, W)) finds the
    pairs: a BatchNorm whose input is the very tensor a Conv2d returned, each module called once,
    neither of them one of ``layers`` (a convolution's own output would change). The BatchNorm
    becomes ``nn.Identity``. The probe is run again, and ``layers``' outputs (and the logits, with
    ``logits``; without, the forward stops at ``layers``) must match the unfolded model's, or every
    fold is undone. A model in training mode, or with no such pair, is left as it is. ``spec``
    is the model's ``ModelSpec`` (its ``normalize``). Returns the number of pairs folded.
    """
    h, w = (size, size) if isinstance(size, int) else size
    x = spec.normalize(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device))
    named = dict(model.named_modules())
    convs = {n: m for n, m in named.items() if isinstance(m, nn.Conv2d)}
    norms = {
        n: m
        for n, m in named.items()
        if type(m) is nn.BatchNorm2d and not m.training and m.running_mean is not None and m.running_var is not None
    }
    if not convs or not norms or model.training:
        return 0

    def probe(hooks: bool = False):
        calls: dict[str, int] = {}
        produced: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (conv, output): kept alive
        fed: dict[str, str] = {}  # norm -> the conv whose output it was given

        def on_conv(name):
            def hook(_m, _inp, out):
                calls[name] = calls.get(name, 0) + 1
                produced[id(out)] = (name, out)

            return hook

        def on_norm(name):
            def hook(_m, inp):
                calls[name] = calls.get(name, 0) + 1
                src = produced.get(id(inp[0]))
                if src is not None and src[1] is inp[0]:
                    fed[name] = src[0]

            return hook

        handles = []
        if hooks:
            handles = [m.register_forward_hook(on_conv(n)) for n, m in convs.items()]
            handles += [m.register_forward_pre_hook(on_norm(n)) for n, m in norms.items()]
        try:
            with torch.no_grad(), capture(model, layers, stop=not logits) as outs:
                out = run_until(model, x, outs) if not logits else model(x)
                found = [output_tensor(outs[n]).detach().clone() for n in layers if n in outs]
                if logits and isinstance(out, torch.Tensor):
                    found.append(out.detach().clone())
        finally:
            for handle in handles:
                handle.remove()
        return found, calls, fed

    before, calls, fed = probe(hooks=True)
    protected = set(layers)
    pairs = [
        (c, n)
        for n, c in fed.items()
        if calls.get(c) == 1 and calls.get(n) == 1 and c not in protected and n not in protected
    ]
    if not pairs:
        return 0
    undo = []
    for conv_name, norm_name in pairs:
        conv, norm = convs[conv_name], norms[norm_name]
        scale = norm.running_var.add(norm.eps).rsqrt()
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale + (norm.bias if norm.bias is not None else 0)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        old = (conv.weight, conv.bias)
        with torch.no_grad():
            conv.weight = nn.Parameter(
                conv.weight * scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype), requires_grad=old[0].requires_grad
            )
            conv.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=old[0].requires_grad)
        slots = [(parent, key) for parent in named.values() for key, child in parent._modules.items() if child is norm]
        for parent, key in slots:
            parent._modules[key] = nn.Identity()
        undo.append((conv, old, norm, slots))
    after, _, _ = probe()
    same = len(after) == len(before) and all(
        a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4 * float(b.abs().max()) + 1e-6)
        for a, b in zip(after, before)
    )
    if not same:
        for conv, (weight, bias), norm, slots in undo:
            conv.weight, conv.bias = weight, bias
            for parent, key in slots:
                parent._modules[key] = norm
        return 0
    return len(pairs)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1, stride-1, ungrouped Conv2d that runs a small channels-last CPU batch as one matmul.

    The same sum: (B, H, W, Cin) @ (Cin, Cout) over the channels-last tensor as it lies, the
    output channels-last too. On one thread and below 16 images torch takes a 1x1 convolution
    through its im2col path, a gemm of the same operands after copies; the matmul gave the same
    icons, bit for bit, at 1.05x the icons/s at ``features.13``, 80 px, and 1.10x at
    ``features.16``, 128 px (render batch 8, shared MobileNetV2, ``bench_fold.py --path
    pointwise``). Elsewhere (more threads or images, where torch takes oneDNN; other formats and
    devices) it runs the convolution as before, so it never changes a result. Same parameters and
    state-dict keys.
    """

    @staticmethod
    def runs_as_matmul(x: torch.Tensor) -> bool:
        """Whether ``forward`` takes ``x`` as a matmul: (B < 16, C, H, W) channels-last on CPU, one thread."""
        return (
            x.dim() == 4
            and x.shape[0] < 16
            and x.device.type == "cpu"
            and torch.get_num_threads() == 1
            and x.is_contiguous(memory_format=torch.channels_last)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.runs_as_matmul(x):
            return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)
        return super().forward(x)


def pointwise_as_matmul(model: nn.Module) -> int:
    """Make every plain 1x1, stride-1, ungrouped, unpadded ``nn.Conv2d`` of ``model`` a
    ``PointwiseConv2d``, in place (render, patch). Returns how many."""
    n = 0
    for module in model.modules():
        if (
            type(module) is nn.Conv2d
            and module.kernel_size == (1, 1)
            and module.stride == (1, 1)
            and module.groups == 1
            and module.padding in ((0, 0), "valid")
        ):
            module.__class__ = PointwiseConv2d
            n += 1
    return n


@dataclass(frozen=True)
class FastPaths:
    """What ``fast_paths`` did to a model: what a result computed with it may depend on, bit for bit.

    ``folded``: Conv2d/BatchNorm2d pairs folded; ``memory_format``: the format to put inputs in
    (``x.contiguous(memory_format=...)``); ``pointwise``: 1x1 convolutions made ``PointwiseConv2d``.
    """

    folded: int = 0
    memory_format: torch.memory_format = torch.contiguous_format
    pointwise: int = 0


def fast_paths(
    model: nn.Module,
    spec,
    keep: list[str],
    size: int | tuple[int, int],
    device: str | torch.device = "cpu",
    stop_at: str | None = None,
) -> FastPaths:
    """Put ``model`` in the form render and the patch scores run it in, in place: BatchNorm folded
    (``fold_batchnorm``; ``keep``: the layers whose own outputs are read), the memory format it runs
    fastest in (``memory_format_for``) and a small CPU batch's 1x1 convolutions as matmuls
    (``pointwise_as_matmul``). Their probe forwards of a (1, 3, H, W) input (``size``: a side, or
    (H, W)) end at ``stop_at`` (None: the logits). Returns the record of what was done."""
    folded = fold_batchnorm(model, spec, keep, size, device, logits=stop_at is None)
    memory_format = memory_format_for(model, spec, stop_at, size, device)
    return FastPaths(folded, memory_format, pointwise_as_matmul(model))
