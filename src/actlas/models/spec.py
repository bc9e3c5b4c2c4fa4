"""``ModelSpec``: everything actlas needs to know about a model besides its weights.

Preprocessing travels with the model, split in two as rendering needs it: ``spec.pixels`` /
``spec.transform`` (resize and centre crop) and the differentiable ``spec.normalize``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# model.interpolation -> the value of torchvision's InterpolationMode that resizes (antialiased) with it
INTERPOLATIONS = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 image tensor(s) (..., 3, H, W) -> float32 in [0, 1], exactly as torchvision v2.ToDtype(scale=True)."""
    return x.to(torch.float32).mul_(1.0 / 255)


@dataclass(frozen=True)
class ModelSpec:
    """Everything actlas needs to know about a model besides its weights.

    Attributes
    ----------
    name : str
        Short name, recorded in manifests.
    source : str
        The string the model was loaded from.
    input_size : (int, int)
        (height, width) the network is fed.
    resize : int
        Short side the image is resized to before the centre crop.
    mean, std : tuple of 3 floats
        Normalisation applied to RGB in [0, 1].
    categories : tuple of str
        Class names in logit order (may be empty for an unlabelled model).
    padding : str
        ``"default"`` or ``"tf_same"`` (TensorFlow SAME padding on every conv with kernel > 1).
    options : dict
        The resolved model block: every field of ``MODEL_FIELDS``, declared or defaulted.
    defaulted : tuple of str
        The fields that fell back to a default (not declared, not given by the source).
    layer_kinds : dict
        Declared layer kinds, layer -> ``"tokens"`` or ``{"kind": ..., "prefix": ...}``.
    interpolation : str
        How images are resized: ``"bilinear"``, ``"bicubic"`` or ``"nearest"`` (``INTERPOLATIONS``).
    fixed_size : (int, int) or None
        The only input size the network takes (``actlas.models.sizes``), or None when it takes any.
    """

    name: str
    source: str
    input_size: tuple[int, int] = (224, 224)
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    categories: tuple[str, ...] = ()
    synsets: tuple[str, ...] = ()
    padding: str = "default"
    options: dict = field(default_factory=dict, compare=False, hash=False)
    defaulted: tuple[str, ...] = ()
    layer_kinds: dict = field(default_factory=dict, compare=False, hash=False)
    interpolation: str = "bilinear"
    fixed_size: tuple[int, int] | None = None

    def transform(self, image) -> torch.Tensor:
        """PIL RGB image -> float32 tensor, shape (3, H, W), values in [0, 1] (resize + centre crop)."""
        return to_float(self.pixels(image))

    def pixels(self, image) -> torch.Tensor:
        """PIL RGB image (or its pixels, uint8 tensor (3, h, w)) -> uint8 tensor, shape (3, H, W): ``transform``
        before its scaling to [0, 1].

        ``to_float(spec.pixels(image))`` equals ``spec.transform(image)`` bit for bit; collect moves
        uint8 images from its loader (``actlas.data.decode.decode_pixels``) and scales whole batches at once.
        """
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        if isinstance(image, torch.Tensor):
            x = image
        else:
            x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True).reshape(image.height, image.width, -1))
            x = x.permute(2, 0, 1)  # as v2.PILToTensor: (C, H, W), a view
        if self.resize:
            x = TF.resize(
                x, [self.resize], interpolation=InterpolationMode(INTERPOLATIONS[self.interpolation]), antialias=True
            )
        if tuple(x.shape[-2:]) != tuple(self.input_size):
            x = TF.center_crop(x, list(self.input_size))
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable normalisation: x float (B, 3, H, W) in [0, 1] -> (x - mean) / std."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def class_index(self, name: str | int) -> int:
        """Index of a class given by name, short name, synset id or number; fails with close names.

        A model without class names accepts any index."""
        from .classes import class_index

        return class_index(self, name)

    def short_name(self, index: int) -> str:
        """Class name up to its first comma ("great white shark"), or the index as text."""
        if 0 <= index < len(self.categories):
            return self.categories[index].split(",")[0].strip()
        return str(index)

    def source_box(
        self, image_hw: tuple[int, int], position: tuple[int, int], spatial: tuple[int, int], extent: float
    ) -> tuple[int, int, int, int]:
        """Box (x0, y0, x1, y1) in the original image around a layer position.

        ``position`` is (y, x) in a layer grid of size ``spatial`` (H, W); ``extent`` is the box side
        as a fraction of the network input. Inverts resize + centre crop.
        """
        h, w = image_hw
        scale = self.resize / min(h, w) if self.resize else 1.0
        rh, rw = round(h * scale), round(w * scale)
        top = (rh - self.input_size[0]) / 2
        left = (rw - self.input_size[1]) / 2
        cy = (position[0] + 0.5) / spatial[0] * self.input_size[0] + top
        cx = (position[1] + 0.5) / spatial[1] * self.input_size[1] + left
        half = extent * self.input_size[0] / 2
        box = [(cx - half) / scale, (cy - half) / scale, (cx + half) / scale, (cy + half) / scale]
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

    def layer_kind(self, layer: str):
        """The declared kind of ``layer`` (``actlas.nn.kinds.LayerKind``), or None to detect it."""
        from ..nn.kinds import as_kind

        return as_kind(self.layer_kinds.get(layer))

    def to_json(self) -> dict:
        """The spec as plain data for manifests: every model field, declared or defaulted
        (``model``), the resolved preprocessing, the class count and which fields were defaulted."""
        return {
            "name": self.name,
            "source": self.source,
            "input_size": list(self.input_size),
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "n_classes": len(self.categories),
            "padding": self.padding,
            "interpolation": self.interpolation,
            "fixed_size": list(self.fixed_size) if self.fixed_size else None,
            "model": plain(self.options),
            "defaulted": list(self.defaulted),
        }


def plain(value):
    """``value`` as plain JSON data: mappings with string keys, lists for tuples, strings for paths."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
