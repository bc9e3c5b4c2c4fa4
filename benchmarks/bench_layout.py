"""Seconds and peak memory of the layout stage on real activations: cold vs warm numba cache, with/without
PCA, and against umap-learn alone.

The activations are every position of the shared photos at the layer (collected once into a
scratch store under /tmp, reused by later runs). Each measurement runs ``actlas.layout.layout``
in a fresh child process: "cold" with an empty temporary NUMBA_CACHE_DIR (umap-learn's JIT
compiles everything), then "warm" with that same directory (the second run loads the
compiled code from the cache). Peak memory is the child's VmHWM (its ``ru_maxrss`` would include
the RSS of the parent it was forked from, which Linux keeps across exec).

Baseline: ``umap.UMAP(n_neighbors=20, min_dist=0.01, metric="cosine").fit_transform(x)`` alone
(pynndescent's neighbour search), in a fresh process on the same warm numba cache, for the
no-PCA rows. actlas differs in its neighbour search (exact, batched in torch, below a size;
see ``actlas.layout.use_exact_knn``), not in UMAP's optimisation.

Usage: .venv/bin/python benchmarks/bench_layout.py [--quick]
Last line: ``ratio: X`` = umap-learn alone / actlas (warm, largest size, no PCA): higher is better.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import LAYER, MODEL, machine, photos, table, write_shard

SCRATCH = Path(os.environ.get("ACTLAS_BENCH_SCRATCH", "/tmp/actlas-bench-layout"))

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
from actlas.layout import layout
x = np.load(sys.argv[1], mmap_mode="r")[: int(sys.argv[2])]
x = np.asarray(x, dtype=np.float32)
t1 = time.perf_counter()
if sys.argv[5] == "plain":
    import umap
    coords = umap.UMAP(n_neighbors=20, min_dist=0.01, metric="cosine", random_state=0).fit_transform(x)
    info = {"backend": "umap-learn alone", "knn": "pynndescent"}
else:
    coords, info = layout(x, pca_components=int(sys.argv[3]), seed=0, backend=sys.argv[4])
t2 = time.perf_counter()
assert coords.shape == (len(x), 2) and np.isfinite(coords).all()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]  # peak RSS of this exec'd image
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"layout_s": t2 - t1, "total_s": t2 - t0, "maxrss_mb": peak,
                  "backend": info["backend"], "knn": info.get("knn", "-")}))
"""


def activations(n_max: int) -> Path:
    """All-position activations of the shared photos at LAYER, float16 (n, C), cached as .npy."""
    for have in sorted(SCRATCH.glob("activations-*.npy"), key=lambda p: int(p.stem.split("-")[1])):
        if int(have.stem.split("-")[1]) >= n_max:  # a larger set serves: the child takes its first n rows
            return have
    path = SCRATCH / f"activations-{n_max}.npy"
    from actlas.data import store
    from actlas.stages.collect import collect

    per_image = 12 * 12  # features.13 is 14 x 14; collect keeps a 1-position margin
    rows = photos(-(-n_max // per_image))
    shard = write_shard(rows, SCRATCH / "shard-00000.txt")
    out = SCRATCH / "collect" / f"shard-{n_max}.zarr"
    print(f"collecting every position of {len(rows)} photos into {out}", file=sys.stderr, flush=True)
    collect(shard, out, MODEL, [LAYER], positions=0, attr_top=1, batch_size=32, progress=False)
    x = store.read([out], f"{LAYER}/activation")[:n_max]
    np.save(path, x)
    return path


def run_child(data: Path, n: int, pca: int, cache: str, backend: str, which: str = "actlas") -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), str(n), str(pca), backend, which],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="under 3 minutes: 10k cold and warm, 30k warm and umap-learn alone; no PCA"
    )
    ap.add_argument("--sizes", default=None, help="comma-separated sample counts (10000,50000,100000)")
    ap.add_argument("--pca", type=int, default=50, help="PCA components of the 'with PCA' runs")
    ap.add_argument("--backend", default="auto", help="auto, umap-learn or cuml")
    a = ap.parse_args()
    sizes = (
        [int(s) for s in a.sizes.split(",")]
        if a.sizes
        else ([10_000, 30_000] if a.quick else [10_000, 50_000, 100_000])
    )
    data = activations(max(sizes))
    n_have = len(np.load(data, mmap_mode="r"))
    results = []
    with tempfile.TemporaryDirectory(prefix="numba-") as first_cache:
        for n in sizes:
            for pca in (0, a.pca):
                if a.quick and pca:
                    continue
                # quick: sizes after the first reuse the first size's (warm) cache and skip the cold run
                reuse = a.quick and n != sizes[0]
                with tempfile.TemporaryDirectory(prefix="numba-") as fresh:  # empty: the first run compiles
                    cache = first_cache if (reuse or (n == sizes[0] and not pca)) else fresh
                    cold = None
                    if not reuse:
                        print(f"n={n} pca={pca} cold", file=sys.stderr, flush=True)
                        cold = run_child(data, n, pca, cache, a.backend)
                    print(f"n={n} pca={pca} warm", file=sys.stderr, flush=True)
                    warm = run_child(data, n, pca, cache, a.backend)  # second run, same cache
                    plain = None
                    if not pca and (not a.quick or n == sizes[-1]):
                        print(f"n={n} umap-learn alone, warm", file=sys.stderr, flush=True)
                        plain = run_child(data, n, 0, cache, a.backend, "plain")
                results.append((min(n, n_have), pca, cold, warm, plain))
    print(f"# bench_layout: {machine()}")
    print(
        f"# layer {LAYER} activations of the shared photos (every position), UMAP n_neighbors 20, cosine; "
        f"each run a fresh process"
    )
    rows = []
    for n, pca, cold, warm, plain in results:
        rows.append(
            [
                n,
                pca or "-",
                round(cold["layout_s"], 1) if cold else "-",
                round(warm["layout_s"], 1),
                round(cold["layout_s"] - warm["layout_s"], 1) if cold else "-",
                round(max(warm["maxrss_mb"], cold["maxrss_mb"] if cold else 0)),
                f"{warm['backend']}, knn {warm['knn']}",
                round(plain["layout_s"], 1) if plain else "-",
                round(plain["layout_s"] / warm["layout_s"], 2) if plain else "-",
            ]
        )
    print(
        table(
            [
                "samples",
                "PCA",
                "cold s (empty numba cache)",
                "warm s (second run)",
                "JIT s saved",
                "peak RSS MB",
                "backend",
                "umap-learn alone s (warm)",
                "x faster",
            ],
            rows,
        )
    )
    print("(seconds: layout() call in the child, excluding interpreter start and data load)")
    last = [r for r in results if r[1] == 0][-1]
    print(f"actlas warm layout of {last[0]} samples: {last[3]['layout_s']:.1f} s")
    print(f"ratio: {last[4]['layout_s'] / last[3]['layout_s']:.2f}")


if __name__ == "__main__":
    main()
