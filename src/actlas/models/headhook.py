"""The forward of a model with a declared ``head`` (``actlas.models.heads``): a root forward hook.

``HeadHook`` makes the forward return the head's logits (B, K): a probe's ``features @ weight.T + bias``
(``use_probe`` gives it the trained probe), or for ``text_embeddings`` ``scale`` x the cosine between
the features and the class embeddings; ``head_mode`` switches it to the features (what the probe
learns from) or off (``actlas layers``: listing layers needs no logits).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .heads import FEATURE_KEYS, HEAD_HINT, TEXT, Head, check_head, load_text_embeddings


def features_of(out, output: str | int | None) -> torch.Tensor:
    """The features (B, D) in a forward's output: a tensor as is; ``output`` (a key or index) when given;
    a ModelOutput's or dict's ``image_embeds``, else ``pooler_output``; a tuple's first element."""
    from .logits import is_model_output, select_logits

    if output is None and (isinstance(out, Mapping) or is_model_output(out)):
        keys = list(out.keys())
        for key in FEATURE_KEYS:
            if key in keys and isinstance(out[key], torch.Tensor):
                return _two_d(out[key], key)
        raise ModelError(
            f"the model's forward returns {type(out).__name__} with keys {', '.join(map(str, keys))} but no "
            f"pooled features ({', '.join(FEATURE_KEYS)}): set model.output to the key of its pooled features, "
            "or model.head.layer to a layer"
        )
    return _two_d(select_logits(out, output), output)


def _two_d(features: torch.Tensor, where) -> torch.Tensor:
    if features.ndim != 2:
        raise ModelError(
            f"a head reads features (batch, dims), but the forward's {where or 'output'} has shape "
            f"{list(features.shape)}: set model.output to pooled features (pooler_output) or model.head.layer "
            "to a layer"
        )
    return features


class HeadHook:
    """The root forward hook that makes the forward return the head's logits (B, K).

    ``mode``: ``"logits"`` (the default), ``"features"`` (the head's features (B, D): what the probe
    learns from) or ``"off"`` (the forward's own output, untouched: ``actlas layers``). A probe's
    ``weight`` (K, D) and ``bias`` (K,) are set by ``use_probe``; a text head's are its normalised
    embeddings times ``scale``, on normalised features.
    """

    def __init__(self, head: Head, output, declared_kinds: Mapping | None = None, input_size=(224, 224)):
        self.head, self.output = head, output
        self.mode = "logits"
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.normalise = head.kind == TEXT
        self.captured = None
        self.declared = dict(declared_kinds or {})
        self.input_size = tuple(input_size)

    def capture(self, _module, _inputs, out) -> None:
        """Forward hook on ``head.layer``: keep its output for the root hook."""
        self.captured = out

    def layer_features(self, hw: tuple[int, int]) -> torch.Tensor:
        """``head.layer``'s output read as (B, D): its one position, or the mean over its positions."""
        from ..nn.kinds import as_kind, detect_kind, layer_view
        from ..nn.layers import output_tensor

        out, self.captured = output_tensor(self.captured), None
        if not hasattr(out, "shape"):
            raise ModelError(f"model.head.layer {self.head.layer!r} returned no tensor in this forward: choose another")
        kind = detect_kind(out.shape[1:], hw, as_kind(self.declared.get(self.head.layer)), self.head.layer)
        return layer_view(out, kind, hw).mean((2, 3))

    def features(self, inputs, out) -> torch.Tensor:
        """The head's features (B, D) of one forward."""
        if self.head.layer:
            x = inputs[0] if inputs and hasattr(inputs[0], "shape") else None
            return self.layer_features(tuple(x.shape[-2:]) if x is not None else self.input_size)
        return features_of(out, self.output)

    def __call__(self, _module, inputs, out):
        if self.mode == "off":
            return out
        if not self.head.declared:
            return _own_logits(out, self.output)
        if self.head.kind == "none" and self.mode == "logits":
            return out  # no class head: nothing downstream asks this forward for logits
        f = self.features(inputs, out)
        if self.mode == "features":
            return f
        if self.weight is None:
            raise ModelError(
                "model.head: probe has no trained probe yet: run the probe stage (actlas probe RUN) first, "
                "or pass its probe.npz (--probe)"
            )
        f = f.float()
        if f.shape[1] != self.weight.shape[1]:
            raise ModelError(
                f"the head's class weights have {self.weight.shape[1]} dims but the model's features have "
                f"{f.shape[1]}: {'embed the classes with this model' if self.normalise else 'train the probe again'}"
            )
        if self.normalise:
            f = torch.nn.functional.normalize(f, dim=1)
        weight, bias = self.weight.to(f.device), self.bias.to(f.device)
        return f @ weight.T + bias


def _own_logits(out, output) -> torch.Tensor:
    """``select_logits``, with the advice an encoder without logits needs."""
    from .logits import is_model_output, select_logits

    if output is None and (isinstance(out, Mapping) or is_model_output(out)) and "logits" not in list(out.keys()):
        keys = ", ".join(map(str, out.keys()))
        raise ModelError(
            f"the model's forward returns {type(out).__name__} without logits (its keys: {keys}): "
            f"set model.output to the key that holds them; an encoder has no classes of its own: {HEAD_HINT}"
        )
    logits = select_logits(out, output)
    if logits.ndim != 2:  # a map or a sequence: topk and softmax over its dim 1 would not be over classes
        raise ModelError(
            f"the model's output{f' {output!r}' if output is not None else ''} has shape {list(logits.shape)}, not "
            "(batch, classes): set model.output to the logits of a classifier, or declare model.head (none, probe "
            "or text_embeddings) for a model without them"
        )
    return logits


def attach_head(net: nn.Module, fields: dict, input_size=(224, 224)) -> HeadHook:
    """Register the head's root forward hook on ``net`` (and on ``head.layer`` the hook that reads its
    features); a text head's embeddings are loaded and checked here. Returns the hook."""
    head = check_head(fields)
    hook = HeadHook(head, fields.get("output"), fields.get("layer_kinds"), input_size)
    if head.layer:
        from ..nn.layers import get_layer

        get_layer(net, head.layer).register_forward_hook(hook.capture)
    if head.kind == TEXT:
        embeddings = torch.from_numpy(load_text_embeddings(head.text_embeddings))
        hook.weight = torch.nn.functional.normalize(embeddings, dim=1) * head.scale
        hook.bias = torch.zeros(len(embeddings))
    net.register_forward_hook(hook)
    return hook


def head_hook(net: nn.Module) -> HeadHook:
    """The ``HeadHook`` that ``load_model`` registered on ``net``."""
    for hook in net._forward_hooks.values():
        if isinstance(hook, HeadHook):
            return hook
    raise ModelError("this model was not loaded by actlas.load_model: it has no head to set")


def use_probe(net: nn.Module, spec, weight: np.ndarray, bias: np.ndarray, classes) -> None:
    """Give a ``head: probe`` model its trained probe: ``weight`` (K, D), ``bias`` (K,) over the class
    names ``classes``, which must be the model's (``spec.categories``)."""
    from ..errors import StoreError

    if tuple(classes) != tuple(spec.categories):
        raise StoreError(
            f"the probe was trained for {len(classes)} classes ({', '.join(list(classes)[:3])}, ...) but the model "
            f"names {len(spec.categories)}: run the probe stage again (delete RUN/probe)"
        )
    hook = head_hook(net)
    hook.weight = torch.as_tensor(np.asarray(weight, dtype=np.float32))
    hook.bias = torch.as_tensor(np.asarray(bias, dtype=np.float32))


@contextmanager
def head_mode(net: nn.Module, mode: str) -> Iterator[None]:
    """Within the block the forward returns the head's ``"features"`` (B, D), or (``"off"``) its own
    output: ``actlas layers`` lists an encoder's layers without any logits."""
    hook = head_hook(net)
    before, hook.mode = hook.mode, mode
    try:
        yield
    finally:
        hook.mode = before
