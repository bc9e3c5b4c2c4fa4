"""Hugging Face transformers models: ``transformers:ID_OR_PATH`` (a Hub repository id or a saved folder).

The config decides the class: an image classifier (``architectures`` ending in ``ForImageClassification``)
through ``AutoModelForImageClassification``, anything else through ``AutoModel``: an encoder
(DINOv2), or a vision-language model's image tower (CLIP, SigLIP: its ``vision_config``, built as
its own vision model). ``weights: random`` builds from the config alone (under the seed, see
``actlas.models.untrained``); ``weights: FILE`` loads that state dict into it. Preprocessing comes
from the repository's image processor (``preprocessor_config.json``: ``size`` as ``shortest_edge``
or ``height``/``width``, ``crop_size`` with ``do_center_crop``, ``image_mean``, ``image_std``,
``resample``); class names from ``config.id2label`` when it has one name per output and the names
are not the placeholders ``LABEL_i``.

Never ``trust_remote_code``: a repository whose model needs its own code is refused in one line
(load it with a factory and ``trust_code``). With ``HF_HUB_OFFLINE=1`` nothing is fetched; what is
missing from the cache fails in one line naming ``hf download``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import DependencyError, ModelError
from ..text import error_line
from .hub import hf_offline, hub_error, quiet_stdout

# PIL's resampling filters (image processors' ``resample``) -> model.interpolation
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def transformers_module():
    """The transformers package; ``DependencyError`` saying how to install it when it is missing."""
    try:
        import transformers
    except ImportError as err:
        raise DependencyError("transformers:ID needs transformers: pip install 'actlas[transformers]'") from err
    return transformers


@contextlib.contextmanager
def quiet():
    """transformers' load reports and progress bars silenced, stdout kept clean."""
    transformers = transformers_module()
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with quiet_stdout():
            yield transformers
    finally:
        logging.set_verbosity(level)
        logging.enable_progress_bar()


def _refused(ident: str, err: BaseException) -> ModelError:
    return ModelError(
        f"transformers:{ident} cannot be built from its config ({error_line(err, 120)}); actlas never runs code "
        "from a model repository (trust_remote_code): load it through a factory of your own with trust_code: true"
    )


def _config(ident: str, kwargs: dict):
    with quiet() as transformers:
        try:
            return transformers.AutoConfig.from_pretrained(
                ident, local_files_only=hf_offline(), trust_remote_code=False, **kwargs
            )
        except OSError as err:
            if Path(ident).exists() or ident.startswith((".", "/")):
                raise ModelError(
                    f"transformers:{ident}: no model config in that folder ({error_line(err, 80)})"
                ) from None
            raise hub_error(f"transformers:{ident}", ident, err) from None
        except ValueError as err:
            raise _refused(ident, err) from None


def is_classifier(config) -> bool:
    return any(str(a).endswith("ForImageClassification") for a in (getattr(config, "architectures", None) or ()))


def build(ident: str, kwargs: dict, pretrained: bool):
    """The model of ``transformers:ident`` (its Hub or saved weights when ``pretrained``, else initialised from
    its config) and what its repository says: {input_size, resize, mean, std, interpolation, labels}."""
    config = _config(ident, kwargs)
    classifier = is_classifier(config)
    if not classifier and getattr(config, "vision_config", None) is not None:
        config = config.vision_config  # CLIP, SigLIP: the image tower
    with quiet() as transformers:
        auto = transformers.AutoModelForImageClassification if classifier else transformers.AutoModel
        try:
            if pretrained:
                model = auto.from_pretrained(
                    ident, config=config, local_files_only=hf_offline(), trust_remote_code=False
                )
            else:
                model = auto.from_config(config, trust_remote_code=False)
        except OSError as err:
            raise hub_error(f"the weights of transformers:{ident}", ident, err) from None
        except ValueError as err:
            raise _refused(ident, err) from None
    values = preprocessing(ident)
    if classifier:
        values.update(labels_of(config.to_dict()))
    return model, values


def preprocessing(ident: str) -> dict:
    """The model-block values an image processor declares (input_size, resize, mean, std, interpolation), or {}
    when the repository has none."""
    with quiet() as transformers:
        try:
            p = transformers.AutoImageProcessor.from_pretrained(
                ident, local_files_only=hf_offline(), trust_remote_code=False
            )
        except (OSError, ValueError, KeyError):
            return {}
    size, crop = _size(getattr(p, "size", None)), _size(getattr(p, "crop_size", None))
    values = {}
    if size is not None:
        edge, hw = size
        side = edge if edge else min(hw)
        values["resize"] = side if getattr(p, "do_resize", True) else 0
        values["input_size"] = list(hw) if hw else [side, side]
        if crop is not None and crop[1] and getattr(p, "do_center_crop", False):
            values["input_size"] = list(crop[1])
    if getattr(p, "do_normalize", True) and getattr(p, "image_mean", None) is not None:
        values["mean"] = [float(v) for v in _triple(p.image_mean)]
        values["std"] = [float(v) for v in _triple(p.image_std)]
    elif not getattr(p, "do_normalize", True):
        values["mean"], values["std"] = [0.0] * 3, [1.0] * 3
    mode = _interpolation(getattr(p, "resample", None))
    if mode:
        values["interpolation"] = mode
    return values


def _triple(value) -> list:
    return list(value) * 3 if len(list(value)) == 1 else list(value)


def _size(value) -> tuple[int, tuple[int, int] | None] | None:
    """An image processor's size -> (shortest_edge or 0, (height, width) or None), or None."""
    if value is None:
        return None
    if isinstance(value, int):
        return value, None
    get = value.get if hasattr(value, "get") else lambda k: getattr(value, k, None)
    h, w = get("height"), get("width")
    if h and w:
        return 0, (int(h), int(w))
    edge = get("shortest_edge")
    return (int(edge), None) if edge else None


def _interpolation(resample) -> str | None:
    if resample is None:
        return None
    try:
        return RESAMPLE.get(int(resample))
    except (TypeError, ValueError):
        text = str(resample).lower()
        return next((m for m in ("bicubic", "bilinear", "nearest") if m in text), None)


DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def labels_of(config: dict) -> dict:
    """``{"labels": [...]}`` from a config's ``id2label`` when it names every output and not as ``LABEL_i``."""
    id2label = config.get("id2label") or {}
    n = int(config.get("num_labels") or len(id2label))
    try:
        names = [str(id2label[i] if i in id2label else id2label[str(i)]) for i in range(n)]
    except KeyError:
        return {}
    if not names or len(names) != len(id2label) or all(DEFAULT_LABEL.match(name) for name in names):
        return {}
    return {"labels": names}


def model_labels(model) -> dict:
    """``{"labels": [...]}`` from any model's ``config.id2label`` (a Hugging Face model a factory built), else {}."""
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, Mapping) and id2label:
        try:
            return {"labels": [str(id2label[i]) for i in range(len(id2label))]}
        except KeyError:
            return {}
    return {}


def config_file(ident: str) -> Path | None:
    """The ``config.json`` of a saved folder, or of a Hub repository already in the cache; None otherwise."""
    if Path(ident).is_dir():
        path = Path(ident) / "config.json"
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ident, "config.json")
    except (ImportError, ValueError):
        return None
    return Path(found) if isinstance(found, str) else None


def label_space(ident: str) -> tuple[str, ...]:
    """Class names of ``transformers:ident`` read as data from its config (no model built), or ()."""
    path = config_file(ident)
    if path is None:
        return ()
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return ()
    if not any(str(a).endswith("ForImageClassification") for a in config.get("architectures") or ()):
        return ()
    return tuple(labels_of(config).get("labels", ()))


def files(ident: str) -> list[Path]:
    """The files of a saved folder (config, weights, image processor): inputs of the rules that load it."""
    folder = Path(ident)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin"))
