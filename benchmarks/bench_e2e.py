"""End to end: ``make demo``-equivalent wall time, per-stage seconds and peak RSS, and reruns.

Runs the workflow (same Snakefile, cores and flags as ``make demo``) on a copy of
config/demo.yaml whose run directory is a scratch folder (never runs/demo), from scratch; then a
no-op rerun (Snakemake's own overhead); then a rerun after changing one render parameter
(``render.lr``), which must rerun only render, atlas and what follows. Per-stage figures come from
Snakemake's benchmark files (``RUN/benchmarks/``: wall seconds, max RSS) and the run's
``manifest.json``.

Usage: .venv/bin/python benchmarks/bench_e2e.py [--quick] [--cores 2]
``--quick`` scales the demo down (200 photos, one 8x8 grid, 16 render steps, no class atlases).
Last line: ``seconds: X`` = wall time of the from-scratch run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from _common import ROOT, machine, table


def snakemake(config: Path, cores: int) -> tuple[float, list[str], str]:
    """(wall seconds, rules that ran, output tail) of one workflow run."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(ROOT),
        "--cores",
        str(cores),
        "--configfile",
        str(config),
        "--rerun-incomplete",
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    text = out.stdout + out.stderr
    if out.returncode:
        raise RuntimeError(f"snakemake failed:\n{text[-4000:]}")
    ran = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", text, flags=re.M)
    return wall, ran, text


def stage_benchmarks(run: Path) -> dict[str, dict]:
    """Per rule: jobs, summed wall seconds and the largest max_rss (MB) from RUN/benchmarks/RULE/*.tsv."""
    out: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "s": 0.0, "max_rss": 0.0})
    for tsv in sorted((run / "benchmarks").glob("*/*.tsv")):
        with open(tsv) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                rec = out[tsv.parent.name]
                rec["jobs"] += 1
                rec["s"] += float(row["s"])
                rss = row.get("max_rss", "NA")
                rec["max_rss"] = max(rec["max_rss"], float(rss) if rss not in ("NA", "-", "") else 0.0)
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--work", default="/tmp/actlas-bench-e2e", help="scratch folder (deleted first)")
    ap.add_argument("--device", default=None, help="override the config's device (cpu, cuda)")
    a = ap.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["run_dir"] = str(work / "run")
    cfg["model"] = str((ROOT / cfg["model"]).resolve())
    cfg["images"] = [str((ROOT / p).resolve()) for p in cfg["images"]]
    if a.device:
        cfg["device"] = a.device
    if a.quick:
        cfg["limit"] = 200
        cfg["grid"] = {**cfg.get("grid", {}), "sizes": [8]}
        cfg["render"] = {**cfg.get("render", {}), "steps": 16}
        for key in ("class_atlases", "comparisons"):  # 200 photos hold too few samples of the demo's classes
            cfg.pop(key, None)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = work / "run"

    wall, ran, _ = snakemake(config, a.cores)
    stages = stage_benchmarks(run)
    manifest = json.loads((run / "manifest.json").read_text())
    noop_wall, noop_ran, _ = snakemake(config, a.cores)

    cfg["render"]["lr"] = round(float(cfg["render"].get("lr", 0.05)) * 0.8, 4)
    config.write_text(yaml.safe_dump(cfg))
    re_wall, re_ran, _ = snakemake(config, a.cores)
    stages_after = stage_benchmarks(run)

    print(f"# bench_e2e: {machine()}, snakemake --cores {a.cores}")
    print(
        "# config/demo.yaml"
        + (" scaled down (--quick: 200 photos, grid 8, 16 steps, no class atlases)" if a.quick else "")
        + f", run dir {run}"
    )
    rows = [[rule, rec["jobs"], round(rec["s"], 1), round(rec["max_rss"])] for rule, rec in stages.items()]
    print(table(["stage (Snakemake benchmark files)", "jobs", "seconds (sum)", "peak RSS MB"], rows))
    lay = next(iter(manifest.get("layers", {}).values()), {})
    grids = lay.get("grids", {})
    print(
        f"manifest: {manifest['collect']['images']} images, collect {manifest['collect']['seconds']} s (summed over "
        f"shards), layout {lay.get('layout', {}).get('total_seconds')} s ({lay.get('layout', {}).get('backend')}), "
        + ", ".join(f"grid {g}: {v['cells']} icons rendered in {v['render_seconds']} s" for g, v in grids.items())
    )

    def counts(r) -> str:
        return ", ".join(f"{k} x{v}" for k, v in sorted(Counter(r).items())) or "nothing"

    print(
        table(
            ["run", "wall s", "jobs that ran"],
            [
                ["from scratch", round(wall, 1), counts(ran)],
                ["no-op rerun", round(noop_wall, 1), counts(noop_ran)],
                [f"render.lr -> {cfg['render']['lr']}", round(re_wall, 1), counts(re_ran)],
            ],
        )
    )
    if {"collect", "layout", "grid"} & set(re_ran):
        print("WARNING: changing a render parameter reran an upstream stage")
    # a rerun job rewrites its benchmark file, so after the rerun render's files hold the rerun's figures
    print(f"render seconds in the rerun (benchmark files): {stages_after.get('render', {}).get('s', 0.0):.1f}")
    print(f"seconds: {wall:.1f}")


if __name__ == "__main__":
    main()
