"""A patch experiment's report: ``report.md`` (Markdown tables) and its figures (matplotlib):
``bars.png`` (patch against controls), one ``examples-*.png`` per patch and ``single-photo.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import paths
from ..models.spec import ModelSpec
from ..text import slug
from .experiment import Photos, paste


def _fmt(r: dict) -> str:
    if not r["n"]:
        return "n/a (n=0)"
    return f"{100 * r['rate']:.1f}% [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}] ({r['k']}/{r['n']})"


def report_markdown(report: dict) -> str:
    """The report as Markdown: one table per patch and population."""
    model = report["model"].get("source") if isinstance(report["model"], dict) else report["model"]
    lines = [
        f"# Patch experiment: {report['source'] or 'any photo'} -> {report['target']}",
        "",
        f"Model `{model}`, layer `{report['layer']}`. Static protocol: {report['static'][0]} at "
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


def write_figures(
    report: dict,
    photos: Photos,
    trials: dict,
    clean_prob: np.ndarray,
    clean_top: np.ndarray,
    spec: ModelSpec,
    out: Path,
) -> list[str]:
    """bars.png (patch vs controls, static and dynamic, with intervals; one row per population with
    photos: not_target, near_target) and one examples-*.png per
    patch (photos before and after at the static setting, with target probabilities)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    entries = report["patches"]
    held = bool(report["images"].get("evaluate"))  # held-out photos: all of the source class, one population
    pops = (
        ["source_correct"]
        if held
        else [
            pop
            for pop in ("not_target", "near_target")
            if any(e["populations"].get(pop, {}).get("patch", {}).get("n") for e in entries)
        ]
        or ["not_target"]
    )
    fig, grid = plt.subplots(
        len(pops), 2, figsize=(max(6, 2.2 * len(entries) + 3), 3.6 * len(pops)), sharey=True, squeeze=False
    )
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
            ax.set_xticklabels(
                [e["name"] + ("*" if e.get("discovered") else "") for e in entries], rotation=20, fontsize=7, ha="right"
            )
            ns = sorted({e["populations"][pop]["patch"][proto]["n"] for e in entries})
            discovered = any(e.get("discovered") for e in entries)
            note = "; held-out photos" if held else "; * held-out half" if discovered else ""
            ax.set_title(
                f"{pop}, {proto} (n = {', '.join(map(str, ns))}{note})",
                fontsize=8,
            )
            ax.set_ylim(0, 1)
        axes[0].set_ylabel(f"top-1 -> {report['target']}")
    grid[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / paths.BARS_PNG, dpi=110, metadata={"Software": None})
    plt.close(fig)
    names.append(paths.BARS_PNG)
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
        patch = np.asarray(Image.open(out / e["patch_png"]).convert("RGB"), dtype=np.float32) / 255.0
        patch_t = torch.from_numpy(patch).permute(2, 0, 1)
        fig, axes = plt.subplots(2, len(pick), figsize=(2.1 * len(pick), 4.6), squeeze=False)
        for col, r in enumerate(pick):
            i = idx[r]
            before = photos.x[i]
            after = paste(before[None], patch_t, *static)[0]
            label = spec.short_name(int(photos.label[i])) if photos.label[i] >= 0 else "?"
            for row, (img, title) in enumerate(
                (
                    (before, f"{label}\ntop: {spec.short_name(int(clean_top[i]))}\np={clean_prob[i]:.3f}"),
                    (after, f"top: {spec.short_name(int(trial.top[r, ci, si]))}\np={trial.prob[r, ci, si]:.3f}"),
                )
            ):
                ax = axes[row, col]
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_title(title, fontsize=7)
                ax.axis("off")
        fig.suptitle(
            f"{e['name']}: p({report['target']}) before (top) and after, {static[0]} at {static[1]}", fontsize=8
        )
        fig.tight_layout()
        fname = paths.examples_png_name(slug(e["name"]))
        fig.savefig(out / fname, dpi=100, metadata={"Software": None})
        plt.close(fig)
        names.append(fname)
    return names


def single_photo_figure(
    photo: str,
    x: torch.Tensor,
    result: dict,
    patches: dict[str, torch.Tensor],
    spec: ModelSpec,
    source: int,
    target: int,
    out: Path,
    shown: int = 3,
) -> str:
    """``single-photo.png``: the photo (x (1, 3, H, W)), then for the ``shown`` best candidates of
    ``result`` (``actlas.patches.experiment.single_photo``; ``patches``: name -> (3, h, w)) the patch and
    the photo with it, each titled with p(source), p(target) and the top-1 class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = result["candidates"][:shown]
    s_name, t_name = spec.short_name(source), spec.short_name(target)

    def title(r: dict) -> str:
        return f"p({s_name}) {r['p_source']:.3f}\np({t_name}) {r['p_target']:.3f}\ntop: {spec.short_name(r['top'])}"

    fig, axes = plt.subplots(len(best) or 1, 3, figsize=(7.2, 2.8 * max(len(best), 1)), squeeze=False)
    for row, r in enumerate(best):
        patch = patches[r["name"]]
        after = paste(x[:1], patch, r["corner"], r["size"])[0]
        panels = (
            (x[0], "before\n" + title(result["before"])),
            (patch, f"{r['name']}\n{r['corner']} @ {r['size']}"),
            (after, "after\n" + title(r)),
        )
        for ax, (img, text) in zip(axes[row], panels):
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_title(text, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{Path(photo).name}: {s_name} -> {t_name}, the best {len(best)} patches on this photo", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / paths.SINGLE_PHOTO_PNG, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return paths.SINGLE_PHOTO_PNG
