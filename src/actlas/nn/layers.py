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
from ..text import closest
from .kinds import LayerKind, detect_kind, layer_view, output_tensor


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
    close = closest(layer, names, n=6)
    hint = ", ".join(repr(n) for n in close) if close else ", ".join(repr(n) for n in names[:10]) + ", ..."
    raise LayerError(f"unknown layer {layer!r}; closest valid layers: {hint} (see `actlas layers MODEL`)")


@contextmanager
def capture(
    model: nn.Module, layers: list[str], stop: bool = False, leaf: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during forward passes inside the ``with`` block.

    Yields a dict, filled on each forward, mapping layer -> output tensor, of any kind (graph kept,
    so gradients flow; a tuple output is recorded at its first element; see ``layer_view``). With
    ``stop=True`` the forward ends with ``StopForward`` once all layers have run (call it through
    ``run_until``). With ``leaf=True`` the first captured output that
    needs no gradient becomes a graph leaf that does, so gradients can be taken with respect to
    every captured layer while nothing before them is differentiated. Hooks are removed on exit,
    also on error.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    wanted = set(layers)

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            tensor = output_tensor(output)
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
            out = output_tensor(out)
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
        out = output_tensor(outs.get(name))
        if not isinstance(out, torch.Tensor):
            raise LayerError(
                f"layer {name!r} returns {type(out).__name__}, not a tensor; choose another layer "
                "(see `actlas layers MODEL`)"
            )
        kind = detect_kind(out.shape[1:], input_hw, declared.get(name), name)
        view = layer_view(out, kind, input_hw)
        found[name] = (kind, int(view.shape[1]), (int(view.shape[2]), int(view.shape[3])))
    return found
