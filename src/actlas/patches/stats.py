"""The statistics of a patch experiment: rates with 95% Wilson intervals, a trial's summary per
protocol (static: one corner and size; dynamic: the best of every corner x size), and how a patch
compares with its controls."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..settings import CORNERS, Patch

DEFAULT_SIZES = Patch.sizes
STATIC = (Patch.static, max(Patch.sizes))


@dataclass
class Trial:
    """Outcome of one patch on N images under every corner x size."""

    prob: np.ndarray  # (N, n_corners, n_sizes) target probability after pasting
    top: np.ndarray  # (N, n_corners, n_sizes) top-1 class after pasting
    corners: tuple[str, ...] = CORNERS
    sizes: tuple[float, ...] = DEFAULT_SIZES


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval (low, high) for k successes out of n (n = 0 -> (0, 1))."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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


def beats_controls(entry: dict, population: str = "not_target") -> dict:
    """Whether the patch's 95% interval lies wholly above both controls' intervals, per protocol."""
    pop = entry["populations"][population]
    out = {}
    for proto in ("static", "dynamic"):
        lo = pop["patch"][proto]["ci"][0]
        above = all(lo > pop[c][proto]["ci"][1] for c in ("noise", "random_image"))
        out[proto] = bool(pop["patch"][proto]["n"] and above)
    return out
