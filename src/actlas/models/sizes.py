"""Networks that take only one input size, and the icon size such a network can take.

Icons are rendered at ``render.size`` (``actlas.viz.render.fit_to_layer``), which need not be the
input size. A network with position embeddings it does not interpolate takes only its input size:
``fixed_input_size`` reads that size from the model where the library says it, and ``icon_size``
renders at it with no padding (``fit_icons``: the standard transforms pad an icon by ``render.pad``
a side, which such a network cannot take; jitter, scale and rotation keep the size). A probe forward
catches the networks no reader knows:

- timm: a patch embedding with ``strict_img_size`` and without ``dynamic_img_size`` (``img_size``,
  which ``kwargs: {img_size: N}`` sets);
- torchvision's ``VisionTransformer``: ``image_size``;
- Hugging Face: ``config.image_size`` when the embeddings interpolate only on request
  (``interpolate_pos_encoding``: ViT, CLIP; DINOv2 always interpolates);
- a ``torch.export`` program: its input's static height and width (``actlas.models.sources``).
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import nn

from ..errors import ModelError
from ..nn.layers import capture, run_until


def _pair(value) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def fixed_input_size(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) of the only input size ``model`` takes, where its library records one; None when it takes any
    (or nothing says)."""
    if getattr(model, "dynamic_img_size", False):
        return None
    for module in model.modules():
        if hasattr(module, "strict_img_size") and hasattr(module, "img_size"):  # timm's PatchEmbed
            if module.strict_img_size and not getattr(module, "dynamic_img_size", False):
                return _pair(module.img_size)
            return None
    if type(model).__name__ == "VisionTransformer" and type(model).__module__.startswith("torchvision."):
        return _pair(getattr(model, "image_size", None))
    config = getattr(model, "config", None)
    size = _pair(getattr(config, "image_size", None))
    if size is not None:
        for name, module in model.named_modules():
            if name.endswith("embeddings") and "interpolate_pos_encoding" in _parameters(module.forward):
                return size
    return None


def _parameters(fn) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


def runs_at(model: nn.Module, spec, layer: str, size: int, device: torch.device | str = "cpu") -> bool:
    """Whether ``model`` runs a (1, 3, size, size) input up to ``layer``."""
    x = spec.normalize(torch.zeros(1, 3, size, size, device=device))
    try:
        with torch.no_grad(), capture(model, [layer], stop=True) as outs:
            run_until(model, x, outs)
    except Exception:  # noqa: BLE001 - a network that takes only its own size fails in its own way
        return False
    return True


def icon_size(model: nn.Module, spec, layer: str, size: int, device: torch.device | str = "cpu") -> int:
    """The side icons of ``layer`` are rendered at: ``size`` when the network takes it, else its input side.

    A network of a fixed input size (``spec.fixed_size``, or one that fails a probe at ``size``) gets
    icons of exactly that size, which must be square. Raises ``ModelError`` in one line otherwise.
    """
    h, w = spec.fixed_size or spec.input_size
    if spec.fixed_size is None and (size == min(h, w) or runs_at(model, spec, layer, size, device)):
        return size
    if h != w:
        raise ModelError(
            f"model {spec.source} takes only {h} x {w} inputs, and icons are square: give it a square "
            "input_size, or make it accept other sizes (timm: kwargs {dynamic_img_size: true})"
        )
    return h


def fit_icons(params, model: nn.Module, spec, layer: str, device: torch.device | str = "cpu"):
    """Render settings (``RenderParams``) for ``model``: unchanged when it takes icons of ``params.size``, else
    icons of its one input side, unpadded (``icon_size``)."""
    side = icon_size(model, spec, layer, params.size, device)
    if spec.fixed_size is None and side == params.size:
        return params
    return dataclasses.replace(params, size=side, pad=0)
