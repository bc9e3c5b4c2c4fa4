"""Issue 11's speed target: today's renderer against the one the issue measured, in the same run.

The issue (filed 2026-12-01) timed the shared MobileNetV2 at ``features.13``: 32 real cell
directions, 80 px, 128 steps, batch 32, 2 threads, 0.75 to 0.82 icons/s at median faithfulness
0.81. It asked for at most half the seconds per icon at the same or better faithfulness.

- ``issue``: the render settings of that day (pad 12, jitter 8, lr 0.05, spectrum decay 1.0, the last
  image rather than the best seen, whitening ridge 1.0) on the model as loaded (BatchNorm not
  folded, contiguous memory, 1x1 convolutions as convolutions);
- ``today``: the defaults (``RenderParams()`` fitted to the layer, ``Layout.whitening_eps``) on the
  model as the render stage puts it (``fast_paths``).

Both run on today's code: the baseline has the issue's settings and model form, not its code.
Directions: the 32 most populated cells of an 8 x 8 grid of ``--photos`` photos (``bench_icons.prepare``).

Usage: .venv/bin/python benchmarks/bench_defaults.py [--reps 2] [--layer features.13] [--quick]
Last line: ``ratio: X`` = today's icons/s over the issue's.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import ASSETS, MODEL, interleave, machine, median, table
from bench_icons import prepare

ISSUE = {"pad": 12, "jitter": 8, "lr": 0.05, "decay_power": 1.0, "check_every": 0}
ISSUE_WHITENING_EPS = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2, help="timed calls per renderer, alternating")
    ap.add_argument("--layer", default="features.13")
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--size", type=int, default=80, help="icon side asked for (the demo's 80)")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="16 steps, 8 directions, one repetition")
    a = ap.parse_args()
    k = 8 if a.quick else 32
    steps, reps = (16, 1) if a.quick else (a.steps, a.reps)
    torch.set_num_threads(a.threads)

    from actlas import layout as layout_core
    from actlas.models.load import load_model
    from actlas.nn.fastpaths import fast_paths
    from actlas.settings import Layout, RenderParams
    from actlas.viz.render import fit_to_layer
    from actlas.viz.render import render as render_icons

    net, spec = load_model(MODEL)
    net.eval()
    issue_net, today_net = net, copy.deepcopy(net)
    with tempfile.TemporaryDirectory(prefix="actlas-bench-defaults-") as tmp:
        d = prepare(
            "mobilenet_v2",
            MODEL,
            [ASSETS / "images" / "imagenet-val"],
            [a.layer],
            a.photos,
            8,
            k,
            1,
            a.size,
            Path(tmp),
            positions=4,
        )[a.layer]
    today = fit_to_layer(RenderParams(size=a.size, steps=steps, batch_size=k), spec.input_size, d["grid"])
    fast = fast_paths(today_net, spec, [a.layer], today.size, "cpu", stop_at=a.layer)
    issue = dataclasses.replace(today, **ISSUE)
    cases = {
        "issue": (issue_net, issue, layout_core.whitening(d["cov"], ISSUE_WHITENING_EPS)),
        "today": (today_net, today, layout_core.whitening(d["cov"], Layout.whitening_eps)),
    }
    formats = {"issue": torch.contiguous_format, "today": fast.memory_format}  # as each model was put
    results: dict[str, dict] = {}

    def run(name: str) -> None:
        model, params, whitening = cases[name]
        results[name] = render_icons(
            model,
            spec,
            a.layer,
            d["direction"],
            whitening=whitening,
            params=params,
            memory_format=formats[name],
            progress=False,
        )

    times = interleave({name: (lambda name=name: run(name)) for name in cases}, reps)
    print(machine())
    rows = []
    for name, (_, params, _) in cases.items():
        faith = results[name]["faithfulness"]
        rows.append(
            [
                name,
                params.size,
                params.pad,
                params.jitter,
                params.lr,
                params.decay_power,
                f"{k / median(times[name]):.3g}",
                f"{median(times[name]) / k:.3g}",
                f"{np.median(faith):.3f}",
                f"{np.percentile(faith, 10):.3f}",
            ]
        )
    print(
        f"MobileNetV2 {a.layer}: {k} real cell directions, {steps} steps, batch {k}, {a.threads} threads, "
        f"{reps} timed calls each, alternating; medians"
    )
    print(
        table(
            ["renderer", "size", "pad", "jitter", "lr", "decay", "icons/s", "s/icon", "faith median", "faith p10"], rows
        )
    )
    print(f"ratio: {median(times['issue']) / median(times['today']):.2f}")


if __name__ == "__main__":
    main()
