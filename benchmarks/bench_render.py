"""Icons per second: actlas's batched renderer vs Lucent's ``render_vis`` (one image per call).

Same model (the shared MobileNetV2 card), layer, icon size, step count, Adam learning rate, FFT
parameterisation with decorrelated colour, and robustness transforms (pad 12, jitter 8, scale,
rotate, jitter 4); the network input is the padded icon in both (Lucent's ``fixed_image_size``
keeps it from upsampling to 224). Directions are real: centre-free activation vectors of the
shared photos at the layer, whitened as the pipeline whitens them.

Objective: actlas maximises dot(h, v) * cos(h, v) ** power at the layer's centre; the closest
Lucent objective is ``direction_neuron`` (cosine with v at the centre). Both are a handful of
element-wise ops on a (B, C) vector, negligible next to the network's forward and backward.

Each renderer has its own model: Lucent's ``render_vis`` adds a forward hook to every module on each
call and never removes it, so Lucent runs on a deep copy whose leftover hooks are cleared after each
call (every call then costs what a first call costs), and actlas runs on the original, which must
end the run with no forward hook (checked, and printed).

Usage: .venv/bin/python benchmarks/bench_render.py [--quick] [--device cpu|cuda]
Last line: ``ratio: X`` = actlas icons/s (batch --batch) / Lucent icons/s.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import LAYER, MODEL, interleave, machine, median, photos, table


def real_directions(net, spec, n: int, device, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n activation vectors of the layer at random positions of the shared photos (n, C), and a whitening (C, C)."""
    from actlas.layout import moments, whitening
    from actlas.nn.layers import capture, run_until

    rows = photos(24, seed)
    from actlas.data import decode as dec

    x = torch.stack([spec.transform(dec.decode(p)[0]) for p, _ in rows]).to(device)
    with torch.no_grad(), capture(net, [LAYER], stop=True) as outs:
        h = run_until(net, spec.normalize(x), outs)[LAYER].float()  # (B, C, H, W)
    flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).cpu().numpy()
    _, cov = moments(flat)
    pick = np.random.default_rng(seed).choice(len(flat), size=min(n, len(flat)), replace=False)
    return flat[pick], whitening(cov, 1.0)


def forward_hooks(net) -> int:
    """How many forward hooks are registered on a model's modules."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


def hook_ids(net) -> list[tuple[set, set]]:
    """The ids of every module's forward (pre-)hooks, in ``net.modules()`` order."""
    return [(set(m._forward_hooks), set(m._forward_pre_hooks)) for m in net.modules()]


def clear_hooks(net, keep: list[tuple[set, set]]) -> None:
    """Remove the forward hooks added since ``keep = hook_ids(net)`` (what Lucent's ``render_vis``
    leaves behind); the model's own hooks (the card's logits hook) stay."""
    for m, (fwd, pre) in zip(net.modules(), keep):
        for key in [k for k in m._forward_hooks if k not in fwd]:
            del m._forward_hooks[key]
        for key in [k for k in m._forward_pre_hooks if k not in pre]:
            del m._forward_pre_hooks[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, repetitions and batch sizes (< 3 min on 2 CPUs)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--steps", type=int, default=None, help="optimisation steps per icon (96, the demo's; --quick 8)")
    ap.add_argument(
        "--batch", type=int, default=None, help="actlas batch of the headline ratio (64, --quick 32; 256 on cuda)"
    )
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--lucent-icons", type=int, default=None, help="icons Lucent renders per repetition")
    ap.add_argument("--sweep", default=None, help="comma-separated actlas batch sizes")
    ap.add_argument("--amp", action="store_true", help="also time actlas with bf16 autocast (if supported)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    steps = a.steps or (8 if a.quick else 96)
    batch = a.batch or (256 if cuda else 32 if a.quick else 64)
    reps = a.reps or 3
    n_lucent = a.lucent_icons or (4 if cuda else 2)
    if a.sweep:
        sweep = [int(s) for s in a.sweep.split(",")]
    elif a.quick:
        sweep = [1, 4, 16, 64] if not cuda else [1, 8, 32, 128, 256]
    else:
        sweep = [1, 2, 4, 8, 16, 32, 64, 128, 256]

    warnings.filterwarnings("ignore")
    try:
        from lucent.optvis import objectives as lobj
        from lucent.optvis import param as lparam
        from lucent.optvis import render as lrender
        from lucent.optvis import transform as ltrans

        have_lucent = True
    except ImportError as err:  # pip install '.[bench]' (torch-lucent) for the real baseline
        print(f"Lucent not importable ({err}); the baseline is actlas at batch 1, one icon per call", file=sys.stderr)
        have_lucent = False

    from actlas.models.load import load_model
    from actlas.settings import RenderParams
    from actlas.viz import objectives
    from actlas.viz.render import centre_activations
    from actlas.viz.render import render as render_icons

    device = torch.device(a.device)
    net, spec = load_model(MODEL)
    net.to(device).eval()
    if cuda:  # as the pipeline's render stage does (both renderers get the same model)
        net.to(memory_format=torch.channels_last)
    directions, white = real_directions(net, spec, max(max(sweep), batch, n_lucent), device)
    # Lucent's own model: its hooks never touch the model actlas is timed on
    lucent_net = copy.deepcopy(net)
    own_hooks, lucent_keep = forward_hooks(net), hook_ids(lucent_net)
    targets = directions @ white.T
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    lucent_layer = LAYER.replace(".", "_")  # Lucent joins module names with "_"
    pad = 12

    def lucent(k: int):
        if not have_lucent:
            return np.stack([actlas(1)["icon"][0] / 255.0 for _ in range(k)]).astype(np.float32)
        icons = []
        for i in range(k):
            out = lrender.render_vis(
                lucent_net,
                lobj.direction_neuron(lucent_layer, torch.from_numpy(targets[i]).to(device)),
                param_f=lambda: lparam.image(a.size),  # fft=True, decorrelate=True, sd=0.01 (as actlas)
                optimizer=lambda p: torch.optim.Adam(p, lr=0.05),
                transforms=ltrans.standard_transforms + [spec.normalize],
                preprocess=False,
                thresholds=(steps,),
                show_image=False,
                progress=False,
                fixed_image_size=a.size + 2 * pad,
            )
            clear_hooks(lucent_net, lucent_keep)  # the hooks render_vis left: the next call starts as the first did
            icons.append(out[-1][0])
        return np.stack(icons)

    def actlas(k: int, amp: bool = False):
        extra = {"amp": True} if amp else {}
        p = RenderParams(size=a.size, steps=steps, batch_size=k, pad=pad, jitter=8, lr=0.05, **extra)
        return render_icons(net, spec, LAYER, directions[:k], whitening=white, params=p, device=device, progress=False)

    def sync(fn):
        def run():
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            return out

        return run

    # Warm-up (allocator, oneDNN/cuDNN kernel choice), not timed.
    lucent(1)
    actlas(2)

    cases = {"lucent": sync(lambda: lucent(n_lucent)), f"actlas b={batch}": sync(lambda: actlas(batch))}
    amp_ok = a.amp and "amp" in RenderParams.__dataclass_fields__
    if amp_ok:
        cases[f"actlas b={batch} bf16"] = sync(lambda: actlas(batch, amp=True))
    print("timing", list(cases), file=sys.stderr, flush=True)
    times = interleave(cases, reps)
    ips = {name: (n_lucent if name == "lucent" else batch) / median(t) for name, t in times.items()}
    base = ips["lucent"]

    # Quality at equal steps: faithfulness (cosine of the icon's centre activation with the direction).
    k = min(n_lucent, batch)
    luc = torch.from_numpy(lucent(k)).permute(0, 3, 1, 2).to(device)
    faith_l = objectives.cosine(centre_activations(net, spec, LAYER, luc), torch.from_numpy(directions[:k]).to(device))
    faith_a = actlas(batch)["faithfulness"][:k]

    sweep_rows = []
    for b in sweep:
        print(f"sweep batch {b}", file=sys.stderr, flush=True)
        t = interleave({"a": sync(lambda b=b: actlas(b))}, 1 if (a.quick or b >= 128) else 2)["a"]
        sweep_rows.append([b, round(b / median(t), 2), round(b / median(t) / base, 2)])

    print(f"# bench_render: {machine()}")
    if not have_lucent:
        print("# baseline 'lucent' is actlas at batch 1 (Lucent not installed)")
    print(
        f"# model {spec.name}, layer {LAYER}, icon {a.size}px (+pad {pad}), {steps} steps, "
        f"{reps} interleaved reps (medians)"
    )
    print(
        table(
            ["renderer", "icons/s", "x Lucent", "median s / rep"],
            [[name, round(v, 3), round(v / base, 2), round(median(times[name]), 2)] for name, v in ips.items()],
        )
    )
    print()
    print(
        f"faithfulness at {steps} steps, first {k} directions: Lucent {np.round(faith_l.cpu().numpy(), 3).tolist()}, "
        f"actlas {np.round(faith_a, 3).tolist()}"
    )
    print()
    print("actlas batch-size sweep (one call per batch; Lucent renders one icon per call):")
    print(table(["batch", "icons/s", "x Lucent"], sweep_rows))
    print(
        f"forward hooks on actlas's model: {forward_hooks(net)} at the end, {own_hooks} at the start "
        "(the card's own; Lucent ran on its own deep copy)"
    )
    assert forward_hooks(net) == own_hooks, "a renderer left hooks on actlas's model"
    print(f"ratio: {ips[f'actlas b={batch}'] / base:.2f}")


if __name__ == "__main__":
    main()
