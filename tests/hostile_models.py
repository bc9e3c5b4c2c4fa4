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


# --------------------------------------------------------------------------- model shapes (issue 31, models)


class ShapeNet(nn.Module):
    """TinyNet's layers with one model shape that could give a wrong atlas, as ``how`` says:

    - ``shared``: ``block`` (a conv) runs twice in one forward, so its activation is ambiguous;
    - ``tuple_layer``: ``pair`` returns a namedtuple (map, aux), ``mapping`` a dict {"out": map};
    - ``output_tuple``, ``output_dict``, ``output_nologits``, ``output_modeloutput``, ``output_map``: the forward
      returns (logits, features), {"logits", "features"}, {"out"}, a transformers ``ModelOutput``, or a map
      (B, K, H, W) instead of logits (B, K);
    - ``grey``: the first conv takes one channel;
    - ``seq_first``: ``seq`` is a sequence-first transformer layer, its output (T, B, C);
    - ``noisy``: dropout always on (``F.dropout(training=True)``), so two forwards of one image differ;
    - ``pooled_tokens``: ``pooled`` gives (B, C), ``tokens`` a class token and a 4 x 4 grid of tokens (B, 17, C)
      whose class token is large (it must never be read as a position);
    - ``fine``: nothing odd.
    """

    def __init__(self, how: str = "fine", classes: int = 10):
        super().__init__()
        torch.manual_seed(0)
        self.how = how
        self.stem = nn.Conv2d(1 if how == "grey" else 3, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 3, padding=1)
        self.pair = PairOut()
        self.mapping = MapOut()
        self.pooled = nn.Identity()
        self.tokens = nn.Identity()
        self.fc = nn.Linear(8, classes)
        self.seq = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)  # sequence-first: (T, B, C)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(self.block(h))
        if self.how == "shared":
            h = torch.relu(self.block(h))
        if self.how == "tuple_layer":
            h = self.pair(h).map + self.mapping(h)["out"]
        if self.how == "pooled_tokens":
            grid = nn.functional.adaptive_avg_pool2d(h, 4).flatten(2).transpose(1, 2)  # (B, 16, C)
            cls = 100 + grid.mean(1, keepdim=True)
            t = self.tokens(torch.cat([cls, grid], 1))  # (B, 17, C)
            feats = self.pooled(t[:, 1:].mean(1))  # (B, C)
        elif self.how == "seq_first":
            feats = self.seq(h.flatten(2).permute(2, 0, 1)).mean(0)  # tokens (T, B, C) -> (B, C)
        else:
            feats = h.mean((2, 3))
        if self.how == "noisy":
            feats = nn.functional.dropout(feats, 0.5, training=True)  # always on, in eval mode too
        logits = self.fc(feats)
        if self.how == "output_tuple":
            return logits, feats
        if self.how == "output_dict":
            return {"features": feats, "logits": logits}
        if self.how == "output_nologits":
            return {"out": logits}
        if self.how == "output_modeloutput":
            from transformers.modeling_outputs import ImageClassifierOutput

            return ImageClassifierOutput(logits=logits)
        if self.how == "output_map":
            return logits[:, :, None, None].expand(-1, -1, 2, 2)
        return logits


class PairOut(nn.Module):
    """Returns a namedtuple (map, aux): a layer whose output is a tuple."""

    def forward(self, h):
        from collections import namedtuple

        return namedtuple("Pair", "map aux")(h * 2, h.mean())


class MapOut(nn.Module):
    """Returns a dict {"out": map}: a layer whose output is a dict."""

    def forward(self, h):
        return {"out": h + 1}


def shape_net(how: str = "fine", classes: int = 10) -> nn.Module:
    return ShapeNet(how, classes)


class TrainModeNet(nn.Module):
    """A net with Dropout and BatchNorm, returned in train mode (``stubborn``: its ``train`` keeps it training)."""

    def __init__(self, stubborn: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.stubborn = stubborn
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 10)

    def train(self, mode: bool = True):
        return super().train(True if self.stubborn else mode)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x))).mean((2, 3))))


def train_mode_net(stubborn: bool = False) -> nn.Module:
    return TrainModeNet(stubborn).train()
