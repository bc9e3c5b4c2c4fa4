"""Two small convolutional networks trained here on the shared CIFAR-10 photos: rows of
``bench_icons.py`` from families the render defaults were never tuned on (issue 29, item 4).

- ``vgg``: a plain VGG-style chain, no BatchNorm and no shortcut: 3x3 convolutions with bias and
  ReLU, two per stage, 32, 64, 128 and 256 channels, 2 x 2 max-pooling after each of the first three
  stages (32, 16, 8, then 4 px maps), global average pooling, a linear classifier. 1.17 M parameters.
  ``features.8`` is the second stage's last ReLU (64 x 16 x 16), ``features.18`` the last one
  (256 x 4 x 4).
- ``mobilenet``: a depthwise-separable chain like MobileNetV1 (Howard et al. 2017): a 3x3 stem
  (16 channels), then blocks of a 3x3 depthwise convolution, BN, ReLU, a 1x1 pointwise
  convolution, BN, ReLU; widths 32, 64 (stride 2), 64, 128 (stride 2), 128, 256 (stride 2), 256,
  512; 0.28 M parameters. ``features.N`` is block N's output, post-ReLU: ``features.3`` 64 x 16 x 16,
  ``features.8`` 512 x 4 x 4 (the wide last layer, as MobileNetV1's 1,024-channel one at 7 x 7).

Both trained from scratch on the 50,000 ``cifar10-train`` photos (random crop with 4 px padding and
horizontal flip, as ``vit_cifar.py``; AdamW, one-cycle rate, label smoothing 0.1), channels_last.
Weights and a model card go to ``~/.cache/actlas/bench/`` (or ``ACTLAS_BENCH_CACHE``) and are
reused; the card's architecture is this file's builder (``cnn_cifar:vgg`` or
``cnn_cifar:mobilenet``, importable with ``benchmarks/`` on the path, as ``bench_icons.py`` puts
it), so the model block grants ``trust_code``. Test accuracy on the 10,000 ``cifar10-test``
photos is printed and written into the card.

Usage: .venv/bin/python benchmarks/cnn_cifar.py [--models vgg,mobilenet] [--epochs 4] [--threads 2]
Last line: ``seconds: X`` (training time, all models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from vit_cifar import ASSETS, CACHE, CLASSES, MEAN, STD, accuracy, fit, load_folder

VGG_WIDTHS = (32, 64, 128, 256)
MOBILENET_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 1))
# name -> (builder, kwargs, bench_icons layers: an early and the last post-ReLU layer)
MODELS = {
    "vgg": ("vgg", {"widths": list(VGG_WIDTHS), "num_classes": 10}, ["features.8", "features.18"]),
    "mobilenet": (
        "mobilenet",
        {"blocks": [list(b) for b in MOBILENET_BLOCKS], "stem": 16, "num_classes": 10},
        ["features.3", "features.8"],
    ),
}


class Classifier(nn.Module):
    """``features`` (a chain of modules), then global average pooling and a linear ``head``:
    (B, 3, H, W) -> logits (B, num_classes)."""

    def __init__(self, features: nn.Sequential, width: int, num_classes: int):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def vgg(widths: tuple[int, ...] = VGG_WIDTHS, num_classes: int = 10) -> Classifier:
    """A plain VGG-style chain without BatchNorm: per width, two 3x3 convolutions (bias) each with a
    ReLU, then 2 x 2 max-pooling after every stage but the last. Kaiming-normal initialisation."""
    layers: list[nn.Module] = []
    c = 3
    for i, w in enumerate(widths):
        for _ in range(2):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
            c = w
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
    for m in layers:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return Classifier(nn.Sequential(*layers), c, num_classes)


def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNetV1's block: 3x3 depthwise convolution, BN, ReLU, 1x1 pointwise convolution, BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


def mobilenet(
    blocks: tuple[tuple[int, int], ...] = MOBILENET_BLOCKS, stem: int = 16, num_classes: int = 10
) -> Classifier:
    """A MobileNetV1-like chain: a 3x3 stem (conv, BN, ReLU), then a ``separable`` block per
    (width, stride) of ``blocks``."""
    layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())]
    c = stem
    for w, s in blocks:
        layers.append(separable(c, w, s))
        c = w
    return Classifier(nn.Sequential(*layers), c, num_classes)


def train(name: str, data: tuple, epochs: int, batch: int = 128, lr: float = 2e-3) -> tuple[nn.Module, float, float]:
    """Train MODELS[name] from scratch on data (x_train, y_train, x_test, y_test) -> (model, test accuracy, seconds)."""
    builder, kwargs, _ = MODELS[name]
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(0)
    model = globals()[builder](**kwargs).to(memory_format=torch.channels_last)
    seconds = fit(model, x_train, y_train, epochs, batch, lr, name=name, channels_last=True)
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model, accuracy(model, x_test, y_test), seconds


def card_path(name: str) -> Path:
    return CACHE / f"{name}_cifar10.json"


def card(name: str, epochs: int = 4, data: tuple | None = None) -> dict:
    """The model block of MODELS[name], trained (on ``data``, loaded when None) if its card is not cached."""
    path = card_path(name)
    if not path.exists():
        from safetensors.torch import save_file

        if data is None:
            data = load_folder(ASSETS / "images" / "cifar10-train") + load_folder(ASSETS / "images" / "cifar10-test")
        model, acc, seconds = train(name, data, epochs)
        builder, kwargs, _ = MODELS[name]
        CACHE.mkdir(parents=True, exist_ok=True)
        weights = f"{name}_cifar10.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(CACHE / weights))
        path.write_text(
            json.dumps(
                {
                    "name": f"{name}_cifar10_bench",
                    "architecture": f"cnn_cifar:{builder}",
                    "kwargs": kwargs,
                    "weights": weights,
                    "input_size": [32, 32],
                    "resize": 0,
                    "mean": list(MEAN),
                    "std": list(STD),
                    "labels": CLASSES,
                    "source": f"benchmarks/cnn_cifar.py: trained here, {epochs} epochs on cifar10-train "
                    f"in {seconds:.0f} s "
                    f"({torch.get_num_threads()} threads); {acc:.1%} top-1 on cifar10-test",
                },
                indent=1,
            )
        )
    return {"source": str(path), "trust_code": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vgg,mobilenet", help="comma-separated names of MODELS")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = a.models.split(",")
    data = load_folder(ASSETS / "images" / "cifar10-train") + load_folder(ASSETS / "images" / "cifar10-test")
    start = time.perf_counter()
    for name in names:
        if card_path(name).exists():
            card_path(name).unlink()
        card(name, a.epochs, data)
        print(f"{name}: {json.loads(card_path(name).read_text())['source']}")
    print(f"seconds: {time.perf_counter() - start:.0f}")


if __name__ == "__main__":
    main()
