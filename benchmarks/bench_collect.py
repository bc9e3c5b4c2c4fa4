"""Images per second: ``actlas.collect.collect`` vs a bare forward+backward loop on preprocessed batches.

actlas collect does everything a shard job does: load the model, decode and preprocess the photos
in a DataLoader, one forward and ``attr_top`` backward passes per batch, sample positions, gather
rows and write the Zarr store. The bare loop runs the same model on the same images, already
decoded and preprocessed into memory, with the same forward and the same ``attr_top`` gradients
of the top logits with respect to the layer's output, and keeps nothing. The loader-only row
decodes and preprocesses with the same DataLoader settings and runs no model.

Usage: .venv/bin/python benchmarks/bench_collect.py [--quick] [--device cpu|cuda]
Last line: ``ratio: X`` = bare seconds / actlas seconds (1.0 = no overhead; >= 0.8 meets the
<= 25 % overhead goal).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import LAYER, MODEL, interleave, machine, median, photos, table, write_shard  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="160 images (< 3 min on 2 CPUs)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=None, help="photos per repetition (1000; --quick 160)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--positions", type=int, default=4)
    ap.add_argument("--attr-top", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--amp", action="store_true", help="also time collect with bf16 autocast (if supported)")
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of one actlas collect to FILE")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    n = a.images or (160 if a.quick else 1000)
    cuda = a.device.startswith("cuda")

    from actlas import images as imgs
    from actlas.collect import ShardImages, _collate
    from actlas.collect import collect as collect_shard
    from actlas.layers import get_layer
    from actlas.models import load_model

    tmp = Path(tempfile.mkdtemp(prefix="actlas-bench-collect-"))
    rows = photos(n)
    shard = write_shard(rows, tmp / "shard-00000.txt")
    net, spec = load_model(MODEL)
    device = torch.device(a.device)
    net.to(device).eval()

    # Preprocessed in memory first (not timed): the bare loop's input.
    x_all = torch.stack([spec.transform(imgs.decode(p)[0]) for p, _ in rows])
    batches = [x_all[i : i + a.batch_size] for i in range(0, n, a.batch_size)]
    if cuda:
        batches = [b.pin_memory() for b in batches]
    layer = get_layer(net, LAYER)

    def bare():
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
                        (g,) = torch.autograd.grad(logits.gather(1, top[:, j : j + 1]).sum(), saved["h"],
                                                   retain_graph=j < a.attr_top - 1)
                        (saved["h"].detach() * g).sum(1)
            finally:
                handle.remove()
        if cuda:
            torch.cuda.synchronize()

    counter = iter(range(10**6))

    def actlas(amp: bool = False):
        out = tmp / f"run-{next(counter)}.zarr"
        extra = {"amp": True} if amp else {}
        summary = collect_shard(shard, out, MODEL, [LAYER], positions=a.positions, attr_top=a.attr_top,
                                batch_size=a.batch_size, workers=a.workers, device=a.device, progress=False,
                                threads=a.threads, **extra)
        shutil.rmtree(out, ignore_errors=True)
        return summary

    def loader():
        dl = torch.utils.data.DataLoader(ShardImages(rows, spec), batch_size=a.batch_size, num_workers=a.workers,
                                         collate_fn=_collate, pin_memory=cuda)
        for x, *_ in dl:
            x.to(device, non_blocking=True)

    # Warm-up, not timed.
    bare()
    summary = actlas()
    assert summary["images"] == n and summary["skipped"] == 0, summary

    if a.profile:
        import cProfile

        cProfile.runctx("actlas()", globals(), {"actlas": actlas}, a.profile)
        print(f"profile written to {a.profile}", file=sys.stderr)

    cases = {"bare forward+backward (in memory)": bare, "actlas collect": actlas, "loader only": loader}
    import inspect

    if a.amp and "amp" in inspect.signature(collect_shard).parameters:
        cases["actlas collect bf16"] = lambda: actlas(amp=True)
    print("timing", list(cases), file=sys.stderr, flush=True)
    times = interleave(cases, a.reps)
    base = median(times["bare forward+backward (in memory)"])
    print(f"# bench_collect: {machine()}")
    print(f"# {n} photos, layer {LAYER}, batch {a.batch_size}, workers {a.workers}, positions {a.positions}, "
          f"attr_top {a.attr_top}, device {a.device}, {a.reps} interleaved reps (medians)")
    print(table(["case", "images/s", "seconds", "vs bare"],
                [[name, round(n / median(t), 2), round(median(t), 2), round(median(t) / base, 3)]
                 for name, t in times.items()]))
    overhead = median(times["actlas collect"]) / base - 1
    print(f"actlas overhead over the bare loop: {100 * overhead:.1f} % (goal <= 25 %)")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ratio: {base / median(times['actlas collect']):.3f}")


if __name__ == "__main__":
    main()
