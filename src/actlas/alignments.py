"""What the config's ``alignments`` mean: each item's maps, their ids and folders, and the other models to
collect. The Snakefile reads it at parse time (pure: no file is read or written, no model loaded).

An alignment lays two or more atlases out so that the same region of each holds what the same photos
activate (``actlas.align``; the stage ``actlas.stages.align``). A map is a layer of the run's model
(``layer2``, its id the layer) or a layer of another model run over the same photos (``{layer: blocks.3,
model: config/models/cifar10_vit.json}``, its id ``blocks.3@cifar10-vit``). Another model is collected
over the run's own shard lists into ``RUN/models/NAME/`` (``actlas.paths.model_dir``), NAME the slug of
its card's file name or of its source (a block's ``name`` overrides it). Everything of an alignment lives
in ``RUN/aligned/NAME/`` (``actlas.paths.aligned_dir``), NAME the item's ``name`` or its maps' ids joined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .settings import Alignment, from_mapping
from .text import slug

# run folders an alignment adds beside the layers' folders: no layer of the run may be named so
RESERVED = ("aligned", "models")
NAME = re.compile(r"^[a-z0-9-]+$")


@dataclass(frozen=True)
class MapPlan:
    """One map of an alignment: ``layer`` of ``model`` (the run's own when ``model_name`` is None, else the
    model collected into ``RUN/models/<model_name>/``)."""

    layer: str
    model: Any
    model_name: str | None = None

    @property
    def id(self) -> str:
        """The map's folder name under ``RUN/aligned/NAME/``: the layer, or ``LAYER@MODEL`` for another model's."""
        return self.layer if self.model_name is None else f"{self.layer}@{self.model_name}"


@dataclass(frozen=True)
class AlignmentPlan:
    """One item of ``alignments``: its folder ``name``, its ``maps`` in order (each pulled towards the others),
    the ``alignment`` strength and the grid ``sizes`` of its atlases."""

    name: str
    maps: tuple[MapPlan, ...]
    alignment: float
    sizes: tuple[int, ...]


def parse_map(spec: str) -> tuple[str, str | None]:
    """A map's id -> (layer, model folder name or None): ``LAYER`` is a layer of the run's model,
    ``LAYER@MODEL`` one of the model in ``RUN/models/MODEL/``."""
    layer, sep, model = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if not layer or (sep and not NAME.match(model)):
        raise ConfigError(f"map {spec!r}: give LAYER, or LAYER@MODEL for a layer of another model of the run")
    return layer, model or None


def model_name(model) -> str:
    """A model's folder name under ``RUN/models/``: the slug of its card's file name
    (``config/models/cifar10_vit.json`` -> ``cifar10-vit``) or of its source (``torchvision:resnet18``
    -> ``torchvision-resnet18``); an atlas's ``name`` overrides it."""
    source = str(model.get("source", "") if isinstance(model, dict) else model)
    base = source.replace("\\", "/").rsplit("/", 1)[-1]
    if base.lower().endswith(".json"):
        base = base[: -len(".json")]
    return slug(base)


def _map(entry, run_model, where: str) -> MapPlan:
    if isinstance(entry, str):
        return MapPlan(entry, run_model)
    if not isinstance(entry, dict) or not entry.get("layer"):
        raise ConfigError(f"{where}: an atlas is a layer name or {{layer: LAYER, model: MODEL}}, got {entry!r}")
    model = entry.get("model")
    if model is None or model == run_model:
        return MapPlan(str(entry["layer"]), run_model)
    name = entry.get("name") or model_name(model)
    if not NAME.match(name) or name in RESERVED:
        raise ConfigError(f"{where}: model folder name {name!r} is not usable: give the atlas a name of a-z, 0-9 and -")
    return MapPlan(str(entry["layer"]), model, name)


def plan(config: dict) -> tuple[list[AlignmentPlan], dict[str, Any]]:
    """The alignments of a filled config (``actlas.settings.fill``) and the other models they name
    ({folder name: model}); ``ConfigError`` naming the item and the fix for anything that cannot be built."""
    run_model = config["model"]
    for layer in config.get("layers", []):
        if layer in RESERVED:
            raise ConfigError(f"layer {layer!r} has the name of a run folder ({', '.join(RESERVED)}): cannot hold it")
    out: list[AlignmentPlan] = []
    models: dict[str, Any] = {}
    sizes = tuple(config["grid"]["sizes"])
    for k, item in enumerate(config.get("alignments", [])):
        where = f"alignments[{k}]"
        settings = from_mapping(Alignment, item, "alignments")
        if len(settings.atlases) < 2:
            raise ConfigError(f"{where}: an alignment needs two or more atlases, got {len(settings.atlases)}")
        maps = tuple(_map(e, run_model, where) for e in settings.atlases)
        ids = [m.id for m in maps]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{where}: the same atlas is listed twice ({', '.join(ids)}): list each once")
        for m in maps:
            if m.model_name is None:
                continue
            known = models.setdefault(m.model_name, m.model)
            if known != m.model:
                raise ConfigError(
                    f"{where}: two different models would share the folder models/{m.model_name}: "
                    "give one of them another name (name: ...)"
                )
        name = settings.name or slug("-".join(ids))
        if not NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} must be a-z, 0-9 and -")
        if any(a.name == name for a in out):
            raise ConfigError(f"alignments: two items make aligned/{name}; give one of them another name")
        if settings.alignment < 0:
            raise ConfigError(
                f"{where}: alignment must be at least 0 (0 lays each map out alone), got {settings.alignment}"
            )
        out.append(AlignmentPlan(name, maps, float(settings.alignment), tuple(settings.sizes) or sizes))
    return out, models


def layers_of(alignments: list[AlignmentPlan], model_name: str | None = None) -> list[str]:
    """The layers the alignments take from the run's model (``model_name`` None) or from another model, in order."""
    return list(dict.fromkeys(m.layer for a in alignments for m in a.maps if m.model_name == model_name))
