"""Layers are ``named_modules()`` paths (``"features.13"``); hooks that never outlive a call.

``capture`` records layer outputs during forward passes inside a ``with`` block (``run_until``
ends the forward once every wanted layer has run); ``layer_kinds`` and ``list_layers`` describe a
model's layers by one forward pass (their kinds: ``actlas.nn.kinds``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import LayerError
from .kinds import LayerKind, detect_kind, layer_view, output_tensor
from .problems import (  # noqa: F401 - re-exported
    not_run_layer,
    random_forward,
    shared_layer,
    unbatched_layer,
    unknown_layer,
    unreached_layer,
)


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
    raise unknown_layer(layer, layer_names(model))


def input_channels_error(model: nn.Module, channels: int = 3) -> LayerError | None:
    """The one line for a model whose first convolution takes other than ``channels`` (RGB: 3) input channels,
    else None: actlas feeds every model RGB images (B, 3, H, W)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            found = int(module.in_channels)
            if found == channels:
                return None
            return LayerError(
                f"the model takes {found}-channel images (its first convolution {name!r} has in_channels={found}) "
                f"but actlas feeds it RGB images ({channels} channels): use a model made for RGB, or give a factory "
                f"(trust_code) whose forward takes (B, 3, H, W) and converts it (grey: x.mean(1, keepdim=True))"
            )
    return None


def forward_checked(model: nn.Module, x: torch.Tensor):
    """``model(x)``; a forward that fails because the model's first convolution takes other than ``x``'s channel
    count raises ``input_channels_error``'s one line instead of torch's error."""
    try:
        return model(x)
    except RuntimeError:
        problem = input_channels_error(model, int(x.shape[1]))
        if problem is not None:  # a forward on RGB that fails where the first convolution takes other channels
            raise problem from None
        raise


@contextmanager
def capture(
    model: nn.Module, layers: list[str], stop: bool = False, leaf: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during forward passes inside the ``with`` block.

    Yields a dict, filled on each forward, mapping layer -> output tensor, of any kind (graph kept,
    so gradients flow; a tuple output is recorded at its first element; see ``layer_view``). With
    ``stop=True`` the forward ends with ``StopForward`` once all layers have run (call it through
    ``run_until``). A layer that runs twice in one forward (a shared module) raises ``LayerError``: its two
    outputs would be mixed. With ``leaf=True`` the first captured output that
    needs no gradient becomes a graph leaf that does, so gradients can be taken with respect to
    every captured layer while nothing before them is differentiated. Hooks are removed on exit,
    also on error.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    wanted = set(layers)
    calls: dict[str, int] = {}  # calls of each layer in the current forward: a shared module is refused

    def new_forward(_module, _inputs):
        calls.clear()

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if calls[name] > 1:
                raise shared_layer(name, calls[name])
            tensor = output_tensor(output)
            if leaf and isinstance(tensor, torch.Tensor) and not tensor.requires_grad:
                new = tensor.detach().requires_grad_()
                if tensor is output:
                    output = new
                elif hasattr(output, "_fields"):  # a namedtuple takes its fields as arguments
                    output = output._replace(**{output._fields[0]: new})
                else:
                    output = type(output)([new, *output[1:]])
                tensor = new
            outputs[name] = tensor
            if stop and wanted <= outputs.keys():
                raise StopForward
            return output

        return hook

    try:
        handles.append(model.register_forward_pre_hook(new_forward))
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
            out = output_tensor(out)
            shapes[name] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            forward_checked(model, torch.zeros(1, 3, *input_size))
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


def layer_kinds(
    model: nn.Module,
    layers: list[str],
    input_hw: tuple[int, int],
    declared: Mapping | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, tuple[LayerKind, int, tuple[int, int]]]:
    """layer -> (kind, channels, grid (H, W)) from the model's forward on two images of ``input_hw``, run twice.

    Fails in one line (``LayerError``) naming the first layer that cannot be used: unknown, never run, run twice
    in one forward, not a tensor, a first dimension that is not the batch (a sequence-first transformer), or
    different outputs for the same images (dropout or noise left on in the forward).
    """
    declared = declared or {}
    x = torch.rand(2, 3, *input_hw, generator=torch.Generator().manual_seed(0)).to(device)
    first, again = _whole_forward(model, layers, x), _whole_forward(model, layers, x)
    found = {}
    for name in layers:
        if name not in first:
            raise not_run_layer(name)
        out = output_tensor(first[name])
        if not isinstance(out, torch.Tensor):
            raise LayerError(
                f"layer {name!r} returns {type(out).__name__}, not a tensor; choose another layer "
                "(see `actlas layers MODEL`)"
            )
        if out.ndim == 0 or out.shape[0] != len(x):
            raise unbatched_layer(name, list(out.shape), len(x))
        if not _same(out, output_tensor(again[name])):
            raise random_forward(f"layer {name!r}")
        kind = detect_kind(out.shape[1:], input_hw, declared.get(name), name)
        view = layer_view(out, kind, input_hw)
        found[name] = (kind, int(view.shape[1]), (int(view.shape[2]), int(view.shape[3])))
    if not _same(first.get(""), again.get("")):
        raise random_forward("the model's output")
    return found


def _whole_forward(model: nn.Module, layers: list[str], x: torch.Tensor) -> dict:
    """layer -> output of one whole forward (a layer it runs twice is refused), and ``""`` -> the forward's own
    output, taken before the root's own hooks (an encoder's head) run."""
    kept: dict = {}

    def end(_module, _inputs, output):
        kept[""] = output_tensor(output)
        raise StopForward

    with torch.no_grad(), capture(model, layers) as outs:
        handle = model.register_forward_hook(end, prepend=True)
        try:
            forward_checked(model, x)
        except StopForward:
            pass
        finally:
            handle.remove()
        kept.update(outs)
    return kept


def _same(a, b) -> bool:
    """Whether two outputs of the same input agree (to float rounding: GPU kernels need not be bitwise repeatable);
    outputs that are not tensors (a dict the root's own hook reads) are not compared."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return True
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-5, equal_nan=True))
