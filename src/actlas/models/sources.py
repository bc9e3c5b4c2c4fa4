"""The registry of model sources: one entry per kind of ``source`` string.

Each kind says how it is written (``matches``), how it builds the model without its weights
(``build``), which class names and synset ids it provides, read as data without building anything
(``label_space``: parse time lists and labels images with it), and which files it reads (``files``:
the inputs of every rule that loads the model, so replacing weights at the same path reruns what
they made). ``SOURCES`` is tried in order; ``source_of`` picks the entry for a string.

Nothing here imports torch, torchvision or timm at import time: the Snakefile uses ``label_space``
and ``model_files`` at parse time.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError, UserError
from ..text import error_line
from .block import trusted
from .card import card_fields, card_files, read_card
from .classes import read_names


@dataclass
class Found:
    """What a source provides before the block's declared fields are applied: the model (no weights yet),
    its name, and ``values`` (input_size, resize, mean, std, labels, synsets) the source knows."""

    model: Any
    name: str
    values: dict = field(default_factory=dict)


class Source:
    """One kind of model source (see the module). Subclasses set ``kind`` and ``syntax`` and override
    what differs; the defaults give no labels and no files besides the block's."""

    kind = ""
    syntax = ""

    def matches(self, source: str) -> bool:
        return source.startswith(f"{self.kind}:")

    def build(self, source: str, block: dict) -> tuple[Found, dict]:
        """The model of ``source`` without weights -> (found, the block's fields merged over the source's)."""
        raise NotImplementedError

    def label_space(self, source: str, block: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(synsets, categories) the source itself names, read as data (no weights, no code)."""
        return (), ()

    def files(self, source: str, block: dict) -> list[Path]:
        """Files the source reads (the block's own files are added by ``model_files``)."""
        return []


def _argument(source: str) -> str:
    return source.split(":", 1)[1]


# --------------------------------------------------------------------------- builders a card may name


def import_object(dotted: str) -> Callable:
    """The object at ``pkg.mod:name`` (or ``pkg.mod.name``); ``ModelError`` when it cannot be imported."""
    module, _, attr = dotted.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"cannot import {dotted!r}: {err} (the module must be importable: on PYTHONPATH)") from err


def timm_module():
    """The timm package; ``ModelError`` saying how to install it when it is missing."""
    try:
        import timm
    except ImportError as err:
        raise ModelError("timm:NAME needs timm: pip install 'actlas[timm]'") from err
    return timm


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
                from .archs import ARCHITECTURES

                return (lib, builder) if builder in ARCHITECTURES else None
            return lib, builder
    return None


def call_factory(factory: Callable, kwargs: dict, name: str):
    """``factory(**kwargs)`` with nothing on stdin (a factory that reads it fails rather than waits); any
    failure of the user's code is one ``ModelError`` line naming the factory and its error."""
    import io
    import sys

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


def build_architecture(architecture: str, kwargs: dict, trust_code: bool, where: str):
    """The ``nn.Module`` a card's ``architecture`` names: a known builder, or any importable callable
    when ``trust_code``."""
    from torch import nn

    known = known_builder(architecture)
    if known is None:
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

            model = torchvision.models.get_model(builder, **kwargs)
        elif lib == "timm":
            model = timm_module().create_model(builder, **kwargs)
        else:
            from .archs import ARCHITECTURES

            model = ARCHITECTURES[builder](**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"{architecture} returned {type(model).__name__}, not a torch.nn.Module")
    return model


# --------------------------------------------------------------------------- the kinds


class Card(Source):
    kind = "card"
    syntax = "a card (.json)"

    def matches(self, source: str) -> bool:
        return source.endswith(".json")

    def build(self, source, block):
        path = Path(source)
        card = read_card(path)
        merged = card_fields(path, card, block)
        model = build_architecture(
            card["architecture"], merged.get("kwargs", {}), trusted(block.get("trust_code")), f"model card {path}"
        )
        return Found(model, card.get("name", path.stem)), merged

    def label_space(self, source, block):
        path = Path(source)
        if not path.is_file():
            return (), ()
        card = read_card(path)
        synsets = read_names(card["synsets"], path.parent) if card.get("synsets") else ()
        categories = read_names(card["labels"], path.parent) if card.get("labels") else ()
        return synsets, categories

    def files(self, source, block):
        return card_files(Path(source))


class Torchvision(Source):
    kind = "torchvision"
    syntax = "torchvision:NAME[:WEIGHTS]"

    @staticmethod
    def _weights(source: str, block: dict) -> str | None:
        _, _, *rest = source.split(":")
        return block.get("weights") or (rest[0] if rest else None)

    @staticmethod
    def _is_file(weights: str | None) -> bool:
        return bool(weights) and bool(Path(weights).suffix or "/" in weights)

    def build(self, source, block):
        import torchvision

        from ..text import closest

        name = source.split(":")[1]
        weights = self._weights(source, block)
        enum_name = None if self._is_file(weights) else weights
        try:
            model = torchvision.models.get_model(name, weights=enum_name, **dict(block.get("kwargs") or {}))
        except ValueError as err:
            close = closest(name, torchvision.models.list_models(), n=5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ModelError(f"{err}{hint}; see torchvision.models.list_models()") from err
        found = Found(model, name)
        if enum_name is not None:
            w = self._weights_enum(name, enum_name)
            t = w.transforms()
            found.values = {
                "input_size": [t.crop_size[0], t.crop_size[0]],
                "resize": t.resize_size[0],
                "mean": list(t.mean),
                "std": list(t.std),
                "labels": list(w.meta.get("categories", ())),
            }
        fields = dict(block)
        if weights and not self._is_file(weights):
            fields.pop("weights", None)  # a weights enum name, used by the builder
        return found, fields

    @staticmethod
    def _weights_enum(name: str, enum_name: str):
        import torchvision

        enum = torchvision.models.get_model_weights(name)
        return enum.DEFAULT if enum_name == "DEFAULT" else enum[enum_name]

    def label_space(self, source, block):
        _, name, *rest = source.split(":")
        if not rest:
            return (), ()
        return (), tuple(self._weights_enum(name, rest[0]).meta.get("categories", ()))


class Timm(Source):
    kind = "timm"
    syntax = "timm:NAME"

    def build(self, source, block):
        timm = timm_module()
        name = _argument(source)
        try:
            model = timm.create_model(name, **dict(block.get("kwargs") or {}))
        except RuntimeError as err:
            raise ModelError(f"timm cannot create {name!r}: {err}; see timm.list_models()") from err
        cfg = timm.data.resolve_model_data_config(model)
        h, w = cfg["input_size"][1:]
        values = {
            "input_size": [h, w],
            "resize": int(math.floor(min(h, w) / cfg.get("crop_pct", 1.0))),
            "mean": list(cfg["mean"]),
            "std": list(cfg["std"]),
        }
        try:
            subset = timm.data.infer_imagenet_subset(model)
            if subset:
                info = timm.data.ImageNetInfo(subset)
                values["labels"] = list(info.label_descriptions())
                values["synsets"] = list(info.label_names())
        except Exception:  # noqa: BLE001 - labels are optional; a model timm cannot place gets none
            pass
        return Found(model, name, values=values), dict(block)


class Export(Source):
    kind = "export"
    syntax = "export:PATH.pt2"

    def build(self, source, block):
        import torch

        if block.get("kwargs"):
            raise ModelError("an export:PATH program takes no kwargs; remove model.kwargs")
        file = _argument(source)
        from ..files import require_file

        require_file(file, "torch.export file", ModelError)
        model = torch.export.unflatten(torch.export.load(file))
        return Found(model, Path(file).stem), dict(block)

    def files(self, source, block):
        return [Path(_argument(source))]


TORCHSCRIPT_REFUSED = (
    "TorchScript modules take no forward hooks, so actlas cannot read their layers; export the model instead: "
    "torch.export.save(torch.export.export(model.eval(), (torch.zeros(2, 3, H, W),), dynamic_shapes="
    "({0: torch.export.Dim('batch')},)), 'model.pt2') and use export:model.pt2"
)


class TorchScript(Source):
    kind = "torchscript"
    syntax = "torchscript:PATH (refused)"

    def build(self, source, block):
        raise ModelError(TORCHSCRIPT_REFUSED)

    def files(self, source, block):
        return [Path(_argument(source))]


def _hf_labels(model) -> dict:
    """``{"labels": [...]}`` from a Hugging Face model's ``config.id2label``, else {}."""
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, Mapping) and id2label:
        try:
            return {"labels": [str(id2label[i]) for i in range(len(id2label))]}
        except KeyError:
            return {}
    return {}


class Factory(Source):
    kind = "factory"
    syntax = "package.module:function"

    def matches(self, source: str) -> bool:
        return ":" in source and not source.startswith(("/", "."))

    def build(self, source, block):
        from torch import nn

        if not trusted(block.get("trust_code")):
            raise ModelError(
                f"the source {source!r} runs Python code (a factory); actlas runs it only with "
                "trust_code: true (--trust-code) when you trust the config's author"
            )
        model = call_factory(import_object(source), dict(block.get("kwargs") or {}), source)
        if not isinstance(model, nn.Module):
            raise ModelError(f"{source} returned {type(model).__name__}, not a torch.nn.Module")
        return Found(model, source.split(":")[1], values=_hf_labels(model)), dict(block)


SOURCES: tuple[Source, ...] = (Card(), Torchvision(), Timm(), Export(), TorchScript(), Factory())


def source_of(source: str) -> Source:
    """The registry entry for a source string; ``ModelError`` listing the kinds when none matches."""
    for entry in SOURCES:
        if entry.matches(source):
            return entry
    kinds = ", ".join(s.syntax for s in SOURCES if s.kind != "torchscript")
    raise ModelError(f"cannot tell what model {source!r} is: give {kinds}")


def _block(model) -> dict:
    """A source string or a model block as a block (parse time: not validated, never loaded)."""
    return dict(model) if isinstance(model, Mapping) else {"source": str(model)}


def label_space(model) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(synsets, categories) of a model, read as data (no weights, no code): the block's own ``synsets``
    and ``labels`` (relative to the working directory), else the source's. An unknown source gives
    ``((), ())``: images are then unlabelled (-1) unless a list file gives labels."""
    block = _block(model)
    source = str(block.get("source", ""))
    synsets = read_names(block["synsets"]) if block.get("synsets") else ()
    categories = read_names(block["labels"]) if block.get("labels") else ()
    try:
        entry = source_of(source)
    except ModelError:
        return synsets, categories
    if not (synsets and categories):
        own_synsets, own_categories = entry.label_space(source, block)
        synsets, categories = synsets or own_synsets, categories or own_categories
    return synsets, categories


def model_files(model) -> list[str]:
    """The files a model is read from (card, weights, label files, exported program), sorted: inputs of
    every rule that loads the model. ``model``: a source string or a model block. Files that do not
    exist are left out (the stage that loads the model names them)."""
    block = _block(model)
    source = str(block.get("source", ""))
    try:
        found = source_of(source).files(source, block)
    except ModelError:
        found = []
    found += [Path(str(block[k])) for k in ("weights", "labels", "synsets") if isinstance(block.get(k), str)]
    return sorted({str(p) for p in found if p.is_file()})
