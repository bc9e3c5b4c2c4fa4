"""The one-line refusals of a layer a model cannot give (each names the layer and the fix).

Torch-free: parse time (``actlas.models.meta``) gives the same lines as the jobs (``actlas.nn.layers``,
``actlas.collect``) without importing torch.
"""

from __future__ import annotations

from ..errors import LayerError
from ..text import closest


def unknown_layer(layer: str, names: list[str]) -> LayerError:
    """The one line for a layer path that is none of ``names`` (a model's ``layer_names``): the closest ones."""
    close = closest(layer, names, n=6)
    hint = ", ".join(repr(n) for n in close) if close else ", ".join(repr(n) for n in names[:10]) + ", ..."
    return LayerError(f"unknown layer {layer!r}; closest valid layers: {hint} (see `actlas layers MODEL`)")


def not_run_layer(layer: str) -> LayerError:
    """The one line for a layer the model's forward never calls (an unused module)."""
    return LayerError(
        f"layer {layer!r} never runs in the model's forward (the forward does not call it): choose a layer the "
        "forward uses (actlas layers MODEL lists them, with their output shapes)"
    )


def unreached_layer(layer: str) -> LayerError:
    """The one line for a layer the logits do not depend on (no gradient flows from the logits to it)."""
    return LayerError(
        f"layer {layer!r} does not reach the model's output (no gradient flows from the logits to it): "
        "choose a layer the logits depend on (actlas layers MODEL lists them)"
    )


def shared_layer(layer: str, calls: int) -> LayerError:
    """The one line for a layer the forward calls more than once (a shared module: which call is its activation?)."""
    return LayerError(
        f"layer {layer!r} runs {calls} times in one forward (a module the model reuses), so it has no one activation "
        "per image: choose a layer that runs once, e.g. the block around it or a module only one call uses "
        "(actlas layers MODEL)"
    )


def unbatched_layer(layer: str, shape: list, batch: int) -> LayerError:
    """The one line for a layer whose output's first dimension is not the batch (a sequence-first transformer)."""
    return LayerError(
        f"layer {layer!r} gives shape {shape} for a batch of {batch} images: its first dimension is not the batch "
        "(a sequence-first layer, e.g. nn.TransformerEncoderLayer without batch_first=True), so its rows would mix "
        "images; choose a batch-first layer (actlas layers MODEL), or build the model with batch_first=True"
    )


def random_forward(what: str) -> LayerError:
    """The one line for a forward that gives ``what`` differently for the same images (dropout or noise left on)."""
    return LayerError(
        f"{what} differs between two forwards of the same images: the model's forward is random in eval mode "
        "(dropout or noise always on, e.g. F.dropout(x, training=True)); make its forward deterministic in eval mode"
    )
