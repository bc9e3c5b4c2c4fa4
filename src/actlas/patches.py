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

Core functions take tensors and return arrays; the stage ``actlas.stages.patch`` reads and writes
the run directory (``RUN/patches/NAME/report.{md,json}`` and figures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layers import memory_format_of
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
def class_probs(
    model: nn.Module,
    spec: ModelSpec,
    x: torch.Tensor,
    classes: list[int],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of ``classes`` (n, len(classes)) and the top-1 class (n,) for images (n, 3, H, W) in [0, 1]."""
    probs, top = [], []
    memory_format = memory_format_of(model)  # the caller's choice (``actlas.layers.memory_format_for``)
    for lo in range(0, len(x), batch_size):
        xb = spec.normalize(x[lo : lo + batch_size].to(device)).contiguous(memory_format=memory_format)
        p = model(xb).float().softmax(1)
        probs.append(p[:, classes].cpu())
        top.append(p.argmax(1).cpu())
    return torch.cat(probs).numpy(), torch.cat(top).numpy()


def predict(
    model: nn.Module,
    spec: ModelSpec,
    x: torch.Tensor,
    target: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probability of ``target`` (n,) and the top-1 class (n,) for images (n, 3, H, W) in [0, 1]."""
    probs, top = class_probs(model, spec, x, [target], batch_size, device)
    return probs[:, 0], top


@dataclass
class Trial:
    """Outcome of one patch on N images under every corner x size."""

    prob: np.ndarray  # (N, n_corners, n_sizes) target probability after pasting
    top: np.ndarray  # (N, n_corners, n_sizes) top-1 class after pasting
    corners: tuple[str, ...] = CORNERS
    sizes: tuple[float, ...] = DEFAULT_SIZES


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
) -> Trial:
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
    return Trial(
        np.concatenate(probs) if probs else np.zeros((0, nc, ns)),
        np.concatenate(tops) if tops else np.zeros((0, nc, ns), dtype=np.int64),
        tuple(corners),
        tuple(sizes),
    )


def rate(success: np.ndarray) -> dict:
    """Success count, rate and 95% Wilson interval of a boolean array (n,)."""
    k, n = int(np.sum(success)), int(len(success))
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "ci": [round(lo, 4), round(hi, 4)]}


def summarise(
    trial: Trial, target: int, before: np.ndarray, keep: np.ndarray, static: tuple[str, float] = STATIC
) -> dict:
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
        "best_variant_counts": {
            f"{trial.corners[c]}@{trial.sizes[s]}": int(hit[:, c, s].sum())
            for c in range(len(trial.corners))
            for s in range(len(trial.sizes))
        },
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


def image_tensor(image) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float in [0, 1] (no resizing)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


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


def choose_photos(
    rows: list[tuple[str, int]], source: int | None, target: int, max_images: int, seed: int, n_pool: int = 32
) -> tuple[list, list, list]:
    """Split a run's photos (path, label) into source-class rows, a seeded sample of ``max_images``
    rows whose label is not the target (source-class rows excluded: they are reported on their own),
    and ``n_pool`` other rows for the random-crop control. Returns (source_rows, sample_rows, pool_rows)."""
    src = [r for r in rows if source is not None and r[1] == source]
    other = [r for r in rows if r[1] != target and (source is None or r[1] != source)]
    order = np.random.default_rng(seed).permutation(len(other))
    sample = [other[i] for i in sorted(order[:max_images])]
    pool = [other[i] for i in order[max_images : max_images + n_pool]]
    return src, sample, pool


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
        "noise": noise_patches(len(idx), side, seed),
        "random_image": random_crops(photos.pool if len(photos.pool) else photos.x, len(idx), side, seed + 1),
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
        trial = run_trial(model, spec, x, p, target, corners=corners, sizes=sizes, batch_size=batch_size, device=device)
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
) -> tuple[int, list[dict]]:
    """Score candidate patches on search photos x (n, 3, H, W) with the dynamic protocol at the largest
    size, every corner -> (best candidate index, scores): the flip rate to ``target``, ties broken
    by the mean best p(target)."""
    scores = []
    for name, patch in candidates:
        trial = run_trial(model, spec, x, patch, target, sizes=(max(sizes),), batch_size=batch_size, device=device)
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
) -> tuple[int, list[dict], np.ndarray, np.ndarray]:
    """Score candidates on a search half of the photos (``score_candidates``)
    -> (best candidate index, scores, search indices, held-out indices).

    Source-class photos are never searched on: they all go to the held-out half.
    """
    others = np.flatnonzero(~photos.source)
    search, held = split_halves(len(others), seed)
    search, held = others[search], np.sort(np.concatenate([others[held], np.flatnonzero(photos.source)]))
    search = search[clean_top[search] != target]
    best, scores = score_candidates(
        model, spec, photos.x[search], candidates, target, sizes=sizes, batch_size=batch_size, device=device
    )
    return best, scores, search, held


def vs_controls(entry: dict, population: str = "not_target") -> dict:
    """Per protocol, the patch's flip rate over the best control's: {protocol: {"best_control",
    "control_rate", "ratio"}} (ratio None when the patch has no photos or the best control never flips)."""
    pop = entry["populations"][population]
    out = {}
    for proto in ("static", "dynamic"):
        best = max(("noise", "random_image"), key=lambda c: pop[c][proto]["rate"] or 0.0)
        patch_rate, control = pop["patch"][proto]["rate"], pop[best][proto]["rate"] or 0.0
        ratio = round(patch_rate / control, 2) if patch_rate is not None and control else None
        out[proto] = {"best_control": best, "control_rate": control, "ratio": ratio}
    return out


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
) -> dict:
    """The article's single-photo demonstration: every candidate patch on one photo (3, H, W) at
    every corner x size, each at its best variant (highest p(target)).

    Returns {"before": {p_source, p_target, top}, "candidates": [{name, corner, size, p_source,
    p_target, top}, ...]} with candidates best first by p(target) after pasting.
    """
    pair = [source, target]
    p, top = class_probs(model, spec, photo[None], pair, batch_size, device)
    before = {"p_source": round(float(p[0, 0]), 4), "p_target": round(float(p[0, 1]), 4), "top": int(top[0])}
    rows = []
    for name, patch in candidates:
        p, top = class_probs(model, spec, variants(photo[None], patch, corners, sizes), pair, batch_size, device)
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


def _fmt(r: dict) -> str:
    if not r["n"]:
        return "n/a (n=0)"
    return f"{100 * r['rate']:.1f}% [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}] ({r['k']}/{r['n']})"


def report_markdown(report: dict) -> str:
    """The report as Markdown: one table per patch and population."""
    lines = [
        f"# Patch experiment: {report['source'] or 'any photo'} -> {report['target']}",
        "",
        f"Model `{report['model'].get('source') if isinstance(report['model'], dict) else report['model']}`, layer `{report['layer']}`. Static protocol: {report['static'][0]} at "
        f"{report['static'][1]} of the input side; dynamic: best of corners {', '.join(report['corners'])} x "
        f"sizes {report['sizes']} per image. Rates are top-1 flips to the target with 95% Wilson intervals; "
        f"controls (uniform noise, a crop of a random photo) use the same photos and protocol.",
        "",
    ]
    held = report["images"].get("evaluate")
    if held:
        lines += [
            f"Held-out photos: {held['evaluated']} of the {held['source_class']} {report['source']} photos in "
            f"{', '.join(held['folders'])} ({held['classified_correctly']} classified correctly; a seeded "
            f"choice of at most {held['max_evaluate']}). Every rate below is on them; discovery never saw "
            f"them: it searched {report['images']['searched']} {report['source']} photos of the run.",
            "",
        ]
    else:
        lines += [
            f"Photos: {report['images']['source_class']} of the source class, "
            f"{report['images']['sampled_not_target']} "
            f"sampled (seed {report['seed']}) from the {report['images']['run_total']} photos of the run whose "
            f"label is neither source nor target, and {report['images'].get('near_target', 0)} (of "
            f"{report['images'].get('near_target_in_run', 0)} in the run) whose top-5 at collection holds the "
            "target but not as top-1.",
            "",
        ]
    titles = {
        "source_correct": "source-class photos classified correctly",
        "not_target": "source photos and the random sample, not already classified as the target",
        "near_target": "photos with the target in their top-5, not top-1",
    }
    for e in report["patches"]:
        lines += [
            f"## {e['name']}" + (" (discovered)" if e.get("discovered") else ""),
            "",
            f"![patch]({e['patch_png']})",
            "",
        ]
        # populations with photos; held-out photos are all of the source class, so not_target repeats source_correct
        shown = [
            pop
            for pop in titles
            if e["populations"].get(pop, {}).get("patch", {}).get("n") and not (pop == "not_target" and held)
        ]
        for pop in shown:
            title = titles[pop]
            d = e["populations"][pop]
            lines += [
                f"**{title}** (n = {d['patch']['n']})",
                "",
                "| patch | static | dynamic | p(target) before | after static | after dynamic |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for kind in ("patch", "noise", "random_image"):
                r = d[kind]
                lines.append(
                    f"| {kind} | {_fmt(r['static'])} | {_fmt(r['dynamic'])} | {r['prob_before']} | "
                    f"{r['prob_after_static']} | {r['prob_after_dynamic']} |"
                )
            lines.append("")
        for pop in (pop for pop in shown if pop in e["beats_controls"]):
            b = e["beats_controls"][pop]
            ratios = e.get("vs_controls", {}).get(pop, {})
            said = [
                f"{proto} {'yes' if b[proto] else 'no'}"
                + (
                    f" ({ratios[proto]['ratio']}x the {ratios[proto]['best_control']} control)"
                    if ratios.get(proto, {}).get("ratio") is not None
                    else ""
                )
                for proto in ("static", "dynamic")
            ]
            lines += [f"Interval wholly above both controls' intervals ({pop}): {', '.join(said)}.", ""]
    if report.get("discovery"):
        d = report["discovery"]
        lines += [
            "## Discovery",
            "",
            f"Searched {len(d['candidates'])} candidates on {d['search_images']} photos "
            f"({d['search_protocol']}); best `{d['best']}`, reported above on {d['held_out_images']} "
            "held-out photos.",
            "",
            "| candidate | search rate | mean best p(target) |",
            "| --- | --- | --- |",
        ]
        lines += [f"| `{c['spec']}` | {c['search_rate']} | {c['search_prob']} |" for c in d["candidates"]]
        lines.append("")
    single = report.get("single_photo")
    if single:
        b = single["before"]
        lines += [
            "## Single photo",
            "",
            f"`{single['photo']}` (the article's demonstration: every candidate on this "
            "one photo at every corner and size, each at its best; chosen on this photo, not held out). "
            f"Before: p({report['source']}) = {b['p_source']:.3f}, p({report['target']}) = {b['p_target']:.3f}, "
            f"top-1 {single['names'][str(b['top'])]}.",
            "",
            f"| patch | corner @ size | p({report['source']}) after | p({report['target']}) after | top-1 after |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{c['spec']}` | {c['corner']} @ {c['size']} | {c['p_source']:.3f} | {c['p_target']:.3f} | "
            f"{single['names'][str(c['top'])]} |"
            for c in single["candidates"][:10]
        ]
        lines.append("")
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in report.get("figures", [])]
    return "\n".join(lines) + "\n"
