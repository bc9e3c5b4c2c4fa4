"""Models and their preprocessing: ``ModelSpec`` and ``load_model``.

A model is named by one string, the ``source``:

- a card, ``path/to/model.json``: a torchvision architecture, local weights, preprocessing,
  categories and padding (see ``../shared/assets/models/mobilenet_v2_imagenet.json``);
- a torchvision builder, ``torchvision:resnet50`` (weights ``DEFAULT`` or any weights enum name;
  downloads through torchvision's own cache, so it needs a network the first time);
- a TorchScript file, ``torchscript:path/to/model.pt`` (loaded only when asked for this way);
- a Python factory, ``package.module:function`` returning an ``nn.Module``.

Preprocessing travels with the model, split in two as rendering needs it: ``spec.transform``
(PIL image -> float tensor [3, H, W] in [0, 1]: resize, centre crop) and ``spec.normalize``
(differentiable mean/std normalisation): the network sees ``model(spec.normalize(x))``.
"""

from __future__ import annotations

import importlib
import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
    """A model source, card or weights file that cannot be used; the message says how to fix it."""


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
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def transform(self, image) -> torch.Tensor:
        """PIL RGB image -> float32 tensor, shape (3, H, W), values in [0, 1] (resize + centre crop)."""
        from torchvision.transforms import v2

        pipeline = v2.Compose(
            [
                v2.PILToTensor(),
                v2.Resize(self.resize, antialias=True),
                v2.CenterCrop(self.input_size),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )
        return pipeline(image)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable normalisation: x float (B, 3, H, W) in [0, 1] -> (x - mean) / std."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def class_index(self, name: str) -> int:
        """Index of a class given by name, short name, synset id or number; fails with close names."""
        return resolve_class(name, self.categories, self.synsets)

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
        scale = self.resize / min(h, w)
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

    def to_json(self) -> dict:
        """The spec as plain data for manifests (categories omitted)."""
        return {
            "name": self.name,
            "source": self.source,
            "input_size": list(self.input_size),
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "n_classes": len(self.categories),
            "padding": self.padding,
        }


def resolve_class(name: str | int, categories: tuple[str, ...], synsets: tuple[str, ...] = ()) -> int:
    """Class index from a number, a synset id, a full name or the part before its first comma.

    Raises ``ModelError`` naming the closest class names when nothing matches.
    """
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        index = int(name)
        if 0 <= index < max(len(categories), 1):
            return index
        raise ModelError(f"class index {index} is out of range (0..{len(categories) - 1})")
    key = name.strip().lower()
    if key in synsets:
        return synsets.index(key)
    for i, full in enumerate(categories):
        names = [p.strip().lower() for p in full.split(",")]
        if key == full.lower() or key in names:
            return i
    import difflib

    shorts = [c.split(",")[0].strip() for c in categories]
    close = difflib.get_close_matches(name, shorts, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(f"unknown class {name!r}{hint}")


# --------------------------------------------------------------------------- padding


class Conv2dSame(nn.Conv2d):
    """A Conv2d with TensorFlow "SAME" padding: out = ceil(in / stride), the extra pixel after.

    Shares ``nn.Conv2d``'s parameters and state-dict keys, so weights load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(F.pad(x, same_padding(x.shape[-2:], self)), self.weight, self.bias)


def same_padding(hw, conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """F.pad amounts (left, right, top, bottom) giving TensorFlow SAME output for ``conv`` on ``hw``."""
    pads = []
    for size, k, s, d in zip(hw, conv.kernel_size, conv.stride, conv.dilation):
        out = -(-int(size) // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - int(size), 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


def use_tf_same_padding(model: nn.Module) -> nn.Module:
    """Switch every Conv2d with a kernel larger than 1 to TensorFlow SAME padding, in place."""
    for module in model.modules():
        if type(module) is nn.Conv2d and max(module.kernel_size) > 1:
            module.__class__ = Conv2dSame
            module.padding = (0, 0)
    return model


# --------------------------------------------------------------------------- weights


def load_weights(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file through ``weights_only=True``.

    A pickle that needs code to load is refused unless ``allow_pickle`` (``--allow-pickle``).
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise ModelError(
                f"{path} is a pickle that runs code when loaded, so actlas refused it. Convert it to "
                "safetensors, or pass --allow-pickle (allow_pickle=True) if you trust its author."
            ) from err
        state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _import(dotted: str) -> Callable:
    module, _, attr = dotted.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"cannot import {dotted!r}: {err}") from err


def _read_lines(path: Path) -> tuple[str, ...]:
    return tuple(line.rstrip("\n") for line in path.read_text().splitlines() if line.strip())


def _from_card(path: Path, allow_pickle: bool) -> tuple[nn.Module, ModelSpec]:
    card = json.loads(path.read_text())
    for key in ("architecture", "weights"):
        if key not in card:
            raise ModelError(f"model card {path} lacks the key {key!r}")
    model = _import(card["architecture"])(**card.get("architecture_kwargs", {}))
    state = load_weights(path.parent / card["weights"], allow_pickle)
    model.load_state_dict(state)
    categories = _read_lines(path.parent / card["categories"]) if card.get("categories") else ()
    synsets = _read_lines(path.parent / card["synsets"]) if card.get("synsets") else ()
    size = tuple(card.get("input_size", [card.get("crop", 224)] * 2))
    spec = ModelSpec(
        name=card.get("name", path.stem),
        source=str(path),
        input_size=(int(size[0]), int(size[1])),
        resize=int(card.get("resize", size[0])),
        mean=tuple(card.get("mean", IMAGENET_MEAN)),
        std=tuple(card.get("std", IMAGENET_STD)),
        categories=categories,
        synsets=synsets,
        padding=card.get("padding", "default"),
    )
    return model, spec


def _from_torchvision(name: str, weights: str | None) -> tuple[nn.Module, ModelSpec]:
    import torchvision

    try:
        model = torchvision.models.get_model(name, weights=weights)
    except ValueError as err:
        import difflib

        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ModelError(f"{err}{hint}; see torchvision.models.list_models()") from err
    spec = ModelSpec(name=name, source=f"torchvision:{name}")
    if weights is not None:
        w = torchvision.models.get_model_weights(name)[weights] if weights != "DEFAULT" else (
            torchvision.models.get_model_weights(name).DEFAULT
        )
        t = w.transforms()
        spec = ModelSpec(
            name=name,
            source=f"torchvision:{name}:{weights}",
            input_size=(t.crop_size[0], t.crop_size[0]),
            resize=t.resize_size[0],
            mean=tuple(t.mean),
            std=tuple(t.std),
            categories=tuple(w.meta.get("categories", ())),
        )
    return model, spec


def load_model(
    source: str, *, weights: str | None = None, allow_pickle: bool = False, padding: str | None = None
) -> tuple[nn.Module, ModelSpec]:
    """Load a model in eval mode, with its ``ModelSpec``.

    Parameters
    ----------
    source : str
        A card path (``.json``), ``torchvision:NAME``, ``torchscript:PATH`` or ``package.module:function``.
    weights : str, optional
        For torchvision builders, a weights name (``DEFAULT``); for factories, a weights file.
    allow_pickle : bool
        Allow weights pickles that run code when loaded (never needed for safetensors).
    padding : str, optional
        Override the card's padding (``"default"`` or ``"tf_same"``).
    """
    path = Path(source)
    if source.endswith(".json"):
        if not path.exists():
            raise ModelError(f"model card not found: {source}")
        model, spec = _from_card(path, allow_pickle)
    elif source.startswith("torchvision:"):
        _, name, *rest = source.split(":")
        model, spec = _from_torchvision(name, weights or (rest[0] if rest else None))
    elif source.startswith("torchscript:"):
        file = source.split(":", 1)[1]
        if not Path(file).exists():
            raise ModelError(f"TorchScript file not found: {file}")
        model = torch.jit.load(file, map_location="cpu")
        spec = ModelSpec(name=Path(file).stem, source=source)
    elif ":" in source:
        model = _import(source)()
        if not isinstance(model, nn.Module):
            raise ModelError(f"{source} returned {type(model).__name__}, not a torch.nn.Module")
        spec = ModelSpec(name=source.split(":")[1], source=source, extra={"factory": source})
        if weights:
            model.load_state_dict(load_weights(Path(weights), allow_pickle))
    else:
        raise ModelError(
            f"cannot tell what model {source!r} is: give a card (.json), torchvision:NAME, "
            "torchscript:PATH or package.module:function"
        )
    if padding is not None:
        spec = ModelSpec(**{**spec.__dict__, "padding": padding})
    if spec.padding == "tf_same":
        use_tf_same_padding(model)
    elif spec.padding != "default":
        raise ModelError(f"unknown padding {spec.padding!r}: use 'default' or 'tf_same'")
    for p in model.parameters():
        p.requires_grad_(False)
    for module in model.modules():  # in-place ops would overwrite captured activations
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return model.eval(), spec
