"""patches: paste a patch (an atlas icon, an image crop, a rendered direction) into photos and
measure how often the model's top-1 class flips to a target class, against control patches.

The article's experiment (Carter et al. 2019, "Activation Atlases", section "Patches"): a
baseball-like icon from the great white shark class atlas, pasted in a corner of grey whale
photos, turns many into "great white shark". Here:

- protocols: **static** (one corner and one size for every image) and **dynamic** (best of every
  corner x size per image); sizes are fractions of the network input side;
- controls on the same images with the same protocol: a uniform-noise patch and a same-size crop
  of a random photo (a fresh one per image, drawn under ``seed``);
- populations: the source-class photos the model classifies correctly; a deterministic sample
  of every photo whose true label is not the target (the shared photos hold only 1-4 images per
  class, too few for per-class statistics); and the photos whose top-5 at collection already
  holds the target without it being top-1 (read from the run's stores): those a patch can
  plausibly tip over;
- rates with 95% Wilson intervals, mean target probability before and after;
- discovery: search candidate icons on one half of the photos, report the best on the other half.

Core functions take tensors and return arrays; ``patch_experiment`` reads and writes a run
directory (``RUN/patches/NAME/report.{md,json}`` and figures).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import ModelSpec

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
DEFAULT_SIZES = (0.3, 0.45)
STATIC = ("bottom-right", 0.45)

# --------------------------------------------------------------------------- pure pieces


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval (low, high) for k successes out of n (n = 0 -> (0, 1))."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def patch_side(size: float, hw: tuple[int, int]) -> int:
    """Patch side in pixels for a size given as a fraction of the input's shorter side (at least 1)."""
    if not 0 < size <= 1:
        raise ValueError(f"patch size {size} must be a fraction of the input side in (0, 1], e.g. 0.3")
    return max(1, min(int(round(size * min(hw))), min(hw)))


def corner_offset(corner: str, side: int, hw: tuple[int, int]) -> tuple[int, int]:
    """Top-left (y, x) of a ``side`` x ``side`` patch flush with ``corner`` of an (H, W) image."""
    if corner not in CORNERS:
        raise ValueError(f"unknown corner {corner!r}; use one of {', '.join(CORNERS)}")
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
def predict(model: nn.Module, spec: ModelSpec, x: torch.Tensor, target: int, batch_size: int = 64,
            device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Softmax probability of ``target`` (n,) and the top-1 class (n,) for images (n, 3, H, W) in [0, 1]."""
    probs, top = [], []
    for lo in range(0, len(x), batch_size):
        xb = spec.normalize(x[lo : lo + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        p = model(xb).float().softmax(1)
        probs.append(p[:, target].cpu())
        top.append(p.argmax(1).cpu())
    return torch.cat(probs).numpy(), torch.cat(top).numpy()


@dataclass
class Trial:
    """Outcome of one patch on N images under every corner x size."""

    prob: np.ndarray  # (N, n_corners, n_sizes) target probability after pasting
    top: np.ndarray  # (N, n_corners, n_sizes) top-1 class after pasting
    corners: tuple[str, ...] = CORNERS
    sizes: tuple[float, ...] = DEFAULT_SIZES


def run_trial(model: nn.Module, spec: ModelSpec, images: torch.Tensor, patch: torch.Tensor, target: int, *,
              corners=CORNERS, sizes=DEFAULT_SIZES, batch_size: int = 64, device="cpu") -> Trial:
    """Paste ``patch`` ((3, h, w) or (N, 3, h, w)) at every corner x size of images (N, 3, H, W), batched."""
    n, nc, ns = len(images), len(corners), len(sizes)
    per = max(1, batch_size // (nc * ns))
    probs, tops = [], []
    for lo in range(0, n, per):
        p = patch[lo : lo + per] if patch.dim() == 4 else patch
        x = variants(images[lo : lo + per], p, corners, sizes)
        pr, tp = predict(model, spec, x, target, batch_size, device)
        probs.append(pr.reshape(-1, nc, ns))
        tops.append(tp.reshape(-1, nc, ns))
    return Trial(np.concatenate(probs) if probs else np.zeros((0, nc, ns)),
                 np.concatenate(tops) if tops else np.zeros((0, nc, ns), dtype=np.int64), tuple(corners), tuple(sizes))


def rate(success: np.ndarray) -> dict:
    """Success count, rate and 95% Wilson interval of a boolean array (n,)."""
    k, n = int(np.sum(success)), int(len(success))
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci": [round(lo, 4), round(hi, 4)]}


def summarise(trial: Trial, target: int, before: np.ndarray, keep: np.ndarray,
              static: tuple[str, float] = STATIC) -> dict:
    """Rates and probabilities of one trial over the images selected by ``keep`` (N,) bool.

    ``before`` (N,) is the clean target probability. Static: the (corner, size) ``static`` for all
    images; dynamic: success if any corner x size makes the target the top-1 class, probability
    the best over them.
    """
    ci, si = trial.corners.index(static[0]), trial.sizes.index(static[1])
    hit = trial.top[keep] == target  # (n, nc, ns)
    prob = trial.prob[keep]
    return {
        "n": int(keep.sum()),
        "static": rate(hit[:, ci, si]),
        "dynamic": rate(hit.any((1, 2))),
        "prob_before": round(float(before[keep].mean()), 4) if keep.any() else None,
        "prob_after_static": round(float(prob[:, ci, si].mean()), 4) if keep.any() else None,
        "prob_after_dynamic": round(float(prob.max((1, 2)).mean()), 4) if keep.any() else None,
        "best_variant_counts": {f"{trial.corners[c]}@{trial.sizes[s]}": int(hit[:, c, s].sum())
                                for c in range(len(trial.corners)) for s in range(len(trial.sizes))},
    }


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


# --------------------------------------------------------------------------- patch sources


def slug(text: str) -> str:
    """Folder-safe lower-case name: "great white shark" -> "great-white-shark"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def image_tensor(image) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float in [0, 1] (no resizing)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_patch(spec_text: str, run_dir: str | Path, layer: str, *, model: nn.Module | None = None,
               spec: ModelSpec | None = None, params=None, device="cpu") -> tuple[str, torch.Tensor]:
    """Parse a patch specification -> (name, patch (3, h, w) in [0, 1]).

    - ``cell:I,J`` an icon of the run's main atlas (largest grid of ``layer``);
      ``cell:DIR:I,J`` an icon of ``RUN/LAYER/DIR`` (``grid-16``, ``class-great-white-shark``, ...)
    - ``image:PATH`` a whole image, ``image:PATH:X0,Y0,X1,Y1`` a crop of it (pixels of the original)
    - ``direction:PATH.npy`` an icon rendered now for a direction (C,) with the run's whitening
    """
    from PIL import Image

    from . import images as imgs

    kind, _, rest = spec_text.partition(":")
    ldir = Path(run_dir) / layer
    if kind == "cell":
        parts = rest.split(":")
        if len(parts) == 1:
            grids = sorted(ldir.glob("grid-*/icons"), key=lambda p: int(p.parent.name.split("-")[1]))
            if not grids:
                raise FileNotFoundError(f"no atlas icons under {ldir}: run the workflow (atlas) first")
            folder, ij = grids[-1].parent, parts[0]
        else:
            folder, ij = ldir / parts[0], parts[1]
        m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", ij)
        if not m:
            raise ValueError(f"bad cell {spec_text!r}: write cell:I,J or cell:grid-16:I,J (column, row)")
        path = folder / "icons" / f"{m[1]}_{m[2]}.png"
        if not path.exists():
            have = sorted(p.stem.replace("_", ",") for p in (folder / "icons").glob("*_*.png"))[:20]
            raise FileNotFoundError(f"no icon {path}; cells with icons there: {', '.join(have) or 'none'}")
        return f"{folder.name}:{m[1]},{m[2]}", image_tensor(Image.open(path))
    if kind == "image":
        m = re.fullmatch(r"(.+?)(?::(\d+),(\d+),(\d+),(\d+))?", rest)
        path = m[1]
        image, reason = imgs.decode(path)
        if image is None:
            raise FileNotFoundError(f"patch image {path}: {reason}")
        if m[2]:
            box = tuple(int(m[k]) for k in range(2, 6))
            if not (box[0] < box[2] <= image.width and box[1] < box[3] <= image.height):
                raise ValueError(f"box {box} is not inside {path} ({image.width}x{image.height}): x0<x1<=W, y0<y1<=H")
            image = image.crop(box)
        return f"image:{Path(path).name}" + (f":{m[2]},{m[3]},{m[4]},{m[5]}" if m[2] else ""), image_tensor(image)
    if kind == "direction":
        from .render import RenderParams
        from .render import render as render_icons

        if model is None or spec is None:
            raise ValueError("a direction patch needs the model: pass model= and spec=")
        direction = np.load(rest).astype(np.float32).reshape(1, -1)
        whitening = np.load(ldir / "whiten.npy") if (ldir / "whiten.npy").exists() else None
        out = render_icons(model, spec, layer, direction, whitening=whitening, params=params or RenderParams(),
                           device=device, progress=False)
        return f"direction:{Path(rest).name}", torch.from_numpy(out["icon"][0]).permute(2, 0, 1).float() / 255.0
    raise ValueError(f"unknown patch {spec_text!r}: use cell:I,J, cell:DIR:I,J, image:PATH[:X0,Y0,X1,Y1] "
                     "or direction:PATH.npy")


def candidate_icons(run_dir: str | Path, layer: str, target: int, target_name: str, *, limit: int = 12) -> list[str]:
    """Patch specs worth trying for a target, best first by the cell's mean attribution to the target:
    every icon of its class atlas, and icons labelled with the target in the main atlases and in
    comparisons (``RUN/LAYER/grid-*``, ``compare-*``)."""
    ldir = Path(run_dir) / layer
    scored: list[tuple[float, str]] = []
    folders = [ldir / f"class-{slug(target_name)}"] + sorted(ldir.glob("grid-*")) + sorted(ldir.glob("compare-*"))
    for folder in folders:
        meta = folder / "atlas.json"
        if not meta.exists():
            continue
        for cell in json.loads(meta.read_text())["cells"]:
            value = float(cell["attribution"].get(str(target), 0.0))
            if folder.name.startswith("class-") or cell["label_index"] == target:
                scored.append((value, f"cell:{folder.name}:{cell['i']},{cell['j']}"))
    scored.sort(key=lambda t: -t[0])
    return [s for _, s in scored[:limit]]


# --------------------------------------------------------------------------- the experiment


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


def load_photos(rows: list[tuple[str, int]], spec: ModelSpec) -> tuple[torch.Tensor, list[str], np.ndarray]:
    """Decode and preprocess (resize + centre crop) photos; undecodable ones are dropped."""
    from . import images as imgs

    xs, paths, labels = [], [], []
    for path, label in rows:
        image, _ = imgs.decode(path)
        if image is not None:
            xs.append(spec.transform(image))
            paths.append(path)
            labels.append(label)
    x = torch.stack(xs) if xs else torch.zeros(0, 3, *spec.input_size)
    return x, paths, np.array(labels, dtype=np.int64)


def near_target_mask(run_dir: str | Path, n_rows: int, target: int) -> np.ndarray:
    """(n_rows,) bool over the run's photos (shard-list order): the target is in the photo's top-5
    predictions stored at collection (``images/pred``) but is not its top-1. All False when the
    run's stores are missing or incomplete."""
    from . import store
    from .run import shard_stores

    stores = shard_stores(run_dir)
    try:
        pred, ok = store.read(stores, "images/pred"), store.read(stores, "images/ok")
    except (KeyError, FileNotFoundError, ValueError):
        return np.zeros(n_rows, bool)
    if not stores or len(pred) != n_rows:
        return np.zeros(n_rows, bool)
    return ok.astype(bool) & (pred[:, 1:] == target).any(1) & (pred[:, 0] != target)


def choose_photos(rows: list[tuple[str, int]], source: int | None, target: int, max_images: int, seed: int,
                  n_pool: int = 32) -> tuple[list, list, list]:
    """Split a run's photos (path, label) into source-class rows, a seeded sample of ``max_images``
    rows whose label is not the target (source-class rows excluded: they are reported on their own),
    and ``n_pool`` other rows for the random-crop control. Returns (source_rows, sample_rows, pool_rows)."""
    src = [r for r in rows if source is not None and r[1] == source]
    other = [r for r in rows if r[1] != target and (source is None or r[1] != source)]
    order = np.random.default_rng(seed).permutation(len(other))
    sample = [other[i] for i in sorted(order[:max_images])]
    pool = [other[i] for i in order[max_images : max_images + n_pool]]
    return src, sample, pool


def evaluate_patch(model, spec, photos: Photos, name: str, patch: torch.Tensor, target: int, *,
                   clean_prob: np.ndarray, clean_top: np.ndarray, corners=CORNERS, sizes=DEFAULT_SIZES,
                   static=STATIC, seed: int = 0, batch_size: int = 64, device="cpu", subset: np.ndarray | None = None,
                   trials: dict | None = None) -> dict:
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
        "noise": noise_patches(len(idx), side, seed),
        "random_image": random_crops(photos.pool if len(photos.pool) else photos.x, len(idx), side, seed + 1),
    }
    src_top = photos.label[idx]
    eligible = clean_top[idx] != target
    source_ok = photos.source[idx] & (clean_top[idx] == src_top) & eligible
    populations = (("source_correct", source_ok), ("not_target", eligible & ~photos.mask("extra")[idx]),
                   ("near_target", eligible & photos.mask("near")[idx]))
    entry: dict = {"name": name, "populations": {}}
    for kind, p in patches.items():
        trial = run_trial(model, spec, x, p, target, corners=corners, sizes=sizes, batch_size=batch_size,
                          device=device)
        if trials is not None:
            trials[(name, kind)] = (idx, trial)
        for pop, keep in populations:
            entry["populations"].setdefault(pop, {})[kind] = summarise(trial, target, clean_prob[idx], keep, static)
    return entry


def discover(model, spec, photos: Photos, candidates: list[tuple[str, torch.Tensor]], target: int, *,
             clean_top: np.ndarray, sizes=DEFAULT_SIZES, seed: int = 0, batch_size: int = 64,
             device="cpu") -> tuple[int, list[dict], np.ndarray, np.ndarray]:
    """Score candidates on a search half of the photos (dynamic protocol at the largest size, every
    corner) -> (best candidate index, scores, search indices, held-out indices).

    Source-class photos are never searched on: they all go to the held-out half.
    """
    others = np.flatnonzero(~photos.source)
    search, held = split_halves(len(others), seed)
    search, held = others[search], np.sort(np.concatenate([others[held], np.flatnonzero(photos.source)]))
    search = search[clean_top[search] != target]
    scores = []
    for name, patch in candidates:
        trial = run_trial(model, spec, photos.x[search], patch, target, sizes=(max(sizes),), batch_size=batch_size,
                          device=device)
        hit = (trial.top == target).any((1, 2))
        scores.append({"name": name, "search_rate": round(float(hit.mean()), 4) if len(hit) else 0.0,
                       "search_prob": round(float(trial.prob.max((1, 2)).mean()), 4) if len(hit) else 0.0})
    best = max(range(len(scores)), key=lambda i: (scores[i]["search_rate"], scores[i]["search_prob"]))
    return best, scores, search, held


def patch_experiment(
    run_dir: str | Path, source: str | None, target: str, model: str, *, layer: str | None = None,
    patches: list[str] = (), discover_patch: bool = False, n_candidates: int = 12, corners=CORNERS,
    sizes=DEFAULT_SIZES, static: tuple[str, float] | None = None, max_images: int = 96, seed: int = 0,
    batch_size: int = 64, device: str = "auto", threads: int | None = None, out_dir: str | Path | None = None,
    icons_run: str | Path | None = None,
) -> Path:
    """Run patch experiments on a run's photos -> ``RUN/patches/NAME/report.json`` (+ report.md, figures).

    ``patches`` are specs for ``load_patch``; with ``discover_patch`` the target's class-atlas and
    atlas icons are searched on half of the photos and the best is reported on the other half.
    ``icons_run`` is the run whose ``LAYER`` folder holds the icons (default ``run_dir``, which
    always supplies the photos through its shard lists).
    """
    from . import images as imgs
    from .collect import resolve_device
    from .models import load_model
    from .run import _write_json, shard_lists

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    net, mspec = load_model(model)
    dev = resolve_device(device)
    net = net.to(dev).to(memory_format=torch.channels_last)
    layer = layer or default_layer(run_dir)
    icons_run = icons_run or run_dir
    t = class_index(mspec, target)
    s = class_index(mspec, source) if source else None
    sizes = tuple(float(v) for v in sizes)
    static = static or (STATIC[0], max(sizes))
    if static[1] not in sizes or static[0] not in corners:
        raise ValueError(f"static {static} must be one of the corners {corners} and sizes {sizes}")
    if not patches and not discover_patch:
        raise ValueError("nothing to test: give --patch SPEC (cell:I,J, image:PATH, direction:PATH.npy) or --discover")
    rows = [r for lst in shard_lists(run_dir) for r in imgs.read_shard(lst)]
    if not rows:
        raise FileNotFoundError(f"no shard lists in {run_dir}/shards: run the workflow (or actlas shards) first")
    src_rows, sample_rows, pool_rows = choose_photos(rows, s, t, max_images, seed)
    near_mask = near_target_mask(run_dir, len(rows), t)
    near_paths = {r[0] for r, m in zip(rows, near_mask) if m and r[1] != t}
    chosen = {r[0] for r in src_rows + sample_rows}
    extra_rows = [r for r in rows if r[0] in near_paths and r[0] not in chosen]
    extra_rows = [extra_rows[i] for i in sorted(np.random.default_rng(seed + 2).permutation(len(extra_rows))[:max_images])]
    x, paths, labels = load_photos(src_rows + sample_rows + extra_rows, mspec)
    pool, _, _ = load_photos(pool_rows, mspec)
    extra_paths = {r[0] for r in extra_rows}
    photos = Photos(x, paths, labels, labels == (s if s is not None else -2), pool,
                    near=np.array([p in near_paths for p in paths], bool),
                    extra=np.array([p in extra_paths for p in paths], bool))
    clean_prob, clean_top = predict(net, mspec, photos.x, t, batch_size, dev)
    name = f"{slug(mspec.short_name(s)) if s is not None else 'any'}-to-{slug(mspec.short_name(t))}"
    out = Path(out_dir) if out_dir else Path(run_dir) / "patches" / name
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(clean_prob=clean_prob, clean_top=clean_top, corners=tuple(corners), sizes=sizes, static=static,
              seed=seed, batch_size=batch_size, device=dev)
    entries, trials = [], {}
    for text in patches:
        pname, patch = load_patch(text, icons_run, layer, model=net, spec=mspec, device=dev)
        e = evaluate_patch(net, mspec, photos, pname, patch, t, trials=trials, **kw)
        e["spec"] = text
        _save_patch_png(patch, out / f"patch-{slug(pname)}.png")
        e["patch_png"] = f"patch-{slug(pname)}.png"
        entries.append(e)
    discovery = None
    if discover_patch:
        specs = candidate_icons(icons_run, layer, t, mspec.short_name(t), limit=n_candidates)
        if not specs:
            raise FileNotFoundError(f"no icons to search for {mspec.short_name(t)!r}: run actlas class-atlas "
                                    f"{run_dir} --class {mspec.short_name(t)!r} (or the workflow's atlases) first")
        cands = [load_patch(sp, icons_run, layer) for sp in specs]
        best, scores, search, held = discover(net, mspec, photos, cands, t, clean_top=clean_top, sizes=sizes,
                                              seed=seed, batch_size=batch_size, device=dev)
        for sc, sp in zip(scores, specs):
            sc["spec"] = sp
        e = evaluate_patch(net, mspec, photos, cands[best][0], cands[best][1], t, subset=held, trials=trials, **kw)
        e["spec"], e["discovered"] = specs[best], True
        e["patch_png"] = f"patch-{slug(cands[best][0])}.png"
        _save_patch_png(cands[best][1], out / e["patch_png"])
        entries.append(e)
        discovery = {"search_images": int(len(search)), "held_out_images": int(len(held)), "candidates": scores,
                     "best": specs[best], "search_protocol": f"dynamic, every corner at size {max(sizes)}"}
    for e in entries:
        e["beats_controls"] = {pop: beats_controls(e, pop) for pop in ("not_target", "near_target")}
    report = {
        "source": mspec.short_name(s) if s is not None else None, "target": mspec.short_name(t), "target_index": t,
        "model": model, "layer": layer, "icons_run": str(icons_run), "photos_run": str(run_dir),
        "corners": list(corners), "sizes": list(sizes), "static": list(static),
        "seed": seed, "images": {"source_class": int(photos.source.sum()), "sampled_not_target": len(sample_rows),
                                 "near_target": int(photos.mask("near").sum()),
                                 "near_target_in_run": int(len(near_paths)),
                                 "evaluated": len(photos.x), "run_total": len(rows)},
        "clean_top1_is_target": int((clean_top == t).sum()),
        "patches": entries, "discovery": discovery, "seconds": round(time.perf_counter() - start, 1),
    }
    figures = write_figures(report, photos, trials, clean_prob, clean_top, mspec, out)
    report["figures"] = figures
    _write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(report))
    return out / "report.json"


def beats_controls(entry: dict, population: str = "not_target") -> dict:
    """Whether the patch's 95% interval lies wholly above both controls' intervals, per protocol."""
    pop = entry["populations"][population]
    out = {}
    for proto in ("static", "dynamic"):
        lo = pop["patch"][proto]["ci"][0]
        above = all(lo > pop[c][proto]["ci"][1] for c in ("noise", "random_image"))
        out[proto] = bool(pop["patch"][proto]["n"] and above)
    return out


# --------------------------------------------------------------------------- report and figures


def _save_patch_png(patch: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray((patch.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)


def _fmt(r: dict) -> str:
    if not r["n"]:
        return "n/a (n=0)"
    return f"{100 * r['rate']:.1f}% [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}] ({r['k']}/{r['n']})"


def report_markdown(report: dict) -> str:
    """The report as Markdown: one table per patch and population."""
    lines = [f"# Patch experiment: {report['source'] or 'any photo'} -> {report['target']}", "",
             f"Model `{report['model']}`, layer `{report['layer']}`. Static protocol: {report['static'][0]} at "
             f"{report['static'][1]} of the input side; dynamic: best of corners {', '.join(report['corners'])} x "
             f"sizes {report['sizes']} per image. Rates are top-1 flips to the target with 95% Wilson intervals; "
             f"controls (uniform noise, a crop of a random photo) use the same photos and protocol.", "",
             f"Photos: {report['images']['source_class']} of the source class, "
             f"{report['images']['sampled_not_target']} "
             f"sampled (seed {report['seed']}) from the {report['images']['run_total']} photos of the run whose label "
             f"is neither source nor target, and {report['images'].get('near_target', 0)} (of "
             f"{report['images'].get('near_target_in_run', 0)} in the run) whose top-5 at collection holds the target "
             "but not as top-1.", ""]
    for e in report["patches"]:
        lines += [f"## {e['name']}" + (" (discovered)" if e.get("discovered") else ""), "",
                  f"![patch]({e['patch_png']})", ""]
        for pop, title in (("source_correct", "source-class photos classified correctly"),
                           ("not_target", "source photos and the random sample, not already classified as the target"),
                           ("near_target", "photos with the target in their top-5, not top-1")):
            if pop not in e["populations"]:
                continue
            d = e["populations"][pop]
            lines += [f"**{title}** (n = {d['patch']['n']})", "",
                      "| patch | static | dynamic | p(target) before | after static | after dynamic |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for kind in ("patch", "noise", "random_image"):
                r = d[kind]
                lines.append(f"| {kind} | {_fmt(r['static'])} | {_fmt(r['dynamic'])} | {r['prob_before']} | "
                             f"{r['prob_after_static']} | {r['prob_after_dynamic']} |")
            lines.append("")
        for pop, b in e["beats_controls"].items():
            lines += [f"Interval above both controls ({pop}): static {b['static']}, dynamic {b['dynamic']}.", ""]
    if report.get("discovery"):
        d = report["discovery"]
        lines += ["## Discovery", "", f"Searched {len(d['candidates'])} candidates on {d['search_images']} photos "
                  f"({d['search_protocol']}); best `{d['best']}`, reported above on {d['held_out_images']} "
                  "held-out photos.",
                  "", "| candidate | search rate | mean best p(target) |", "| --- | --- | --- |"]
        lines += [f"| `{c['spec']}` | {c['search_rate']} | {c['search_prob']} |" for c in d["candidates"]]
        lines.append("")
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in report.get("figures", [])]
    return "\n".join(lines) + "\n"


def write_figures(report: dict, photos: Photos, trials: dict, clean_prob: np.ndarray, clean_top: np.ndarray,
                  spec: ModelSpec, out: Path) -> list[str]:
    """bars.png (patch vs controls, static and dynamic, with intervals; one row per population with
    photos: not_target, near_target) and one examples-*.png per
    patch (photos before and after at the static setting, with target probabilities)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    entries = report["patches"]
    pops = [pop for pop in ("not_target", "near_target")
            if any(e["populations"].get(pop, {}).get("patch", {}).get("n") for e in entries)] or ["not_target"]
    fig, grid = plt.subplots(len(pops), 2, figsize=(max(6, 2.2 * len(entries) + 3), 3.6 * len(pops)), sharey=True,
                             squeeze=False)
    kinds = (("patch", "tab:red"), ("noise", "tab:gray"), ("random_image", "tab:blue"))
    for pop, axes in zip(pops, grid):
        for ax, proto in zip(axes, ("static", "dynamic")):
            for k, (kind, color) in enumerate(kinds):
                xs, ys, err = [], [], [[], []]
                for i, e in enumerate(entries):
                    r = e["populations"][pop][kind][proto]
                    if not r["n"]:
                        continue
                    xs.append(i + (k - 1) * 0.27)
                    ys.append(r["rate"])
                    err[0].append(r["rate"] - r["ci"][0])
                    err[1].append(r["ci"][1] - r["rate"])
                ax.bar(xs, ys, 0.27, yerr=err, color=color, label=kind, capsize=3)
            ax.set_xticks(range(len(entries)))
            ax.set_xticklabels([e["name"] + ("*" if e.get("discovered") else "") for e in entries], rotation=20,
                               fontsize=7, ha="right")
            ns = sorted({e["populations"][pop]["patch"][proto]["n"] for e in entries})
            ax.set_title(f"{pop}, {proto} (n = {', '.join(map(str, ns))}"
                         f"{'; * held-out half' if any(e.get('discovered') for e in entries) else ''})", fontsize=8)
            ax.set_ylim(0, 1)
        axes[0].set_ylabel(f"top-1 -> {report['target']}")
    grid[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bars.png", dpi=110)
    plt.close(fig)
    names.append("bars.png")
    t = report["target_index"]
    static = (report["static"][0], report["static"][1])
    for e in entries:
        idx, trial = trials[(e["name"], "patch")]
        ci, si = trial.corners.index(static[0]), trial.sizes.index(static[1])
        src = [r for r, i in enumerate(idx) if photos.source[i]]
        rest = [r for r, i in enumerate(idx) if not photos.source[i] and clean_top[i] != t]
        rest.sort(key=lambda r: -trial.prob[r, ci, si])
        pick = (src + rest)[:6]
        if not pick:
            continue
        from PIL import Image

        patch = np.asarray(Image.open(out / e["patch_png"]).convert("RGB"), dtype=np.float32) / 255.0
        patch_t = torch.from_numpy(patch).permute(2, 0, 1)
        fig, axes = plt.subplots(2, len(pick), figsize=(2.1 * len(pick), 4.6), squeeze=False)
        for col, r in enumerate(pick):
            i = idx[r]
            before = photos.x[i]
            after = paste(before[None], patch_t, *static)[0]
            label = spec.short_name(int(photos.label[i])) if photos.label[i] >= 0 else "?"
            for row, (img, title) in enumerate((
                (before, f"{label}\ntop: {spec.short_name(int(clean_top[i]))}\np={clean_prob[i]:.3f}"),
                (after, f"top: {spec.short_name(int(trial.top[r, ci, si]))}\np={trial.prob[r, ci, si]:.3f}"),
            )):
                ax = axes[row, col]
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_title(title, fontsize=7)
                ax.axis("off")
        fig.suptitle(f"{e['name']}: p({report['target']}) before (top) and after, {static[0]} at {static[1]}",
                     fontsize=8)
        fig.tight_layout()
        fname = f"examples-{slug(e['name'])}.png"
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)
        names.append(fname)
    return names


def class_index(spec: ModelSpec, name: str) -> int:
    """``spec.class_index``, also accepting any index for a model without category names."""
    if not spec.categories and str(name).isdigit():
        return int(name)
    return spec.class_index(name)


def _run_config(run_dir: str | Path) -> dict:
    """The config a finished run was made with (manifest.json's ``config``; empty if none)."""
    path = Path(run_dir) / "manifest.json"
    return json.loads(path.read_text()).get("config", {}) if path.exists() else {}


def default_layer(run_dir: str | Path) -> str:
    """The run's first layer (from the manifest), for commands that do not name one."""
    layers = _run_config(run_dir).get("layers")
    if layers:
        return layers[0]
    found = [p.parent.name for p in Path(run_dir).glob("*/coords.npy")]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"cannot tell which layer of {run_dir} to use: pass --layer (found {found or 'none'})")


def default_model(run_dir: str | Path) -> str:
    """The run's model (from the manifest)."""
    model = _run_config(run_dir).get("model")
    if model:
        return model
    raise ValueError(f"{run_dir} has no manifest.json naming its model: pass --model")


# --------------------------------------------------------------------------- CLI

import click  # noqa: E402


@click.command("patch")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--source", default=None, help="Source class (its photos are reported on their own).")
@click.option("--target", required=True, help="Target class the patch should produce.")
@click.option("--patch", "patches", multiple=True,
              help="cell:I,J | cell:DIR:I,J | image:PATH[:X0,Y0,X1,Y1] | direction:PATH.npy; repeatable.")
@click.option("--discover", is_flag=True, help="Search the target's class-atlas and atlas icons on half the photos.")
@click.option("--candidates", default=12, show_default=True, help="Icons searched by --discover.")
@click.option("--sizes", default="0.3,0.45", show_default=True, help="Patch sides as fractions of the input.")
@click.option("--static", "static_corner", default="bottom-right", show_default=True, type=click.Choice(CORNERS),
              help="Corner of the static protocol (at the largest size).")
@click.option("--max-images", default=96, show_default=True, help="Photos sampled from those not of the target.")
@click.option("--layer", "-l", default=None, help="Layer whose icons are used (default: the run's first).")
@click.option("--model", "-m", default=None, help="Model (default: the run's).")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Output folder (default RUN/patches/SRC-to-TGT).")
@click.option("--icons", "icons_run", default=None, type=click.Path(exists=True),
              help="Run whose LAYER folder holds the icons (default: RUN_DIR).")
@click.option("--seed", default=0, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None)
def patch_command(run_dir, source, target, patches, discover, candidates, sizes, static_corner, max_images, layer,
                  model, out_dir, icons_run, seed, batch_size, device, threads) -> None:
    """Paste a patch into photos and measure flips to a target class, against controls.

    Example: actlas patch runs/demo --source "grey whale" --target "great white shark" --patch cell:3,4
    """
    size_list = tuple(float(v) for v in sizes.split(","))
    path = patch_experiment(run_dir, source, target, model or default_model(run_dir), layer=layer,
                            patches=list(patches), discover_patch=discover, n_candidates=candidates, sizes=size_list,
                            static=(static_corner, max(size_list)), max_images=max_images, seed=seed,
                            batch_size=batch_size, device=device, threads=threads, out_dir=out_dir,
                            icons_run=icons_run)
    click.echo(str(path.with_name("report.md")))
