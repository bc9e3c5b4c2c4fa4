"""TensorFlow "SAME" padding for models trained in TensorFlow (``model.padding: tf_same``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv2dSame(nn.Conv2d):
    """A Conv2d with TensorFlow "SAME" padding: out = ceil(in / stride), the extra pixel after.

    Shares ``nn.Conv2d``'s parameters and state-dict keys, so weights load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = same_padding(x.shape[-2:], self)
        if left == right and top == bottom:  # an even split (stride 1): the convolution pads the same zeros itself
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return self._conv_forward(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)


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
