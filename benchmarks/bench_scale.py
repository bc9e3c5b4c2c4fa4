"""Scaling: out-of-core layout statistics at 1M samples, collect throughput per shard count, and
Snakemake's cost per job.

    python benchmarks/bench_scale.py                   # everything (about 5-10 minutes on 2 cores)
    python benchmarks/bench_scale.py --only stats      # 1M x 512 float16 statistics, peak RSS
    python benchmarks/bench_scale.py --only collect --images 48
    python benchmarks/bench_scale.py --only overhead --jobs 200

1. stats: writes a synthetic [N, C] float16 activation store to /tmp as ``--shards`` shard stores
   (actlas.store, exactly as collect writes them, one chunk at a time), then, in a child process,
   reads them as one Dask array (actlas.store.read_dask) and computes mean, covariance
   (actlas.layout.moments) and a PCA projection (actlas.layout.pca). Prints the child's peak RSS
   (ru_maxrss) and seconds; the limit asked for is 4 GB at 1M x 512.
2. collect: the same real photos collected by Snakemake's collect rule as 1, 2 and 4 shards,
   ``--cores 2``, torch threads per job = cores / jobs at once. Images per second.
3. overhead: a rule that only touches a file, ``--jobs`` times, local Snakemake: seconds per job.

The last line is ``seconds: X``, the wall time of the statistics pass (mean, covariance, PCA).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"


# --------------------------------------------------------------------------- 1. statistics


def write_store(base: Path, n: int, c: int, shards: int, seed: int = 0) -> list[Path]:
    """``shards`` shard stores holding n x c float16 rows in total, written chunk by chunk."""
    from actlas.data import store

    rng = np.random.default_rng(seed)
    # Correlated channels with a non-zero mean, like post-ReLU activations (not white noise).
    mix = rng.normal(size=(c, c)).astype(np.float32) / np.sqrt(c)
    offset = rng.uniform(0, 2, size=c).astype(np.float32)
    col = store.Column("layer/activation", (c,), "float16")
    paths, per = [], -(-n // shards)
    for s in range(shards):
        path = base / f"shard-{s:05d}.zarr"
        group = store.open_shard(path, [col], {"synthetic": True, "shard": s})
        rows = min(per, n - s * per)
        for lo in range(0, rows, 16384):
            z = rng.standard_normal((min(16384, rows - lo), c), dtype=np.float32)
            store.append(group, {col.name: np.maximum(z @ mix + offset, 0).astype(np.float16)})
        store.finish(group)
        paths.append(path)
    return paths


STATS_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    import dask
    import importlib
    layout = importlib.import_module("actlas.layout")
    from actlas.data import store
    paths, k, rows = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    dask.config.set(scheduler="threads", num_workers=2)
    x = store.read_dask(paths, "layer/activation")
    if rows:
        x = x.rechunk({0: rows})
    t = time.perf_counter()
    mean, cov = layout.moments(x)
    t_moments = time.perf_counter() - t
    projected = layout.pca(x, k)
    seconds = time.perf_counter() - t
    print(json.dumps({"n": int(x.shape[0]), "c": int(x.shape[1]), "chunks": int(x.numblocks[0]),
                      "moments_s": round(t_moments, 2), "pca_s": round(seconds - t_moments, 2),
                      "seconds": round(seconds, 2), "projected": list(projected.shape),
                      "mean0": float(mean[0]), "cov00": float(cov[0, 0]),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def bench_stats(n: int, c: int, shards: int, k: int, rows: int, keep: Path | None) -> dict:
    base = keep or Path(tempfile.mkdtemp(prefix="actlas-scale-", dir="/tmp"))
    marker = base / f"store-{n}x{c}x{shards}.done"
    t = time.perf_counter()
    if marker.exists():
        paths = sorted(base.glob("shard-*.zarr"))
    else:
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        paths = write_store(base, n, c, shards)
        marker.touch()
    write_s = time.perf_counter() - t
    size = sum(p.stat().st_size for s in paths for p in s.rglob("*") if p.is_file())
    try:
        out = subprocess.run(
            [sys.executable, "-c", STATS_CHILD, json.dumps([str(p) for p in paths]), str(k), str(rows)],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"statistics child failed:\n{out.stderr[-3000:]}")
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result.update(write_s=round(write_s, 1), store_gb=round(size / 1e9, 3), child_peak_rss_mb=round(child_peak))
    return result


# --------------------------------------------------------------------------- 2. collect throughput


def bench_collect(n_images: int, parallel: list[int], cores: int) -> list[dict]:
    import yaml

    card = ASSETS / "models" / "mobilenet_v2_imagenet.json"
    photos = ASSETS / "images" / "imagenet-val"
    if not card.exists():
        print(f"collect: skipped, shared assets not found at {ASSETS}")
        return []
    results = []
    for p in parallel:
        work = Path(tempfile.mkdtemp(prefix=f"actlas-collect{p}-"))
        cfg = {
            "run_dir": str(work / "run"),
            "model": str(card),
            "images": [str(photos)],
            "limit": n_images,
            "seed": 0,
            "layers": ["features.13"],
            "device": "cpu",
            # Shards are split by a hash of the path, so "p shards" are about, not exactly, n/p images.
            "collect": {
                "shard_size": -(-n_images // p),
                "positions": 4,
                "batch_size": 16,
                "chunk": 16,
                "threads": max(1, cores // p),
            },
        }
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(ROOT),
            "--configfile",
            str(work / "config.yaml"),
            "--cores",
            str(cores),
            "--until",
            "collect",
            "--quiet",
        ]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        t = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if out.returncode:
            raise RuntimeError(f"snakemake failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        shards = len(list((work / "run" / "shards").glob("shard-*.txt")))
        job_s = [
            float((f.read_text().splitlines()[1]).split("\t")[0])
            for f in (work / "run" / "benchmarks" / "collect").glob("*.tsv")
        ]
        results.append(
            {
                "shards": shards,
                "threads_per_job": cfg["collect"]["threads"],
                "images": n_images,
                "seconds": round(seconds, 1),
                "images_per_s": round(n_images / seconds, 2),
                "job_seconds": sorted(round(s, 1) for s in job_s),
            }
        )
        shutil.rmtree(work, ignore_errors=True)
    return results


# --------------------------------------------------------------------------- 3. per-job overhead


TRIVIAL = textwrap.dedent(
    """
    N = int(config["count"])

    rule all:
        input: expand("out/{i}.txt", i=range(N))

    rule touch:
        output: "out/{i}.txt"
        shell: "touch {output}"
    """
)


def bench_overhead(jobs: int, cores: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="actlas-overhead-"))
    (work / "Snakefile").write_text(TRIVIAL)
    seconds = {}
    for n in (1, jobs):
        shutil.rmtree(work / "out", ignore_errors=True)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", str(cores), "--config", f"count={n}", "--quiet"],
            cwd=work,
            check=True,
            capture_output=True,
        )
        seconds[n] = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    per_job = (seconds[jobs] - seconds[1]) / (jobs - 1)
    return {
        "jobs": jobs,
        "cores": cores,
        "one_job_s": round(seconds[1], 2),
        "all_jobs_s": round(seconds[jobs], 2),
        "per_job_s": round(per_job, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["stats", "collect", "overhead"], action="append")
    ap.add_argument("--n", type=int, default=1_000_000, help="samples of the synthetic store")
    ap.add_argument("--channels", type=int, default=512)
    ap.add_argument("--shards", type=int, default=8, help="shard stores the synthetic samples are split into")
    ap.add_argument("--pca", type=int, default=50)
    ap.add_argument("--rows", type=int, default=32768, help="rows per Dask block (0: the stores' own chunks)")
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the synthetic store in this folder")
    ap.add_argument("--images", type=int, default=48, help="photos collected per shard count")
    ap.add_argument("--parallel", default="1,2,4")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args()
    only = set(args.only or ["stats", "collect", "overhead"])
    stats = None
    if "overhead" in only:
        print("overhead:", json.dumps(bench_overhead(args.jobs, args.cores)), flush=True)
    if "collect" in only:
        for r in bench_collect(args.images, [int(p) for p in args.parallel.split(",")], args.cores):
            print("collect:", json.dumps(r), flush=True)
    if "stats" in only:
        stats = bench_stats(args.n, args.channels, args.shards, args.pca, args.rows, args.keep)
        print("stats:", json.dumps(stats), flush=True)
        print(
            f"peak RSS of the statistics process: {stats['peak_rss_mb'] / 1024:.2f} GB "
            f"({stats['n']} x {stats['c']} float16, {stats['store_gb']} GB on disk)"
        )
    if stats:
        print(f"seconds: {stats['seconds']}")


if __name__ == "__main__":
    main()
