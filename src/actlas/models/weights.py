"""Weights: a state dict from safetensors or a torch file (pickles refused unless allowed), fitted to a model."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..files import require_file
from ..text import error_line


def load_weights(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file through ``weights_only=True``.

    A pickle that needs code to load is refused unless ``allow_pickle`` (``model.allow_pickle``,
    ``--allow-pickle``). Checkpoints that wrap the state dict (``state_dict``, ``model``,
    ``model_state_dict``) are unwrapped.
    """
    path = require_file(path, "weights file", ModelError)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - a damaged or foreign file, whatever the error says
            raise ModelError(
                f"weights file {path} is not a readable safetensors file ({error_line(err, 120)}): "
                "give the model's safetensors weights"
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise ModelError(
                f"{path} is a pickle that runs code when loaded, so actlas refused it. Convert it to "
                "safetensors, or set model.allow_pickle: true (--allow-pickle) if you trust its author."
            ) from err
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError) as err:  # not a torch file at all (garbage, truncated)
        raise ModelError(
            f"weights file {path} is not a torch or safetensors file ({error_line(err, 120)}): "
            "give the model's weights (.safetensors, .pt or .pth)"
        ) from None
    if isinstance(state, nn.Module):
        state = state.state_dict()
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), (dict, nn.Module)):
            state = state[key].state_dict() if isinstance(state[key], nn.Module) else state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.")


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with wrapper prefixes (``module.`` of DataParallel, ``_orig_mod.`` of
    torch.compile, ``model.``, ...) stripped while that makes more keys fit ``model``."""
    want = set(model.state_dict())
    state = dict(state)
    for _ in range(2 * len(WRAPPER_PREFIXES)):
        fit = len(want & set(state))
        loose = [k for k in state if k not in want]
        best = None
        for prefix in WRAPPER_PREFIXES:
            stripped = {k[len(prefix) :] if k in loose and k.startswith(prefix) else k: v for k, v in state.items()}
            gain = len(want & set(stripped)) - fit
            if gain > 0 or (loose and gain == 0 and all(k.startswith(prefix) for k in loose)):
                best = stripped  # more keys fit, or every loose key sheds a wrapper layer
                if gain > 0:
                    break
        if best is None:
            return state
        state = best
    return state


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` (prefixes stripped); fails in one line naming the first missing,
    the first unexpected and the first mis-shaped key."""
    state = fit_state_dict(model, state)
    own = model.state_dict()
    shaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing, unexpected = [], []
    if not shaped:
        result = model.load_state_dict(state, strict=False)  # tolerates what torch tolerates (num_batches_tracked)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected or shaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        if shaped:
            k = shaped[0]
            parts.append(
                f"{len(shaped)} of another shape (first {k!r}: {list(state[k].shape)} for {list(own[k].shape)})"
            )
        raise ModelError(
            f"weights {where} do not fit the model: keys {', '.join(parts)}; check the architecture "
            "and its kwargs (num_classes, ...)"
        )
