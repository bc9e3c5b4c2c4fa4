"""Builders: calling a model's builder with the block's kwargs, the builders a card may name without
``trust_code`` (torchvision, timm, actlas's built-in architectures, listed in ``BUILTINS``), and what
timm and ``torch.export`` programs say about a model as data.

Nothing here imports torch, torchvision or timm at import time (the CLI's help lists ``BUILTINS``).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable

from ..errors import DependencyError, ModelError
from ..text import closest, did_you_mean, one_line


def call_builder(fn: Callable, kwargs: dict, what: str):
    """``fn(**kwargs)``; a keyword ``fn`` does not take fails in one line naming it."""
    try:
        return fn(**kwargs)
    except TypeError as err:
        text = str(err)
        if "keyword argument" not in text and "positional argument" not in text:
            raise
        import inspect

        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            params = []
        # a builder that passes **kwargs on does not know what it takes; one that does not lists its keywords
        takes = [] if any(p.kind is p.VAR_KEYWORD for p in params) else [p.name for p in params]
        listed = f"; it takes: {', '.join(takes)}" if takes else ""
        raise ModelError(f"model.kwargs {kwargs} do not fit {what}: {one_line(text, 120)}{listed}") from None


def call_factory(factory: Callable, kwargs: dict, name: str):
    """``factory(**kwargs)`` (the user's code) with nothing on stdin (a factory that reads it fails rather than
    waits); any failure is one ``ModelError`` line naming the factory and its error."""
    import io
    import sys

    from ..errors import UserError
    from ..text import error_line

    stdin, sys.stdin = sys.stdin, io.StringIO()
    try:
        return factory(**kwargs)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's code: its error is theirs to fix, in one line
        raise ModelError(
            f"the model factory {name} failed: {error_line(err)}; check it and model.kwargs ({sorted(kwargs)})"
        ) from None
    finally:
        sys.stdin = stdin


# --------------------------------------------------------------------------- builders a card may name


def import_object(dotted: str) -> Callable:
    """The object at ``pkg.mod:name`` (or ``pkg.mod.name``); ``ModelError`` when it cannot be imported."""
    module, _, attr = dotted.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"cannot import {dotted!r}: {err} (the module must be importable: on PYTHONPATH)") from err


def timm_module():
    """The timm package; ``DependencyError`` saying how to install it when it is missing."""
    try:
        import timm
    except ImportError as err:
        raise DependencyError("timm:NAME needs timm: pip install 'actlas[timm]'") from err
    return timm


# The architectures built into actlas (``actlas.models.archs.ARCHITECTURES``), a line each: what ``actlas:NAME``
# names. Kept here, free of torch, for the CLI's help and the error that names an unknown one.
BUILTINS = {
    "cifar_resnet": "the CIFAR ResNets of He et al. 2016 for 32 x 32 inputs, kwargs {depth: 20, 32, 44, 56 or 110}",
    "cifar10_resnet20": "ResNet-20 for CIFAR-10; another depth: actlas:cifar_resnet with kwargs {depth: N}",
    "vit": "a small ViT whose position embeddings follow the input size, kwargs image_size, patch, dim, depth, heads",
}


def builtins_text() -> str:
    """The built-in architectures as text: ``actlas:NAME: what it is``, separated by semicolons."""
    return "built-in architectures: " + "; ".join(f"actlas:{name}: {what}" for name, what in BUILTINS.items())


# Spellings of a known builder: prefix -> library. Nothing is imported for them but torchvision,
# timm and actlas itself.
BUILDER_PREFIXES = (
    ("torchvision.models.", "torchvision"),
    ("torchvision:", "torchvision"),
    ("timm:", "timm"),
    ("timm.models.", "timm"),
    ("actlas:", "actlas"),
    ("actlas.models.archs.", "actlas"),
    ("actlas.archs.", "actlas"),
)


def known_builder(name: str) -> tuple[str, str] | None:
    """(``"torchvision"`` | ``"timm"`` | ``"actlas"``, builder) when ``name`` names a known builder, else None."""
    for prefix, lib in BUILDER_PREFIXES:
        if name.startswith(prefix):
            builder = name[len(prefix) :]
            if lib == "torchvision":
                import torchvision

                return (lib, builder) if builder in torchvision.models.list_models() else None
            if lib == "actlas":
                return (lib, builder) if builder in BUILTINS else None
            return lib, builder
    return None


def unknown_builtin(name: str) -> ModelError:
    """One line for an ``actlas:NAME`` that is no built-in architecture, listing them."""
    depth = re.search(r"resnet(\d+)$", name)
    hint = f"; for ResNet-{depth[1]} give actlas:cifar_resnet with kwargs {{depth: {depth[1]}}}" if depth else ""
    hint = hint or did_you_mean(name, BUILTINS)
    return ModelError(f"actlas:{name} is not a built-in architecture{hint} ({builtins_text()})")


def build_builtin(name: str, kwargs: dict):
    """The built-in architecture ``name`` (``actlas.models.archs``) built with ``kwargs``."""
    if name not in BUILTINS:
        raise unknown_builtin(name)
    from .archs import ARCHITECTURES

    return call_builder(ARCHITECTURES[name], kwargs, f"actlas:{name} ({BUILTINS[name]})")


def build_architecture(architecture: str, kwargs: dict, trust_code: bool, where: str):
    """The ``nn.Module`` a card's ``architecture`` names: a known builder, or any importable callable
    when ``trust_code``."""
    from torch import nn

    known = known_builder(architecture)
    if known is None:
        if architecture.startswith(("actlas:", "actlas.models.archs.", "actlas.archs.")):
            raise unknown_builtin(architecture.rsplit(":", 1)[-1].rsplit(".", 1)[-1])
        if not trust_code:
            raise ModelError(
                f"{where} names architecture {architecture!r}, which is not a torchvision, timm or actlas builder; "
                "actlas runs code named by a card or config only with trust_code: true (--trust-code) "
                "when you trust its author"
            )
        model = call_factory(import_object(architecture), kwargs, architecture)
    else:
        lib, builder = known
        if lib == "torchvision":
            import torchvision

            model = call_builder(lambda **kw: torchvision.models.get_model(builder, **kw), kwargs, architecture)
        elif lib == "timm":
            model = call_builder(timm_module().create_model, {"model_name": builder, **kwargs}, architecture)
        else:
            model = build_builtin(builder, kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"{architecture} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def timm_labels(name: str, kwargs: dict) -> dict:
    """{labels, synsets} of timm model ``name`` from its pretrained config, read as data (no model built):
    timm's ImageNet subsets (1k, 12k, 21k, 22k) give both; {} when there are none, or when
    ``kwargs`` change the number of classes."""
    timm = timm_module()
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return {}
    subset = timm.data.infer_imagenet_subset(cfg.to_dict())
    if not subset:
        return {}
    info = timm.data.ImageNetInfo(subset)
    if int(kwargs.get("num_classes", cfg.num_classes)) != info.num_classes():
        return {}
    return {"labels": list(info.label_descriptions()), "synsets": list(info.label_names())}


def build_timm(name: str, kwargs: dict, pretrained: bool):
    """timm model ``name`` built with ``kwargs`` -> (model, the model-block values its data config and labels
    give: input_size, resize, mean, std, interpolation, labels, synsets). ``pretrained``: the kwargs download
    weights, and a failed download is one line (``actlas.models.hub``)."""
    from .hub import hub_error, quiet_stdout

    timm = timm_module()
    try:
        with quiet_stdout():
            model = call_builder(timm.create_model, {"model_name": name, **kwargs}, f"timm:{name}")
    except RuntimeError as err:
        if "Unknown model" not in str(err):
            raise
        close = closest(name, timm.list_models(), n=5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ModelError(f"timm has no model {name!r}{hint}; see timm.list_models()") from None
    except OSError as err:
        if not pretrained:
            raise
        cfg = timm.models.get_pretrained_cfg(name)
        raise hub_error(f"timm's weights for {name}", getattr(cfg, "hf_hub_id", None) or name, err) from None
    cfg = timm.data.resolve_model_data_config(model)
    h, w = cfg["input_size"][1:]
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)  # kwargs {img_size: N} set it
    if isinstance(size, (tuple, list)) and len(size) == 2:
        h, w = int(size[0]), int(size[1])
    values = {
        "input_size": [h, w],
        "resize": int(math.floor(min(h, w) / cfg.get("crop_pct", 1.0))),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
    }
    if cfg.get("interpolation") in ("bilinear", "bicubic", "nearest"):
        values["interpolation"] = cfg["interpolation"]
    values.update(timm_labels(name, kwargs))
    return model, values


def load_export(file: str):
    """The module of the ``torch.export`` program at ``file`` (unflattened: its layers keep their module paths)
    -> (module, {"fixed_size": [H, W]} when its input's height and width are static, else {})."""
    import torch

    from ..files import require_file

    require_file(file, "torch.export file", ModelError)
    program = torch.export.load(file)
    fixed = exported_input_size(program)
    return torch.export.unflatten(program), ({"fixed_size": list(fixed)} if fixed is not None else {})


def exported_input_size(program) -> tuple[int, int] | None:
    """(H, W) of an exported program's first input when both are static (it takes no other size), else None."""
    names = program.graph_signature.user_inputs
    for node in program.graph.nodes:
        if node.op == "placeholder" and names and node.name == names[0]:
            shape = getattr(node.meta.get("val"), "shape", ())
            if len(shape) == 4 and all(isinstance(v, int) for v in shape[2:]):
                return int(shape[2]), int(shape[3])
    return None


def torchvision_weights(name: str, enum_name: str, missing_ok: bool = False):
    """The member ``enum_name`` (``DEFAULT``, ``IMAGENET1K_V1``) of torchvision model ``name``'s weights enum.

    An unknown name fails in one line listing the valid ones; with ``missing_ok``, a model without
    weights gives None."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError) as err:
        if missing_ok:
            return None
        raise ModelError(f"torchvision {name} has no weights enum ({err}); give weights: FILE or random") from None
    if enum_name == "DEFAULT":
        return enum.DEFAULT
    if enum_name not in enum.__members__:
        raise ModelError(
            f"torchvision {name} has no weights {enum_name!r}{did_you_mean(enum_name, enum.__members__)}; "
            f"valid: {', '.join(['DEFAULT', *(n for n in enum.__members__ if n != 'DEFAULT')])} "
            "(or weights: FILE, or weights: random)"
        )
    return enum[enum_name]


def torchvision_recipe(weights, kwargs: dict) -> dict:
    """What torchvision weights (an enum member, or None) say as model-block values: input_size, resize, mean,
    std, interpolation from their transforms, and their categories as labels unless ``kwargs`` change the
    number of classes."""
    if weights is None:
        return {}
    t = weights.transforms()
    values = {
        "input_size": [t.crop_size[0], t.crop_size[0]],
        "resize": t.resize_size[0],
        "mean": list(t.mean),
        "std": list(t.std),
        "interpolation": str(t.interpolation.value),
    }
    labels = list(weights.meta.get("categories", ()))
    if labels and int(kwargs.get("num_classes", len(labels))) == len(labels):
        values["labels"] = labels
    return values
