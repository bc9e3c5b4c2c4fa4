"""Train the small CIFAR-10 vision transformer of ``config/models/cifar10_vit.json`` on the CPU.

    PYTHONPATH=src python scripts/train_vit.py --minutes 8 --threads 2

Reads ``../shared/assets/images/cifar10-train`` (decoded once into ``~/.cache/actlas/cifar10-*.npz``),
trains ``actlas.archs.vit`` (patch 4 on 32 px: an 8 x 8 grid of patch tokens after one CLS
token) with AdamW, a warm-up + cosine learning rate over a fixed wall-time budget, random crops
and flips,
then reports top-1 on all 10,000 photos of ``cifar10-test`` and writes the weights as safetensors
(``config/models/cifar10_vit.safetensors``, float32) with the measured accuracy in the card.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets" / "images"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
ARCH = {"image_size": 32, "patch": 4, "dim": 64, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "num_classes": 10}


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 photos and (N,) labels of ``cifar10-<split>``, cached as npz."""
    cache = Path.home() / ".cache" / "actlas" / f"cifar10-{split}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["x"], data["y"]
    from PIL import Image

    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((ASSETS / f"cifar10-{split}" / name).iterdir()):
            xs.append(np.asarray(Image.open(path).convert("RGB")))
            ys.append(label)
    x, y = np.stack(xs), np.array(ys, dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, y=y)
    return x, y


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 32, 32, 3) -> float (B, 3, 32, 32), normalised."""
    x = x.permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4 px of reflected padding and a horizontal flip, per image."""
    b = len(x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2, b), generator=gen)
    out = torch.stack([padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(b)])
    flip = torch.rand(b, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def evaluate(model, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(x), 500):
            logits = model(normalise(torch.from_numpy(x[lo : lo + 500])))
            correct += int((logits.argmax(1) == torch.from_numpy(y[lo : lo + 500])).sum())
    model.train()
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "config" / "models" / "cifar10_vit.safetensors"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from actlas.models.archs import vit

    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    model = vit(**ARCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    # one-cycle schedule over the time budget: warm-up for the first 5%, then cosine to zero
    budget, start, step, done = args.minutes * 60, time.perf_counter(), 0, False
    while not done:
        order = torch.randperm(len(xtr), generator=gen)
        for lo in range(0, len(order) - args.batch_size + 1, args.batch_size):
            frac = (time.perf_counter() - start) / budget
            if frac >= 1:
                done = True
                break
            lr = args.lr * (frac / 0.05 if frac < 0.05 else 0.5 * (1 + math.cos(math.pi * (frac - 0.05) / 0.95)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[lo : lo + args.batch_size].numpy()
            x = augment(normalise(torch.from_numpy(xtr[idx])), gen)
            loss = F.cross_entropy(model(x), torch.from_numpy(ytr[idx]), label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 200 == 0:
                print(
                    f"step {step} epoch {step * args.batch_size / len(xtr):.2f} loss {loss.item():.3f} "
                    f"lr {lr:.5f} {time.perf_counter() - start:.0f}s",
                    flush=True,
                )
    seconds = time.perf_counter() - start
    acc = evaluate(model, xte, yte)
    print(
        f"trained {step} steps ({step * args.batch_size / len(xtr):.2f} epochs) in {seconds:.0f}s; "
        f"top-1 on cifar10-test: {acc:.4f}",
        flush=True,
    )
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
    print(json.dumps({"out": args.out, "top1": acc, "steps": step, "seconds": round(seconds)}))


if __name__ == "__main__":
    main()
