"""Random weights, asked for explicitly (``weights: random``): seeded, and made usable as a trained network is.

``weights: random`` (or ``random:SEED``; the workflow writes the run's seed there, so the manifest
records it) builds the architecture under ``torch.manual_seed(SEED)`` (default 0) without touching
the caller's random state: every stage that loads the model gets the same network. Two things make
a freshly initialised network unlike a trained one in ways that break an atlas, and ``make_usable``
undoes them:

- zero-initialised weights: torchvision's ViT classifier (every logit 0, so every attribution 0),
  timm's ResNets' last BatchNorm of each block (``zero_init_last``: dead residual branches). A Linear
  or convolution weight that is all zeros is drawn like the others (normal, std 0.02); a
  normalisation's scale that is all zeros becomes ones;
- BatchNorm's running statistics (mean 0, variance 1): in eval mode a deep network's activations
  shrink geometrically (a random torchvision efficientnet_b0 reaches 4e-11 at ``features.6``, below
  float16's range where collect stores them). They are set from a batch of standard-normal
  (already normalised) images at the input size, so every layer keeps a unit scale.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

CALIBRATION_IMAGES = 8


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)``, the caller's CPU random state restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def redraw_zeros(model: nn.Module, seed: int) -> int:
    """Draw every all-zero Linear or convolution weight (normal, std 0.02) and set every all-zero normalisation
    scale to ones, in place. Returns how many tensors changed."""
    generator = torch.Generator().manual_seed(seed + 1)
    changed = 0
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.numel() == 0 or weight.any():
                continue
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.02)
                changed += 1
            elif isinstance(module, NORMS):
                weight.fill_(1.0)
                changed += 1
    return changed


def calibrate_batchnorm(model: nn.Module, input_size: tuple[int, int], seed: int) -> int:
    """Set every BatchNorm's running statistics to those of ``CALIBRATION_IMAGES`` standard-normal images of
    ``input_size`` (H, W), in place; the model is left in eval mode. Returns the number of BatchNorms."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch sets the statistics
    x = torch.randn(CALIBRATION_IMAGES, 3, *input_size, generator=torch.Generator().manual_seed(seed))
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)


def make_usable(model: nn.Module, input_size: tuple[int, int], seed: int) -> None:
    """A randomly initialised ``model`` made usable for an atlas, in place (see the module)."""
    redraw_zeros(model, seed)
    calibrate_batchnorm(model, input_size, seed)
