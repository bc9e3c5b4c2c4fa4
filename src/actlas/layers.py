"""Layers are ``named_modules()`` paths (``"features.13"``); hooks that never outlive a call.

A layer's output comes in one of five kinds, and ``layer_view`` is the one place that maps each
to a map of positions ``(B, C, H, W)``, which collect's attribution and render's centre objective
both use:

- ``map``: ``(B, C, H, W)``, as is;
- ``channels_last``: ``(B, H, W, C)`` (ConvNeXt-style blocks, Swin stages);
- ``tokens``: ``(B, T, C)`` with ``prefix`` leading tokens (CLS, registers) dropped and the rest
  laid on the patch grid ``(H, W)`` in row-major order;
- ``cls``: ``(B, T, C)``, the first token only: one position;
- ``pooled``: ``(B, C)``: one position.

A layer that returns a tuple (Hugging Face blocks) is read at its first element. The kind is
detected from the output shape and the input size, or declared (``model.layer_kinds``).
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn


class LayerError(KeyError):
    """An unknown layer name; the message lists the closest valid ones."""

    def __str__(self) -> str:
        return str(self.args[0])


KINDS = ("map", "channels_last", "tokens", "cls", "pooled")
MAX_PREFIX = 16  # most leading non-patch tokens detected (CLS + registers)


@dataclass(frozen=True)
class LayerKind:
    """How a layer's output maps to positions: ``kind`` (one of ``KINDS``) and, for tokens, ``prefix``.

    ``prefix`` None means: detect it (the fewest leading tokens that leave a patch grid of the
    input's aspect ratio).
    """

    kind: str
    prefix: int | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "prefix": self.prefix}


def as_kind(value: "LayerKind | str | Mapping | None") -> LayerKind | None:
    """A declared kind from ``"tokens"``, ``{"kind": "tokens", "prefix": 1}`` or a ``LayerKind``."""
    if value is None or isinstance(value, LayerKind):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    extra = set(value) - {"kind", "prefix"}
    kind = value.get("kind")
    if kind not in KINDS or extra:
        bad = f"key {sorted(extra)[0]!r}" if extra else f"kind {kind!r}"
        raise LayerError(
            f"unknown layer {bad}: declare a layer as one of {', '.join(KINDS)}, optionally {{kind: tokens, prefix: N}}"
        )
    prefix = value.get("prefix")
    return LayerKind(kind, None if prefix is None else int(prefix))


def _output_tensor(output):
    """A module's output tensor: the output itself, or the first element of a tuple or list."""
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return output


def _fits(h: int, w: int, input_hw: tuple[int, int]) -> bool:
    return h * int(input_hw[1]) == w * int(input_hw[0])


def token_grid(n: int, input_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(H, W) with H * W = n and the aspect ratio of ``input_hw``, or None."""
    for h in range(1, n + 1):
        if n % h == 0 and _fits(h, n // h, input_hw):
            return h, n // h
    return None


def _unusable(layer: str, shape, why: str) -> LayerError:
    return LayerError(
        f"layer {layer!r} outputs shape {list(shape)} per image, {why}; use a layer whose output is a map "
        "(B, C, H, W), channels-last (B, H, W, C), tokens (B, T, C) or pooled (B, C), or declare its kind in "
        "model.layer_kinds (see `actlas layers MODEL`)"
    )


def detect_kind(shape, input_hw: tuple[int, int], declared=None, layer: str = "?") -> LayerKind:
    """The kind of a layer output of ``shape`` (one image, no batch dimension) for an input of ``input_hw``.

    A declared kind is checked against the shape; a token prefix left undeclared is detected.
    Raises ``LayerError`` in one line for an output no kind fits.
    """
    shape = tuple(int(v) for v in shape)
    kind = as_kind(declared)
    if kind is None:
        if len(shape) == 1:
            kind = LayerKind("pooled")
        elif len(shape) == 2:
            kind = LayerKind("tokens")
        elif len(shape) == 3:
            first, last = _fits(shape[1], shape[2], input_hw), _fits(shape[0], shape[1], input_hw)
            kind = LayerKind("channels_last" if last and not first else "map")
        else:
            raise _unusable(layer, shape, "which is not a map, tokens or a pooled vector")
    need = {"pooled": 1, "tokens": 2, "cls": 2, "map": 3, "channels_last": 3}[kind.kind]
    if len(shape) != need:
        raise _unusable(layer, shape, f"which does not fit the declared kind {kind.kind!r}")
    if kind.kind == "tokens":
        t = shape[0]
        prefixes = [kind.prefix] if kind.prefix is not None else range(min(MAX_PREFIX, t - 1) + 1)
        for p in prefixes:
            if 0 <= p < t and token_grid(t - p, input_hw):
                return LayerKind("tokens", p)
        raise _unusable(
            layer,
            shape,
            f"whose {t} tokens leave no patch grid of the input's aspect "
            f"{input_hw[0]}x{input_hw[1]} after {'a prefix of ' + str(kind.prefix) if kind.prefix is not None else 'up to ' + str(MAX_PREFIX) + ' leading tokens'}",
        )
    return kind


def layer_view(output, kind: LayerKind, input_hw: tuple[int, int]) -> torch.Tensor:
    """A layer output as a map of positions: -> (B, C, H, W), differentiable (views and permutes).

    ``output`` is the layer's output (a tuple is read at its first element); ``input_hw`` the
    network input's (H, W), which fixes the token grid.
    """
    x = _output_tensor(output)
    if kind.kind == "map":
        return x
    if kind.kind == "channels_last":
        return x.permute(0, 3, 1, 2)
    if kind.kind == "pooled":
        return x[:, :, None, None]
    if kind.kind == "cls":
        return x[:, 0, :, None, None]
    p = kind.prefix or 0
    grid = token_grid(x.shape[1] - p, input_hw)
    if grid is None:
        raise LayerError(f"{x.shape[1]} tokens leave no patch grid for input {tuple(input_hw)} after a prefix of {p}")
    return x[:, p:].reshape(x.shape[0], *grid, x.shape[2]).permute(0, 3, 1, 2)


def layer_kinds(
    model: nn.Module,
    layers: list[str],
    input_hw: tuple[int, int],
    declared: Mapping | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, tuple[LayerKind, int, tuple[int, int]]]:
    """layer -> (kind, channels, grid (H, W)) from one forward pass on zeros of ``input_hw``.

    Fails in one line (``LayerError``) naming the first layer that cannot be used.
    """
    declared = declared or {}
    with torch.no_grad(), capture(model, layers, stop=True) as outs:
        run_until(model, torch.zeros(1, 3, *input_hw, device=device), outs)
    found = {}
    for name in layers:
        out = _output_tensor(outs.get(name))
        if not isinstance(out, torch.Tensor):
            raise LayerError(
                f"layer {name!r} returns {type(out).__name__}, not a tensor; choose another layer "
                "(see `actlas layers MODEL`)"
            )
        kind = detect_kind(out.shape[1:], input_hw, declared.get(name), name)
        view = layer_view(out, kind, input_hw)
        found[name] = (kind, int(view.shape[1]), (int(view.shape[2]), int(view.shape[3])))
    return found


def memory_format_for(
    model: nn.Module, spec, layer: str | None, size: int | tuple[int, int], device: str | torch.device = "cpu"
) -> torch.memory_format:
    """The memory format to run ``model`` in (render, collect): channels_last when it runs in it, else contiguous.

    Converts ``model``'s 4-D weights to channels_last and runs one (1, 3, H, W) forward (``size``: a
    side, or (H, W)) up to ``layer`` (None: to the logits). A model that fails in it (a ``view`` on
    a permuted tensor, say) goes back to contiguous. The answer is recorded on the model, where
    ``actlas.render.render`` reads it. channels_last let oneDNN's convolutions run 1.3 to 1.9 times
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
    object.__setattr__(model, "_actlas_memory_format", fmt)
    return fmt


def memory_format_of(model: nn.Module) -> torch.memory_format:
    """The format ``memory_format_for`` chose for ``model`` (contiguous where it was never asked):
    what render and the patch scores put their inputs in."""
    return getattr(model, "_actlas_memory_format", torch.contiguous_format)


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
                found = [_output_tensor(outs[n]).detach().clone() for n in layers if n in outs]
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


def fast_paths(
    model: nn.Module,
    spec,
    keep: list[str],
    size: int | tuple[int, int],
    device: str | torch.device = "cpu",
    stop_at: str | None = None,
) -> tuple[int, torch.memory_format, int]:
    """Put ``model`` in the form render and the patch scores run it in, in place: BatchNorm folded
    (``fold_batchnorm``; ``keep``: the layers whose own outputs are read), the memory format it runs
    fastest in (``memory_format_for``) and a small CPU batch's 1x1 convolutions as matmuls
    (``pointwise_as_matmul``). Their probe forwards of a (1, 3, H, W) input (``size``: a side, or
    (H, W)) end at ``stop_at`` (None: the logits). Returns (pairs folded, memory format, 1x1
    convolutions replaced): what an icon's bytes may depend on."""
    folded = fold_batchnorm(model, spec, keep, size, device, logits=stop_at is None)
    memory_format = memory_format_for(model, spec, stop_at, size, device)
    return folded, memory_format, pointwise_as_matmul(model)


class StopForward(Exception):
    """Raised by a capture hook to end a forward pass once every wanted layer has run."""


def layer_names(model: nn.Module) -> list[str]:
    """Every module path of ``model`` except the root, in definition order."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module at path ``layer``; raises ``LayerError`` naming the closest valid paths."""
    modules = dict(model.named_modules())
    if layer in modules and layer:
        return modules[layer]
    names = layer_names(model)
    close = difflib.get_close_matches(layer, names, n=6, cutoff=0.4)
    hint = ", ".join(repr(n) for n in close) if close else ", ".join(repr(n) for n in names[:10]) + ", ..."
    raise LayerError(f"unknown layer {layer!r}; closest valid layers: {hint} (see `actlas layers MODEL`)")


@contextmanager
def capture(
    model: nn.Module, layers: list[str], stop: bool = False, leaf: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during forward passes inside the ``with`` block.

    Yields a dict, filled on each forward, mapping layer -> output tensor, of any kind (graph kept,
    so gradients flow; a tuple output is recorded at its first element; see ``layer_view``). With ``stop=True`` the forward ends with ``StopForward`` once all layers
    have run (call it through ``run_until``). With ``leaf=True`` the first captured output that
    needs no gradient becomes a graph leaf that does, so gradients can be taken with respect to
    every captured layer while nothing before them is differentiated. Hooks are removed on exit,
    also on error.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    wanted = set(layers)

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            tensor = _output_tensor(output)
            if leaf and isinstance(tensor, torch.Tensor) and not tensor.requires_grad:
                new = tensor.detach().requires_grad_()
                if tensor is output:
                    output = new
                else:
                    output = type(output)([new, *output[1:]])
                tensor = new
            outputs[name] = tensor
            if stop and wanted <= outputs.keys():
                raise StopForward
            return output

        return hook

    try:
        for name in layers:
            handles.append(get_layer(model, name).register_forward_hook(make_hook(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def run_until(model: nn.Module, x: torch.Tensor, outputs: dict) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` inside a ``capture(..., stop=True)`` block, returning the captured outputs."""
    outputs.clear()
    try:
        model(x)
    except StopForward:
        pass
    return dict(outputs)


def list_layers(
    model: nn.Module, input_size: tuple[int, int] = (224, 224), declared: Mapping | None = None
) -> list[dict]:
    """One dict per module: ``layer``, ``type``, ``shape`` (output shape for one input), ``channels``,
    ``kind`` (see ``layer_view``), ``grid`` (positions (H, W)) and ``prefix`` (leading tokens).

    Modules whose output is not a tensor get ``shape`` None; outputs no kind fits get ``kind`` None.
    """
    declared = declared or {}
    shapes: dict[str, tuple | None] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
            out = _output_tensor(out)
            shapes[name] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, module in model.named_modules():
        if not name:
            continue
        shape = shapes.get(name)
        row = {
            "layer": name,
            "type": type(module).__name__,
            "shape": list(shape) if shape else None,
            "channels": None,
            "kind": None,
            "grid": None,
            "prefix": None,
        }
        if shape:
            try:
                kind = detect_kind(shape, input_size, declared.get(name), name)
            except LayerError:
                kind = None
            if kind is not None:
                view = layer_view(torch.zeros(1, *shape), kind, input_size)
                row.update(
                    channels=int(view.shape[1]),
                    kind=kind.kind,
                    grid=[int(view.shape[2]), int(view.shape[3])],
                    prefix=kind.prefix,
                )
        rows.append(row)
    return rows
