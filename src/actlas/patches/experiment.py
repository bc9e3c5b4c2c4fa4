"""The patch experiment (Carter et al. 2019, "Activation Atlases", section "Patches"): paste a patch
into photos and measure how often the model's top-1 class flips to a target class, against controls.

- protocols: **static** (one corner and one size for every image) and **dynamic** (best of every
  corner x size per image); sizes are fractions of the network input side;
- controls on the same images with the same protocol: a uniform-noise patch and a same-size crop
  of a random photo (a fresh one per image, drawn under the seed);
- populations: the source-class photos the model classifies correctly; a seeded sample of every
  photo whose true label is not the target; and the photos whose top-5 at collection already
  holds the target without it being top-1: those a patch can plausibly tip over;
- rates with 95% Wilson intervals, mean target probability before and after;
- discovery: search candidate patches on one half of the photos, report the best on the other half.

Pure: tensors and arrays in, numbers out. The photos come from ``actlas.patches.photos``, the
report from ``actlas.patches.report``; the stage ``actlas.stages.patch`` reads and writes the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models.spec import ModelSpec
from ..settings import CORNERS
from .stats import DEFAULT_SIZES, STATIC, Trial, summarise

CONTIGUOUS = torch.contiguous_format

# Named streams of random numbers, each drawn from ``seed + offset`` (``seed_of``): the noise control,
# the random-crop control, the photo sample, the near-target additions, the held-out choice and its
# crop pool, the run's source photos searched, and the search/held-out halves.
SEED_OFFSETS = {
    "photos": 0,
    "halves": 0,
    "noise": 0,
    "random_crops": 1,
    "near_target": 2,
    "held_out": 3,
    "held_out_pool": 4,
    "search": 5,
}


def seed_of(stream: str, seed: int) -> int:
    """The seed of a named stream (``SEED_OFFSETS``) under the experiment's ``seed``."""
    return seed + SEED_OFFSETS[stream]


@dataclass
class Photos:
    """The evaluated photos: preprocessed pixels and what is known about them."""

    x: torch.Tensor  # (N, 3, H, W) in [0, 1]
    paths: list[str]
    label: np.ndarray  # (N,) true label (-1 unknown)
    source: np.ndarray  # (N,) bool: true label is the source class
    pool: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # photos for the random-crop control
    near: np.ndarray | None = None  # (N,) bool: the target is in the photo's top-5 at collection, not top-1
    extra: np.ndarray | None = None  # (N,) bool: added for the near population only (not in the random sample)

    def mask(self, name: str) -> np.ndarray:
        """``near`` or ``extra`` as a (N,) bool array (all False when not given)."""
        value = getattr(self, name)
        return np.zeros(len(self.x), bool) if value is None else np.asarray(value, bool)


def patch_side(size: float, hw: tuple[int, int]) -> int:
    """Patch side in pixels for a size given as a fraction of the input's shorter side (at least 1)."""
    if not 0 < size <= 1:
        raise ConfigError(f"patch size {size} must be a fraction of the input side in (0, 1], e.g. 0.3")
    return max(1, min(int(round(size * min(hw))), min(hw)))


def corner_offset(corner: str, side: int, hw: tuple[int, int]) -> tuple[int, int]:
    """Top-left (y, x) of a ``side`` x ``side`` patch flush with ``corner`` of an (H, W) image."""
    if corner not in CORNERS:
        raise ConfigError(f"unknown corner {corner!r}; use one of {', '.join(CORNERS)}")
    h, w = hw
    y = 0 if corner.startswith("top") else h - side
    x = 0 if corner.endswith("left") else w - side
    return y, x


def resize_patch(patch: torch.Tensor, side: int) -> torch.Tensor:
    """Patch (3, h, w) or (B, 3, h, w) in [0, 1] -> the same at side x side (bilinear, no antialias,
    so noise keeps its contrast)."""
    batched = patch.dim() == 4
    x = patch if batched else patch[None]
    if x.shape[-2:] != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)
    return x if batched else x[0]


def paste(images: torch.Tensor, patch: torch.Tensor, corner: str, size: float) -> torch.Tensor:
    """Paste a patch in a corner of every image.

    Parameters
    ----------
    images : (B, 3, H, W) float in [0, 1]
    patch : (3, h, w) one patch for all images, or (B, 3, h, w) one per image; resized to a square
        of side ``round(size * min(H, W))``, placed flush with the corner, never outside the image
    corner : one of ``CORNERS``
    size : fraction of the input side, (0, 1]

    Returns
    -------
    (B, 3, H, W): a copy with the patch pixels replaced.
    """
    hw = (images.shape[-2], images.shape[-1])
    side = patch_side(size, hw)
    y, x = corner_offset(corner, side, hw)
    out = images.clone()
    out[:, :, y : y + side, x : x + side] = resize_patch(patch.to(images.dtype), side)
    return out


def variants(images: torch.Tensor, patch: torch.Tensor, corners=CORNERS, sizes=DEFAULT_SIZES) -> torch.Tensor:
    """Every corner x size of a patch on every image: (B, 3, H, W) -> (B * n_corners * n_sizes, 3, H, W),
    ordered image-major, then corner, then size (reshape to (B, n_corners, n_sizes))."""
    parts = [paste(images, patch, c, s) for c in corners for s in sizes]
    return torch.stack(parts, 1).flatten(0, 1)


@torch.no_grad()
def class_probs(
    model: nn.Module,
    spec: ModelSpec,
    x: torch.Tensor,
    classes: list[int],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = CONTIGUOUS,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of ``classes`` (n, len(classes)) and the top-1 class (n,) for images
    (n, 3, H, W) in [0, 1].

    ``memory_format``: the format the model runs in (``actlas.nn.fastpaths``); the inputs are put in it.
    """
    probs, top = [], []
    for lo in range(0, len(x), batch_size):
        xb = spec.normalize(x[lo : lo + batch_size].to(device)).contiguous(memory_format=memory_format)
        p = model(xb).float().softmax(1)
        probs.append(p[:, classes].cpu())
        top.append(p.argmax(1).cpu())
    if not probs:  # no images: nothing to score
        return np.zeros((0, len(classes)), np.float32), np.zeros(0, np.int64)
    return torch.cat(probs).numpy(), torch.cat(top).numpy()


def predict(
    model: nn.Module,
    spec: ModelSpec,
    x: torch.Tensor,
    target: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = CONTIGUOUS,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probability of ``target`` (n,) and the top-1 class (n,) for images (n, 3, H, W) in [0, 1]."""
    probs, top = class_probs(model, spec, x, [target], batch_size, device, memory_format)
    return probs[:, 0], top


def run_trial(
    model: nn.Module,
    spec: ModelSpec,
    images: torch.Tensor,
    patch: torch.Tensor,
    target: int,
    *,
    corners=CORNERS,
    sizes=DEFAULT_SIZES,
    batch_size: int = 64,
    device="cpu",
    memory_format: torch.memory_format = CONTIGUOUS,
) -> Trial:
    """Paste ``patch`` ((3, h, w) or (N, 3, h, w)) at every corner x size of images (N, 3, H, W), batched."""
    n, nc, ns = len(images), len(corners), len(sizes)
    per = max(1, batch_size // (nc * ns))
    probs, tops = [], []
    for lo in range(0, n, per):
        p = patch[lo : lo + per] if patch.dim() == 4 else patch
        x = variants(images[lo : lo + per], p, corners, sizes)
        pr, tp = predict(model, spec, x, target, batch_size, device, memory_format)
        probs.append(pr.reshape(-1, nc, ns))
        tops.append(tp.reshape(-1, nc, ns))
    return Trial(
        np.concatenate(probs) if probs else np.zeros((0, nc, ns)),
        np.concatenate(tops) if tops else np.zeros((0, nc, ns), dtype=np.int64),
        tuple(corners),
        tuple(sizes),
    )


def noise_patches(n: int, side: int, seed: int) -> torch.Tensor:
    """(n, 3, side, side) uniform noise in [0, 1], one patch per image."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, side, side, generator=g)


def random_crops(pool: torch.Tensor, n: int, side: int, seed: int) -> torch.Tensor:
    """(n, 3, side, side): per image a random square crop (a third to two thirds of the side) of a
    random photo of ``pool`` (M, 3, H, W), resized to ``side``."""
    rng = np.random.default_rng(seed)
    h, w = pool.shape[-2:]
    out = []
    for _ in range(n):
        img = pool[rng.integers(len(pool))]
        s = int(rng.integers(min(h, w) // 3, 2 * min(h, w) // 3 + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out.append(resize_patch(img[:, y : y + s, x : x + s], side))
    return torch.stack(out) if out else torch.zeros(0, 3, side, side)


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into a search half and a held-out half (sorted index arrays)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def evaluate_patch(
    model,
    spec,
    photos: Photos,
    name: str,
    patch: torch.Tensor,
    target: int,
    *,
    clean_prob: np.ndarray,
    clean_top: np.ndarray,
    corners=CORNERS,
    sizes=DEFAULT_SIZES,
    static=STATIC,
    seed: int = 0,
    batch_size: int = 64,
    device="cpu",
    memory_format: torch.memory_format = CONTIGUOUS,
    subset: np.ndarray | None = None,
    trials: dict | None = None,
) -> dict:
    """One patch and its two controls on the same photos and protocol -> report entry.

    Populations: ``source_correct`` (source-class photos classified as the source), ``not_target``
    (the source photos and the random sample, not classified as the target before pasting) and
    ``near_target`` (photos whose top-5 at collection holds the target, not top-1 before pasting).
    """
    idx = np.arange(len(photos.x)) if subset is None else subset
    x = photos.x[idx]
    side = patch_side(max(sizes), tuple(spec.input_size))
    patches = {
        "patch": patch,
        "noise": noise_patches(len(idx), side, seed_of("noise", seed)),
        "random_image": random_crops(
            photos.pool if len(photos.pool) else photos.x, len(idx), side, seed_of("random_crops", seed)
        ),
    }
    src_top = photos.label[idx]
    eligible = clean_top[idx] != target
    source_ok = photos.source[idx] & (clean_top[idx] == src_top) & eligible
    populations = (
        ("source_correct", source_ok),
        ("not_target", eligible & ~photos.mask("extra")[idx]),
        ("near_target", eligible & photos.mask("near")[idx]),
    )
    entry: dict = {"name": name, "populations": {}}
    for kind, p in patches.items():
        trial = run_trial(
            model,
            spec,
            x,
            p,
            target,
            corners=corners,
            sizes=sizes,
            batch_size=batch_size,
            device=device,
            memory_format=memory_format,
        )
        if trials is not None:
            trials[(name, kind)] = (idx, trial)
        for pop, keep in populations:
            entry["populations"].setdefault(pop, {})[kind] = summarise(trial, target, clean_prob[idx], keep, static)
    return entry


def score_candidates(
    model,
    spec,
    x: torch.Tensor,
    candidates: list[tuple[str, torch.Tensor]],
    target: int,
    *,
    sizes=DEFAULT_SIZES,
    batch_size: int = 64,
    device="cpu",
    memory_format: torch.memory_format = CONTIGUOUS,
) -> tuple[int, list[dict]]:
    """Score candidate patches on search photos x (n, 3, H, W) with the dynamic protocol at the largest
    size, every corner -> (best candidate index, scores): the flip rate to ``target``, ties broken
    by the mean best p(target)."""
    scores = []
    for name, patch in candidates:
        trial = run_trial(
            model,
            spec,
            x,
            patch,
            target,
            sizes=(max(sizes),),
            batch_size=batch_size,
            device=device,
            memory_format=memory_format,
        )
        hit = (trial.top == target).any((1, 2))
        scores.append(
            {
                "name": name,
                "search_rate": round(float(hit.mean()), 4) if len(hit) else 0.0,
                "search_prob": round(float(trial.prob.max((1, 2)).mean()), 4) if len(hit) else 0.0,
            }
        )
    best = max(range(len(scores)), key=lambda i: (scores[i]["search_rate"], scores[i]["search_prob"]))
    return best, scores


def discover(
    model,
    spec,
    photos: Photos,
    candidates: list[tuple[str, torch.Tensor]],
    target: int,
    *,
    clean_top: np.ndarray,
    sizes=DEFAULT_SIZES,
    seed: int = 0,
    batch_size: int = 64,
    device="cpu",
    memory_format: torch.memory_format = CONTIGUOUS,
) -> tuple[int, list[dict], np.ndarray, np.ndarray]:
    """Score candidates on a search half of the photos (``score_candidates``)
    -> (best candidate index, scores, search indices, held-out indices).

    Source-class photos are never searched on: they all go to the held-out half.
    """
    others = np.flatnonzero(~photos.source)
    search, held = split_halves(len(others), seed_of("halves", seed))
    search, held = others[search], np.sort(np.concatenate([others[held], np.flatnonzero(photos.source)]))
    search = search[clean_top[search] != target]
    best, scores = score_candidates(
        model,
        spec,
        photos.x[search],
        candidates,
        target,
        sizes=sizes,
        batch_size=batch_size,
        device=device,
        memory_format=memory_format,
    )
    return best, scores, search, held


def single_photo(
    model,
    spec,
    photo: torch.Tensor,
    candidates: list[tuple[str, torch.Tensor]],
    source: int,
    target: int,
    *,
    corners=CORNERS,
    sizes=DEFAULT_SIZES,
    batch_size: int = 64,
    device="cpu",
    memory_format: torch.memory_format = CONTIGUOUS,
) -> dict:
    """The article's single-photo demonstration: every candidate patch on one photo (3, H, W) at
    every corner x size, each at its best variant (highest p(target)).

    Returns {"before": {p_source, p_target, top}, "candidates": [{name, corner, size, p_source,
    p_target, top}, ...]} with candidates best first by p(target) after pasting.
    """
    pair = [source, target]
    p, top = class_probs(model, spec, photo[None], pair, batch_size, device, memory_format)
    before = {"p_source": round(float(p[0, 0]), 4), "p_target": round(float(p[0, 1]), 4), "top": int(top[0])}
    rows = []
    for name, patch in candidates:
        x = variants(photo[None], patch, corners, sizes)
        p, top = class_probs(model, spec, x, pair, batch_size, device, memory_format)
        b = int(np.argmax(p[:, 1]))
        rows.append(
            {
                "name": name,
                "corner": corners[b // len(sizes)],
                "size": sizes[b % len(sizes)],
                "p_source": round(float(p[b, 0]), 4),
                "p_target": round(float(p[b, 1]), 4),
                "top": int(top[b]),
            }
        )
    rows.sort(key=lambda r: -r["p_target"])
    return {"before": before, "candidates": rows}
