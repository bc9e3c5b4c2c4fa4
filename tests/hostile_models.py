"""Small real networks that break in one way each, for tests/test_hostile.py (issue 31).

Each is TinyNet (tests/tiny_models.py) with one layer or output made pathological: NaN logits, NaN
activations at a layer whose logits stay finite, a NaN gradient at a layer, a constant layer, a layer
the logits do not depend on, two classes only.
"""

from __future__ import annotations

import torch
from tiny_models import TinyNet
from torch import nn


class BrokenNet(nn.Module):
    """TinyNet with a ``probe`` layer (Identity) broken as ``how`` says:

    - ``logits``: the logits are NaN;
    - ``activation``: ``probe`` outputs NaN, the logits stay finite;
    - ``gradient``: ``probe`` is finite (zero) but its gradient from the logits is NaN;
    - ``constant``: ``probe`` outputs zeros (and the logits depend on it);
    - ``unused``: the logits do not depend on ``probe``;
    - ``fine``: nothing is broken.
    """

    def __init__(self, how: str = "fine", classes: int = 10):
        super().__init__()
        self.net = TinyNet(classes=classes)
        self.probe = nn.Identity()
        self.how = how

    def forward(self, x):
        h = self.net.features(x)
        logits = self.net.fc(self.net.pool(h).flatten(1))
        if self.how == "logits":
            return self.net.fc(self.net.pool(self.probe(h)).flatten(1)) * float("nan")
        if self.how == "activation":
            return logits + 0 * self.probe(h * float("nan")).nan_to_num().sum((1, 2, 3))[:, None]
        if self.how == "gradient":
            return logits + 0 * torch.sqrt(self.probe(h - h)).sum((1, 2, 3))[:, None]  # d sqrt at 0 is inf
        if self.how == "constant":
            return self.net.fc(self.net.pool(h + self.probe(h * 0)).flatten(1))
        if self.how == "unused":
            self.probe(h)
            return logits
        return self.net.fc(self.net.pool(self.probe(h)).flatten(1))


def broken_net(how: str = "fine", classes: int = 10) -> nn.Module:
    return BrokenNet(how, classes).eval()
