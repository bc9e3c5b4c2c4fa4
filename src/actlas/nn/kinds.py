"""Layer kinds: how a layer's output maps to positions.

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

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import LayerError

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


def as_kind(value: LayerKind | str | Mapping | None) -> LayerKind | None:
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


def output_tensor(output):
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
            f"whose {t} tokens leave no patch grid of the input's aspect {input_hw[0]}x{input_hw[1]} after "
            + (f"a prefix of {kind.prefix}" if kind.prefix is not None else f"up to {MAX_PREFIX} leading tokens"),
        )
    return kind


def layer_view(output, kind: LayerKind, input_hw: tuple[int, int]) -> torch.Tensor:
    """A layer output as a map of positions: -> (B, C, H, W), differentiable (views and permutes).

    ``output`` is the layer's output (a tuple is read at its first element); ``input_hw`` the
    network input's (H, W), which fixes the token grid.
    """
    x = output_tensor(output)
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
