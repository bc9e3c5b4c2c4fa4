"""A small Vision Transformer trained here on the shared CIFAR-10 photos: the transformer row of
``bench_icons.py``, since no pretrained ViT weights are available offline.

torchvision's ``VisionTransformer`` (image 32, patch 4: 8 x 8 patch tokens and a class token,
4 blocks of width 96, 3 heads, MLP 192; 0.3 M parameters), trained from scratch on the 50,000
``cifar10-train`` photos (random crop with 4 px padding, horizontal flip; AdamW, one-cycle rate,
label smoothing 0.1). Weights and a model card go to ``~/.cache/actlas/bench/`` (or
``ACTLAS_BENCH_CACHE``) and are reused; the card's architecture is a code path, so the model block
``bench_icons.py`` passes grants ``trust_code``. Test accuracy on the 10,000 ``cifar10-test`` photos
is printed and written into the card.

Usage: .venv/bin/python benchmarks/vit_cifar.py [--epochs 6] [--threads 2]
Last line: ``seconds: X`` (training time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import ASSETS

CACHE = Path(os.environ.get("ACTLAS_BENCH_CACHE", Path.home() / ".cache" / "actlas" / "bench"))
CARD = CACHE / "vit_cifar10.json"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
KWARGS = {
    "image_size": 32,
    "patch_size": 4,
    "num_layers": 4,
    "num_heads": 3,
    "hidden_dim": 96,
    "mlp_dim": 192,
    "num_classes": 10,
}


def load_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every ``CLASS/*.jpg`` of a CIFAR-10 folder -> uint8 images (N, 32, 32, 3), labels (N,)."""
    from PIL import Image

    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / name).iterdir()):
            with Image.open(path) as im:
                xs.append(np.asarray(im.convert("RGB").resize((32, 32))))
            ys.append(label)
    return np.stack(xs), np.array(ys)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 32, 32, 3) -> normalised float (B, 3, 32, 32)."""
    x = x.permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32 px crop of the 4 px zero-padded image and a random horizontal flip: (B, 3, 32, 32)."""
    b = len(x)
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (b,), generator=gen), torch.randint(0, 9, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(32))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(32))[:, None, None, :]
    out = padded[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
    flip = torch.rand(b, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy on uint8 images x (N, 32, 32, 3) with labels y (N,)."""
    model.eval()
    hits = 0
    with torch.no_grad():
        for lo in range(0, len(x), 500):
            hits += int(
                (model(normalise(torch.from_numpy(x[lo : lo + 500]))).argmax(1).numpy() == y[lo : lo + 500]).sum()
            )
    return hits / len(x)


def fit(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    epochs: int,
    batch: int,
    lr: float,
    name: str = "",
    channels_last: bool = False,
) -> float:
    """Train ``model`` in place on (n, 32, 32, 3) uint8 photos with AdamW, one-cycle and label smoothing,
    augmented and normalised; the seconds it took. Shared by every model these benchmarks train."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * (len(x_train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(0)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(len(xt) // batch):
            idx = order[i * batch : (i + 1) * batch]
            x = augment(normalise(xt[idx]), gen).contiguous(memory_format=layout)
            loss = loss_fn(model(x), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        print(
            f"{name + ' ' if name else ''}epoch {epoch + 1}/{epochs}: loss {total / (len(xt) // batch):.3f}, "
            f"{time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return time.perf_counter() - start


def train(epochs: int, batch: int = 256, lr: float = 2e-3) -> tuple[nn.Module, float, float]:
    """Train from scratch -> (model, test accuracy, seconds)."""
    from torchvision.models.vision_transformer import VisionTransformer

    x_train, y_train = load_folder(ASSETS / "images" / "cifar10-train")
    x_test, y_test = load_folder(ASSETS / "images" / "cifar10-test")
    torch.manual_seed(0)
    model = VisionTransformer(**KWARGS)
    seconds = fit(model, x_train, y_train, epochs, batch, lr)
    return model.eval(), accuracy(model, x_test, y_test), seconds


def card(epochs: int = 6) -> dict:
    """The model block of the trained ViT (trained now if its card is not cached)."""
    if not CARD.exists():
        from safetensors.torch import save_file

        model, acc, seconds = train(epochs)
        CACHE.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(CACHE / "vit_cifar10.safetensors"))
        CARD.write_text(
            json.dumps(
                {
                    "name": "vit_cifar10_bench",
                    "architecture": "torchvision.models.vision_transformer:VisionTransformer",
                    "kwargs": KWARGS,
                    "weights": "vit_cifar10.safetensors",
                    "input_size": [32, 32],
                    "resize": 0,
                    "mean": list(MEAN),
                    "std": list(STD),
                    "labels": CLASSES,
                    "source": f"benchmarks/vit_cifar.py: trained here, {epochs} epochs on cifar10-train in "
                    f"{seconds:.0f} s; {acc:.1%} top-1 on cifar10-test",
                },
                indent=1,
            )
        )
    return {"source": str(CARD), "trust_code": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if CARD.exists():
        CARD.unlink()
    start = time.perf_counter()
    card(a.epochs)
    print(json.loads(CARD.read_text())["source"])
    print(f"seconds: {time.perf_counter() - start:.0f}")


if __name__ == "__main__":
    main()
