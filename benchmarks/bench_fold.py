"""The render and collect fast paths, each against the model without it, in the same run.

``--path`` picks the fast path:

- ``fold`` (default): BatchNorm folded into the convolutions (``actlas.layers.fold_batchnorm``)
  vs the model as loaded;
- ``pointwise``: 1x1 convolutions of small CPU batches run as matmuls
  (``actlas.layers.pointwise_as_matmul``) vs the folded model.

Both models run as the stages run them (channels_last where the model runs in it, parameters
frozen), each on its own copy of the same loaded model, timed alternately in the same run:

- render rows: ``actlas.render.render`` of the same real cell directions (directions are centre
  activations of the shared photos, as ``bench_render.py``), at the icon size the render stage
  gives the layer (``fit_to_layer``), a full batch per call; icons/s, and the largest difference
  in faithfulness and in icon pixels between the two models;
- collect rows: ``actlas.collect.attribute`` (one forward, ``attr_top`` backward passes) on
  preprocessed photos at the model's input size; images/s.

Usage: .venv/bin/python benchmarks/bench_fold.py [--path fold|pointwise] [--quick] [--threads 2]
[--reps 3] [--batch 32] [--rows NAME,...]
Last line: ``ratio: X`` = median over rows of throughput with the fast path / without it.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import ASSETS, MODEL, ROOT, interleave, machine, median, photos, table

RESNET = str(ROOT / "config" / "models" / "cifar10_resnet20.json")
# (row, card, layer, icon size before fit_to_layer, steps); collect rows have size None
ROWS = [
    ("render mobilenet_v2 features.13", MODEL, "features.13", 80, 96),
    ("render mobilenet_v2 features.16", MODEL, "features.16", 80, 96),
    ("render resnet20 layer3", RESNET, "layer3", 80, 128),
    ("collect mobilenet_v2 features.13", MODEL, "features.13", None, None),
    ("collect resnet20 layer3", RESNET, "layer3", None, None),
]


def cifar_rows(n: int) -> list[str]:
    """``n`` cifar10-test photos spread over its ten class folders."""
    files = sorted(str(p) for p in (ASSETS / "images" / "cifar10-test").rglob("*.jpg"))
    return files[:: max(len(files) // n, 1)][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and photos (a smoke run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="timed calls per model and row, alternating")
    ap.add_argument("--batch", type=int, default=32, help="icons per render call")
    ap.add_argument("--rows", default="all", help="comma-separated row names (default: all)")
    ap.add_argument("--path", choices=("fold", "pointwise"), default="fold", help="the fast path to measure")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from actlas.collect import attribute
    from actlas.data import decode as dec
    from actlas.models.load import load_model
    from actlas.nn.fastpaths import fold_batchnorm, memory_format_for, pointwise_as_matmul
    from actlas.nn.layers import layer_kinds
    from actlas.settings import RenderParams
    from actlas.viz.render import centre_activations, fit_to_layer
    from actlas.viz.render import render as render_icons

    print(machine())
    out_rows, ratios = [], []
    for name, card, layer, size, steps in ROWS:
        if a.rows != "all" and name not in a.rows.split(","):
            continue
        base, spec = load_model(card)
        if a.path != "fold":  # the baseline: the model as the stages ran it before this fast path
            fold_batchnorm(base, spec, [layer], tuple(spec.input_size), logits=size is None)
        fast = copy.deepcopy(base)  # the model with the fast path
        if a.path == "fold":
            n_changed = fold_batchnorm(fast, spec, [layer], tuple(spec.input_size), logits=size is None)
        else:
            n_changed = pointwise_as_matmul(fast)
        formats = {
            m: memory_format_for(net, spec, layer if size else None, tuple(spec.input_size))
            for m, net in (("base", base), ("fast", fast))
        }
        if card == RESNET:  # 32 px photos: enough of them that a collect call is not timer noise
            paths = cifar_rows(16 if a.quick else 100 if size else 1000)
        else:
            paths = [p for p, _ in photos(16 if a.quick else 100)]
        x = torch.stack([spec.transform(dec.decode(p)[0]) for p in paths])
        if size is None:
            batches = [x[i : i + 50] for i in range(0, len(x), 50)]
            cases = {
                m: (lambda net=net: [attribute(net, spec, b, [layer], 1) for b in batches])
                for m, net in (("base", base), ("fast", fast))
            }
            times = interleave(cases, a.reps)
            speed = {m: len(x) / median(t) for m, t in times.items()}
            diff = ""
        else:
            ((_, _, grid),) = layer_kinds(base, [layer], spec.input_size, spec.layer_kinds).values()
            params = fit_to_layer(
                RenderParams(size=size, steps=8 if a.quick else steps, batch_size=a.batch), spec.input_size, grid
            )
            h = centre_activations(base, spec, layer, x[:, :, : params.size, : params.size])
            directions = h[: a.batch].numpy().astype(np.float32)
            results = {}

            def run(net, m):
                results[m] = render_icons(
                    net, spec, layer, directions, params=params, memory_format=formats[m], progress=False
                )

            cases = {m: (lambda net=net, m=m: run(net, m)) for m, net in (("base", base), ("fast", fast))}
            times = interleave(cases, a.reps)
            speed = {m: len(directions) / median(t) for m, t in times.items()}
            f0, f1 = results["base"]["faithfulness"], results["fast"]["faithfulness"]
            px = np.abs(results["base"]["icon"].astype(int) - results["fast"]["icon"].astype(int)).max()
            diff = (
                f"{params.size} px: median faithfulness {np.median(f0):.3f} vs {np.median(f1):.3f}, "
                f"largest pixel difference {px}"
            )
        ratio = speed["fast"] / speed["base"]
        ratios.append(ratio)
        unit = "images/s" if size is None else "icons/s"
        out_rows.append(
            [name, n_changed, f"{speed['base']:.3g} {unit}", f"{speed['fast']:.3g} {unit}", f"{ratio:.2f}", diff]
        )
        print(out_rows[-1], flush=True)
    counted = {"fold": "pairs folded", "pointwise": "1x1 convolutions"}[a.path]
    names = {"fold": ("as loaded", "folded"), "pointwise": ("folded", "and 1x1 as matmul")}[a.path]
    print(f"path: {a.path}; batch {a.batch}; threads {a.threads}")
    print(table(["row", counted, *names, "ratio", "output"], out_rows))
    print(f"repetitions: {a.reps} per model and row, alternating; medians")
    print(f"ratio: {float(np.median(ratios)):.2f}")


if __name__ == "__main__":
    main()
