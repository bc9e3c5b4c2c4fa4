#!/usr/bin/env bash
# One prepared run of the benchmarks on a CUDA machine, under 10 minutes in all:
#   1. bench_render on cuda (Lucent vs actlas, batch sweep 1..256, bf16 autocast too)
#   2. bench_collect on cuda (bare loop vs actlas collect vs loader only, bf16 too)
#   3. a 40x40 atlas from ~100k activations of the shared photos, end to end with Snakemake
# Usage (repository root, with ../shared/assets beside it):  bash benchmarks/gpu.sh [OUT_DIR]
# Output: OUT_DIR (default $OUT, else /tmp/actlas-gpu) gets one log per step and summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/actlas-gpu}}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PATH="$(dirname "$(command -v "$PY")"):$PATH"
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$HOME/.cache/actlas/numba}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
START=$(date +%s)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$SUMMARY" || true
"$PY" - <<'PY' 2>&1 | tee -a "$SUMMARY"
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch: this script is for a GPU machine"
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0),
      "bf16", torch.cuda.is_bf16_supported())
PY
[ "${PIPESTATUS[0]}" = 0 ] || { say "no CUDA: stopping"; exit 1; }

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its log, copy its last line
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  say "== $name: rc $rc, $(( $(date +%s) - t0 )) s; last line: $(tail -n 1 "$OUT/$name.log")"
}

# 1. render: 96 steps (the demo's), 80 px icons; headline batch 256; sweep 1..256; bf16 too.
step render 150 "$PY" benchmarks/bench_render.py --device cuda --steps 96 --amp --reps 3 --lucent-icons 4

# 2. collect: 1,000 photos, 4 decoding workers, bf16 too.
step collect 120 "$PY" benchmarks/bench_collect.py --device cuda --images 1000 --workers 4 --batch-size 64 --amp

# 3. a 40x40 atlas from ~100k activations: 2,300 photos x 44 positions = 101,200 samples.
RUN="$OUT/atlas40"
rm -rf "$RUN"
mkdir -p "$RUN"
cat > "$RUN/config.yaml" <<YAML
run_dir: $RUN/run
model: $PWD/../shared/assets/models/mobilenet_v2_imagenet.json
images: [$PWD/../shared/assets/images/imagenet-val, $PWD/../shared/assets/images/imagenet-sample]
device: cuda
layers: [features.13]
collect: {shard_size: 1200, positions: 44, batch_size: 64, chunk: 256, workers: 4, threads: 4, amp: true}
layout: {pca: 50}
grid: {sizes: [40]}
render: {size: 80, steps: 96, batch_size: 256, cells_per_job: 512, threads: 4, amp: true}
YAML
step atlas40 300 "$PY" -m snakemake --snakefile "$PWD/Snakefile" --directory "$PWD" --cores 8 \
  --configfile "$RUN/config.yaml" --rerun-incomplete
if [ -f "$RUN/run/manifest.json" ]; then
  "$PY" -m actlas info "$RUN/run" > "$OUT/atlas40-info.json" 2>&1
  "$PY" - "$RUN/run" <<'PY' 2>&1 | tee -a "$SUMMARY"
import csv, json, sys
from pathlib import Path
run = Path(sys.argv[1])
m = json.loads((run / "manifest.json").read_text())
lay = m["layers"]["features.13"]
print("atlas40:", m["collect"]["images"], "images,", lay["layout"]["samples"], "samples, layout",
      lay["layout"]["backend"], lay["layout"]["total_seconds"], "s;",
      {g: (v["cells"], v["render_seconds"], v["faithfulness"]["median"]) for g, v in lay["grids"].items()},
      "(cells, render s, median faithfulness)")
for tsv in sorted((run / "benchmarks").glob("*/*.tsv")):
    row = next(csv.DictReader(open(tsv), delimiter="\t"))
    print(f"  {tsv.parent.name}/{tsv.stem}: {float(row['s']):.1f} s, max_rss {row['max_rss']} MB")
PY
fi
say "total: $(( $(date +%s) - START )) s"
