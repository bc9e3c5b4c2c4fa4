"""The logits in a model's forward output: a tensor as is, else a key, attribute or index of it."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import ModelError


def select_logits(out, output: str | int | None = None) -> torch.Tensor:
    """The logits in a forward's output: a tensor as is; else ``output`` (a key, attribute or index);
    by default a tuple's first element and a dict's or ModelOutput's ``logits``."""
    if isinstance(out, torch.Tensor) and output is None:
        return out
    if output is None:
        if isinstance(out, (tuple, list)) and out and not isinstance(out, Mapping) and not is_model_output(out):
            return select_logits(out[0])
        output = "logits"
    if isinstance(output, str) and output.lstrip("-").isdigit():
        output = int(output)
    if isinstance(out, Mapping) or is_model_output(out):
        keys = list(out.keys())
        if output in keys:
            return select_logits(out[output])
        if isinstance(output, int) and -len(keys) <= output < len(keys):
            return select_logits(out[keys[output]])
        raise ModelError(
            f"the model's forward returns {type(out).__name__} without {output!r}; its keys: "
            f"{', '.join(map(str, keys))}; set model.output to the key of the logits"
        )
    if isinstance(out, (tuple, list)) and isinstance(output, int):
        if -len(out) <= output < len(out):
            return select_logits(out[output])
        raise ModelError(f"the model's forward returns {len(out)} values; model.output {output} is out of range")
    if isinstance(out, torch.Tensor):
        raise ModelError(f"the model's forward returns a tensor; remove model.output ({output!r})")
    raise ModelError(
        f"the model's forward returns {type(out).__name__}; set model.output to the key or index of the logits"
    )


def is_model_output(out) -> bool:
    """A Hugging Face ``ModelOutput``-like object: keys() and item access."""
    return hasattr(out, "keys") and hasattr(out, "__getitem__") and not isinstance(out, torch.Tensor)
