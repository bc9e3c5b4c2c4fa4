"""Layers are ``named_modules()`` paths (``"features.13"``); hooks that never outlive a call."""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class LayerError(KeyError):
    """An unknown layer name; the message lists the closest valid ones."""

    def __str__(self) -> str:
        return str(self.args[0])


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

    Yields a dict, filled on each forward, mapping layer -> output tensor (B, C, H, W) (graph kept,
    so gradients flow). With ``stop=True`` the forward ends with ``StopForward`` once all layers
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
            if leaf and not output.requires_grad:
                output = output.detach().requires_grad_()
            outputs[name] = output
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


def list_layers(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> list[dict]:
    """One dict per module: ``layer``, ``type``, ``shape`` (output shape for one input) and ``channels``.

    Modules whose output is not a tensor get ``shape`` None.
    """
    shapes: dict[str, tuple | None] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
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
        rows.append(
            {
                "layer": name,
                "type": type(module).__name__,
                "shape": list(shape) if shape else None,
                "channels": shape[0] if shape else None,
            }
        )
    return rows
