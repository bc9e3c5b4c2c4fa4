"""glibc's allocator kept from returning freed memory (``actlas.allocator``) vs its defaults, in the same run.

Each measurement is a fresh process (the allocator's settings are per process), run as the demo's
render and collect jobs run: one torch thread, the model as the stages put it (``fast_paths``):

- render rows: ``actlas.render.render`` of ``--batch`` real directions (centre activations of
  shared photos, as ``bench_fold.py``), at the size the render stage gives the layer, 96 steps,
  one batch of ``--batch``; icons/s, and whether the icons are the same bytes both ways;
- collect row: ``actlas.collect.attribute`` of 100 shared photos in batches of 50; images/s.

Processes alternate (default, tuned, tuned, default, ...), ``--reps`` each.

Usage: .venv/bin/python benchmarks/bench_malloc.py [--reps 3] [--batch 8] [--steps 96] [--quick]
Last line: ``ratio: X`` = median over rows of throughput tuned / default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import MODEL, machine, median, photos, table

# (row, layer, icon size before fit_to_layer); collect rows have size None
ROWS = [
    ("render mobilenet_v2 features.13", "features.13", 80),
    ("render mobilenet_v2 features.16", "features.16", 80),
    ("collect mobilenet_v2 features.13", "features.13", None),
]


def child(row: str, tuned: bool, batch: int, steps: int) -> dict:
    """One measurement in this process: {seconds, items, digest}."""
    import torch

    if tuned:
        from actlas.allocator import keep_freed_memory

        assert keep_freed_memory(), "glibc's mallopt is not available here"
    torch.set_num_threads(1)
    from actlas.collect import attribute
    from actlas.data import decode as dec
    from actlas.models.load import load_model
    from actlas.nn.fastpaths import fast_paths
    from actlas.nn.layers import layer_kinds
    from actlas.settings import RenderParams
    from actlas.viz.render import centre_activations, fit_to_layer, render

    _, layer, size = next(r for r in ROWS if r[0] == row)
    net, spec = load_model(MODEL)
    paths = [p for p, _ in photos(100 if size is None else batch)]
    x = torch.stack([spec.transform(dec.decode(p)[0]) for p in paths])
    if size is None:
        fast_paths(net, spec, [layer], tuple(spec.input_size), "cpu")
        start = time.perf_counter()
        out = [attribute(net, spec, x[i : i + 50], [layer], 1) for i in range(0, len(x), 50)]
        seconds = time.perf_counter() - start
        h = hashlib.sha256()
        for logits, acts, attrs, _ in out:
            for t in (logits, acts[layer], attrs[layer]):
                h.update(t.float().contiguous().numpy().tobytes())
        digest = h.hexdigest()[:12]
        return {"seconds": seconds, "items": len(x), "digest": digest}
    ((_, _, grid),) = layer_kinds(net, [layer], spec.input_size, spec.layer_kinds).values()
    params = fit_to_layer(RenderParams(size=size, steps=steps, batch_size=batch), spec.input_size, grid)
    fmt = fast_paths(net, spec, [layer], params.size, "cpu", stop_at=layer).memory_format
    directions = centre_activations(net, spec, layer, x[:, :, : params.size, : params.size]).numpy()
    start = time.perf_counter()
    icons = render(net, spec, layer, directions.astype(np.float32), params=params, memory_format=fmt, progress=False)[
        "icon"
    ]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "items": len(directions), "digest": hashlib.sha256(icons.tobytes()).hexdigest()[:12]}


def measure(row: str, tuned: bool, a) -> dict:
    cmd = [sys.executable, __file__, "--child", row, "--batch", str(a.batch), "--steps", str(a.steps)]
    out = subprocess.run(cmd + (["--tuned"] if tuned else []), check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="processes per row and setting, alternating")
    ap.add_argument("--batch", type=int, default=8, help="icons per render call (the demo's 8)")
    ap.add_argument("--steps", type=int, default=96, help="render steps (the demo's 96)")
    ap.add_argument("--quick", action="store_true", help="16 steps, one repetition (a smoke run)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.tuned, a.batch, a.steps)))
        return
    if a.quick:
        a.steps, a.reps = 16, 1
    import torch

    torch.set_num_threads(1)  # as every measuring process: machine() reports it
    print(machine())
    rows, ratios = [], []
    for row, _, size in ROWS:
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for r in range(a.reps):
            for tuned in (False, True) if r % 2 == 0 else (True, False):
                runs[tuned].append(measure(row, tuned, a))
        speed = {t: median([m["items"] / m["seconds"] for m in ms]) for t, ms in runs.items()}
        same = len({m["digest"] for ms in runs.values() for m in ms}) == 1
        ratio = speed[True] / speed[False]
        ratios.append(ratio)
        unit = "images/s" if size is None else "icons/s"
        rows.append(
            [row, f"{speed[False]:.3g} {unit}", f"{speed[True]:.3g} {unit}", f"{ratio:.2f}", "yes" if same else "NO"]
        )
        print(rows[-1], flush=True)
    print(f"batch {a.batch}, {a.steps} steps, one torch thread, {a.reps} processes per row and setting, medians")
    print(table(["row", "glibc defaults", "keep_freed_memory", "ratio", "same output"], rows))
    print(f"ratio: {float(np.median(ratios)):.2f}")


if __name__ == "__main__":
    main()
