"""Images per second: ``actlas.collect.collect`` vs a bare forward+backward loop on preprocessed batches.

Two rows, each with its own baseline measured in the same run: the shared MobileNetV2 on the
shared ImageNet photos (layer ``features.13``, where the network dominates), and the built-in
CIFAR-10 ResNet-20 (``config/models/cifar10_resnet20.json``) on ``cifar10-test`` photos (layer
``layer3``, batch 256, where per-image overhead would dominate: the network runs at about 1,600
photos/s on 2 cores).

actlas collect does everything a shard job does: load the model, decode and preprocess the photos
in a DataLoader, one forward and ``attr_top`` backward passes per batch, sample positions, gather
rows and write the Zarr store. The bare loop runs the same model on the same images, already
decoded and preprocessed into memory, with the same forward and the same ``attr_top`` gradients
of the top logits with respect to the layer's output, and keeps nothing. The loader-only row
decodes and preprocesses with the same DataLoader settings and runs no model. A second bare loop
runs the model as collect runs it (BatchNorm folded into the convolutions, ``actlas.layers.fold_batchnorm``,
and in ``actlas.nn.fastpaths.memory_format_for``'s format: channels_last where the model runs in it, 1.3 to
1.6 times as fast on CPU), so the overhead it
prints beside the ratio is collect's own, without that gain.

Usage: .venv/bin/python benchmarks/bench_collect.py [--quick] [--device cpu|cuda] [--models mobilenet,resnet20]
One ``ratio: X`` line per row (``ratio (MODEL): X`` before it names the row); the last line is the
ResNet-20's when it runs. ratio = bare seconds / actlas seconds (1.0 = no overhead; >= 0.8 meets
the <= 25 % overhead goal).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import ASSETS, LAYER, MODEL, ROOT, interleave, machine, median, photos, table, write_shard


@dataclass(frozen=True)
class Row:
    """One model of the benchmark and its defaults."""

    name: str
    model: str
    layer: str
    images: int  # photos per repetition
    quick_images: int
    batch_size: int
    positions: int
    workers: int
    chunk: int  # photos per committed chunk


ROWS = {
    "mobilenet": Row("mobilenet", MODEL, LAYER, 1000, 160, 32, 4, 1, 256),
    "resnet20": Row(
        "resnet20", str(ROOT / "config" / "models" / "cifar10_resnet20.json"), "layer3", 2000, 1000, 256, 1, 0, 1024
    ),  # the collect settings of config/cifar10.yaml
}


def cifar_photos(limit: int, seed: int = 0) -> list[tuple[str, int]]:
    """(path, label) rows of ``cifar10-test``, a deterministic selection of ``limit`` of them."""
    from actlas.data import images
    from actlas.models.load import load_model

    _, spec = load_model(ROWS["resnet20"].model)
    rows = images.list_images(str(ASSETS / "images" / "cifar10-test"), spec.synsets, spec.categories)
    return images.select(sorted(set(rows)), limit, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="fewer photos (MobileNetV2 160, ResNet-20 1000; < 2 min on 2 CPUs)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="mobilenet,resnet20", help="rows to run, in order: mobilenet, resnet20")
    ap.add_argument(
        "--images",
        type=int,
        default=None,
        help="photos per repetition (default per row: 1000 / 2000; --quick 160 / 1000)",
    )
    ap.add_argument("--batch-size", type=int, default=None, help="default per row: 32 / 256")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default per row: 1 / 0)")
    ap.add_argument("--positions", type=int, default=None, help="default per row: 4 / 1")
    ap.add_argument("--attr-top", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--amp", action="store_true", help="also time collect with bf16 autocast (if supported)")
    ap.add_argument(
        "--profile", metavar="FILE", help="write a cProfile of one actlas collect to FILE (per row: FILE.NAME)"
    )
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        ap.error(f"unknown --models {unknown}; choose from {list(ROWS)}")
    print(f"# bench_collect: {machine()}")
    ratios = {}
    for name in names:
        ratios[name] = bench_row(ROWS[name], a)
    for name, ratio in ratios.items():
        print(f"ratio ({name}): {ratio:.3f}")
    print(f"ratio: {ratios[names[-1]]:.3f}")


def bench_row(row: Row, a) -> float:
    """Time the bare loop, actlas collect and the loader alone for one row; prints its table; returns its ratio."""
    n = a.images or (row.quick_images if a.quick else row.images)
    batch_size = a.batch_size or row.batch_size
    workers = row.workers if a.workers is None else a.workers
    positions = row.positions if a.positions is None else a.positions
    cuda = a.device.startswith("cuda")
    model, layer_name = row.model, row.layer

    from actlas.data import decode as dec
    from actlas.models.load import load_model
    from actlas.nn.layers import get_layer
    from actlas.stages.collect import ShardImages
    from actlas.stages.collect import collate as _collate
    from actlas.stages.collect import collect as collect_shard

    tmp = Path(tempfile.mkdtemp(prefix="actlas-bench-collect-"))
    rows = cifar_photos(n) if row.name == "resnet20" else photos(n)
    n = len(rows)
    shard = write_shard(rows, tmp / "shard-00000.txt")
    net, spec = load_model(model)
    device = torch.device(a.device)
    net.to(device).eval()

    # Preprocessed in memory first (not timed): the bare loop's input. Two bare loops: the model as
    # loaded (contiguous: the baseline, and the ratio's), and the model in the memory format
    # collect runs it in (channels_last where the model runs in it) with BatchNorm folded, which leaves
    # only the overhead.
    import copy

    from actlas.nn.fastpaths import fold_batchnorm, memory_format_for

    x_all = torch.stack([spec.transform(dec.decode(p)[0]) for p, _ in rows])
    fast = copy.deepcopy(net)
    fold_batchnorm(fast, spec, [layer_name], tuple(spec.input_size), device)
    fmt = memory_format_for(fast, spec, None, tuple(spec.input_size), device)
    loops = {}
    for key, model_, x_in in (("plain", net, x_all), ("format", fast, x_all.contiguous(memory_format=fmt))):
        batches = [x_in[i : i + batch_size] for i in range(0, n, batch_size)]
        if cuda:
            batches = [b.pin_memory() for b in batches]
        loops[key] = (model_, get_layer(model_, layer_name), batches)

    def bare(key: str = "plain"):
        net, layer, batches = loops[key]
        for x in batches:
            x = x.to(device, non_blocking=True)
            saved = {}

            def hook(_m, _i, out):
                out = out.detach().requires_grad_()
                saved["h"] = out
                return out

            handle = layer.register_forward_hook(hook)
            try:
                with torch.enable_grad():
                    logits = net(spec.normalize(x))
                    top = logits.detach().topk(a.attr_top, dim=1).indices
                    for j in range(a.attr_top):
                        (g,) = torch.autograd.grad(
                            logits.gather(1, top[:, j : j + 1]).sum(), saved["h"], retain_graph=j < a.attr_top - 1
                        )
                        (saved["h"].detach() * g).sum(1)
            finally:
                handle.remove()
        if cuda:
            torch.cuda.synchronize()

    counter = iter(range(10**6))

    def actlas(amp: bool = False):
        out = tmp / f"run-{next(counter)}.zarr"
        extra = {"amp": True} if amp else {}
        summary = collect_shard(
            shard,
            out,
            model,
            [layer_name],
            positions=positions,
            attr_top=a.attr_top,
            batch_size=batch_size,
            chunk=row.chunk,
            workers=workers,
            device=a.device,
            progress=False,
            threads=a.threads,
            **extra,
        )
        shutil.rmtree(out, ignore_errors=True)
        return summary

    def loader():
        dl = torch.utils.data.DataLoader(
            ShardImages(rows, spec), batch_size=batch_size, num_workers=workers, collate_fn=_collate, pin_memory=cuda
        )
        for x, *_ in dl:
            x.to(device, non_blocking=True)

    # Warm-up, not timed.
    bare()
    bare("format")
    summary = actlas()
    assert summary["images"] == n and summary["skipped"] == 0, summary

    if a.profile:
        import cProfile

        path = f"{a.profile}.{row.name}"
        cProfile.runctx("actlas()", globals(), {"actlas": actlas}, path)
        print(f"profile written to {path}", file=sys.stderr)

    fmt_case = f"bare, {str(fmt).replace('torch.', '')} (collect's format)"
    cases = {
        "bare forward+backward (in memory)": bare,
        fmt_case: lambda: bare("format"),
        "actlas collect": actlas,
        "loader only": loader,
    }
    import inspect

    if a.amp and "amp" in inspect.signature(collect_shard).parameters:
        cases["actlas collect bf16"] = lambda: actlas(amp=True)
    print(f"timing {row.name}:", list(cases), file=sys.stderr, flush=True)
    times = interleave(cases, a.reps)
    base = median(times["bare forward+backward (in memory)"])
    print(
        f"\n## {row.name}: {Path(model).name}, {n} photos, layer {layer_name}, batch {batch_size}, "
        f"workers {workers}, positions {positions}, chunk {row.chunk}, attr_top {a.attr_top}, device {a.device}, "
        f"{a.reps} interleaved reps (medians)"
    )
    print(
        table(
            ["case", "images/s", "seconds", "vs bare"],
            [
                [case, round(n / median(t), 2), round(median(t), 2), round(median(t) / base, 3)]
                for case, t in times.items()
            ],
        )
    )
    print("seconds per rep:", {case: [round(x, 2) for x in t] for case, t in times.items()})
    overhead = median(times["actlas collect"]) / base - 1
    print(f"actlas overhead over the bare loop ({row.name}): {100 * overhead:.1f} % (goal <= 25 %)")
    strict = median(times["actlas collect"]) / median(times[fmt_case]) - 1
    print(f"actlas overhead over the bare loop in collect's memory format ({row.name}): {100 * strict:.1f} %")
    shutil.rmtree(tmp, ignore_errors=True)
    return base / median(times["actlas collect"])


if __name__ == "__main__":
    main()
