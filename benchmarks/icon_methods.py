"""Icon methods beyond the renderer's settings, measured on ``bench_icons.py``'s rows (issue 29, item 4).

The renderer's own optimisation (``actlas.render``) is re-run here with hooks the renderer does not
have, so that a method can be measured before it is built in:

- ``init: seed``: Feature Accentuation's start (Hamblin et al. 2024; Horama's ``accentuation``): the
  FFT parameterisation is set to the cell's nearest real sample (its photo moved so that the sample's
  position lands under the icon's centre, ``bench_icons.centred_crop``) instead of noise, and
  ``l2`` (if set) penalises the pixel distance to it: loss = -objective / |d| + l2 * mean((x - seed)^2),
  with |d| the cell direction's norm so that the weight does not depend on the layer's scale.
- ``vital``: VITAL's distribution alignment (Gorgun et al. 2025): per channel, the icon's sorted
  activations over the layer's positions are pulled towards the quantiles of the same channel over
  the cell's nearest real samples (``seeds``) at the same size: loss += vital * mean((sort(F) - q)^2)
  / mean variance of the layer. (VITAL also weighs channels by LRP relevance; not here.)
- ``maco: photos``: MaCo (Fel et al. 2023) with its magnitude taken from photos, as MaCo takes it
  from ImageNet, not from a power law (``render.param: maco``): the mean amplitude spectrum, in the
  renderer's decorrelated colour space, of the row's dataset crops at the icon's size.
- ``low``: with ``init: seed``, only the seed's frequencies up to ``low`` cycles an icon (its layout
  and colours, not its detail).
- ``cap``: the objective's dot term capped at ``cap`` times the cell mean's own, dot(d, v): past the
  magnitudes real samples reach, only the cosine counts (0: the cosine alone).
- ``render``: changes to the fitted default ``RenderParams`` (as ``bench_icons.SETTINGS``);
  ``decay_add``, added to the fitted decay; ``whitening_eps`` (the render whitening's ridge, None: none).

Columns as ``bench_icons.py`` (faithfulness median and p10, HF ratio and saturation ratio against the
cell's patches) and contact sheets ``OUT/methods-MODEL-LAYER.png``.

Usage: .venv/bin/python benchmarks/icon_methods.py [--quick] [--rows MODEL:LAYER,...] [--methods NAME,...]
       [--directions 32] [--photos 600] [--out DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_icons as bi
from _common import machine, table

from actlas.settings import RenderParams
from actlas.viz import objectives, param, render, transforms

# name -> method (see the module docstring); "default" is today's renderer
METHODS: dict[str, dict] = {
    "default": {},
    "seed only": {"init": "seed", "render": {"steps": 0}},  # the nearest real sample itself, no optimisation
    "fa": {"init": "seed"},
    "fa l2 0.1": {"init": "seed", "l2": 0.1},
    "fa l2 1": {"init": "seed", "l2": 1.0},
    "fa l2 10": {"init": "seed", "l2": 10.0},
    "vital 0.1": {"vital": 0.1},
    "vital 1": {"vital": 1.0},
    "vital 10": {"vital": 10.0},
    "fa vital 1": {"init": "seed", "vital": 1.0},
    "maco": {"render": {"param": "maco"}},
    "maco photos": {"maco": "photos"},
    "power2": {"render": {"power": 2.0}},
    "power8": {"render": {"power": 8.0}},
    "unwhitened": {"whitening_eps": None},
    # the VGG-late HF ratio: robustness and the spectrum's pace
    "jitter3": {"render": {"jitter": 3}},
    "jitter4": {"render": {"jitter": 4}},
    "lr0.0125": {"render": {"lr": 0.0125}},
    "decay+0.25": {"decay_add": 0.25},
    "scale0.2": {"render": {"scale": 0.2}},
    # Feature Accentuation at a gentler pace, or from the seed's lowest frequencies only (cycles an icon)
    "fa lr0.01": {"init": "seed", "render": {"lr": 0.01}},
    "fa low4": {"init": "seed", "low": 4},
    "fa low8": {"init": "seed", "low": 8},
    "vital 0.3": {"vital": 0.3},
    "maco lr0.25": {"render": {"param": "maco", "lr": 0.25}},
    "maco photos lr0.25": {"maco": "photos", "render": {"lr": 0.25}},
    # the objective's magnitude term capped at the cell's own: past cap x dot(d, v), only the cosine counts
    "cap1": {"cap": 1.0},
    "cap2": {"cap": 2.0},
    "cap4": {"cap": 4.0},
    "cos only": {"cap": 0.0},  # the cosine alone
}

QUICK_METHODS = ["default", "fa", "vital 1", "maco lr0.25"]
QUICK_ROWS = ["resnet20:layer3", "vgg_cifar:features.18"]


def objective(h: torch.Tensor, targets: torch.Tensor, power: float, cap: torch.Tensor | None) -> torch.Tensor:
    """``objectives.direction_cossim`` (B,), its dot term capped at ``cap`` (B,) where given: min(dot(h, v), cap) *
    max(cos(h, v), 0.1) ** power; a cap of 0 gives the cosine alone."""
    if cap is None:
        return objectives.direction_cossim(h, targets, power)
    dot = (h * targets).sum(1)
    cos = dot / (h.norm(dim=1) * targets.norm(dim=1) + 1e-4)
    return torch.where(cap > 0, torch.minimum(dot, cap) * cos.clamp(min=0.1) ** power, cos)


def seed_spectrum(images: torch.Tensor, decay_power: float) -> torch.Tensor:
    """The FFT parameterisation's spectrum (B, 3, S, S // 2 + 1, 2) whose image (``param.fft_image`` then
    ``param.to_valid_rgb``) is ``images`` (B, 3, S, S) in [0, 1], up to clipping at 1/255 of 0 and 1."""
    s = images.shape[-1]
    matrix = param.COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(param.COLOR_CORRELATION_SVD_SQRT, axis=0))
    x = images.clamp(1 / 255, 1 - 1 / 255)
    logit = torch.log(x / (1 - x))
    inverse = torch.tensor(np.linalg.inv(matrix), dtype=x.dtype)
    y = torch.einsum("bchw,dc->bdhw", logit, inverse)  # image_fn's colour step: rgb = matrix @ y
    spectrum = torch.fft.rfftn(y * 4.0, s=(s, s), norm="ortho")
    freqs = param.rfft2d_freqs(s, s)
    scale = torch.tensor(1.0 / np.maximum(freqs, 1.0 / s) ** decay_power, dtype=x.dtype)
    return torch.view_as_real(spectrum / scale[None, None]).contiguous()


def photo_magnitude(crops: np.ndarray) -> np.ndarray:
    """Mean amplitude spectrum (3, S, S // 2 + 1) of crops (N, S, S, 3) uint8 in the renderer's decorrelated
    colour space (the inverse of ``param.to_valid_rgb``'s matrix on the logits), each crop's mean removed."""
    matrix = param.COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(param.COLOR_CORRELATION_SVD_SQRT, axis=0))
    x = np.clip(crops.astype(np.float64) / 255, 1 / 255, 1 - 1 / 255)
    y = np.einsum("nhwc,dc->ndhw", np.log(x / (1 - x)), np.linalg.inv(matrix))
    y -= y.mean(axis=(2, 3), keepdims=True)
    mag = np.abs(np.fft.rfft2(y, norm="ortho")).mean(axis=0)
    mag[:, 0, 0] = 0.0
    return mag.astype(np.float32)


def maco_photo_image(phase_seeds: list[int], magnitude: np.ndarray):
    """MaCo images with a given magnitude (3, S, S // 2 + 1): (params, image_fn), as ``param.maco_image``."""
    size = magnitude.shape[1]
    mag_t = torch.tensor(magnitude)[None]
    shape = (3, size, size // 2 + 1)
    init = torch.stack(
        [(torch.rand(shape, generator=torch.Generator().manual_seed(int(s))) * 2 - 1) * np.pi for s in phase_seeds]
    )
    phase = init.requires_grad_(True)
    matrix = param.COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(param.COLOR_CORRELATION_SVD_SQRT, axis=0))

    def rgb() -> torch.Tensor:
        x = torch.fft.irfftn(torch.polar(mag_t.expand_as(phase), phase), s=(size, size), norm="ortho")
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)
        m = torch.tensor(matrix, dtype=x.dtype)
        return torch.sigmoid(torch.einsum("bchw,dc->bdhw", x, m) * 2.0)

    return [phase], rgb


def layer_map(spec, layer: str, output, x: torch.Tensor) -> torch.Tensor:
    """A layer output of any kind as a map (B, C, H, W) (``actlas.layers.layer_view``)."""
    from actlas.nn.kinds import detect_kind, layer_view

    hw = tuple(x.shape[-2:])
    return layer_view(output, detect_kind(output.shape[1:], hw, spec.layer_kind(layer), layer), hw)


def reference_quantiles(model, spec, layer: str, seeds: np.ndarray) -> torch.Tensor:
    """Per cell and channel, the quantiles of its real samples' activations over every position:
    seeds (K, P, S, S, 3) uint8 -> (K, C, N), N the positions of one S px map."""
    from actlas.nn.layers import capture, run_until

    k, p, s = seeds.shape[:3]
    x = torch.from_numpy(seeds.reshape(k * p, s, s, 3)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad(), capture(model, [layer], stop=True) as outs:
        f = layer_map(spec, layer, run_until(model, spec.normalize(x), outs)[layer], x)
    n = f.shape[2] * f.shape[3]
    pooled = f.reshape(k, p, f.shape[1], n).permute(0, 2, 1, 3).reshape(k, f.shape[1], p * n)
    q = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    return torch.quantile(pooled, q, dim=2).permute(1, 2, 0).contiguous()  # (K, C, N)


def optimise(
    model,
    spec,
    layer: str,
    directions: np.ndarray,
    whitening,
    p,
    method: dict,
    seeds: np.ndarray,
    magnitude: np.ndarray | None,
    layer_var: float,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict:
    """``render.render``'s optimisation of one batch with ``method``'s hooks -> icon (K, S, S, 3) uint8,
    faithfulness (K,), seconds. ``memory_format``: the one the caller put the model in, as ``render.render``."""
    from actlas.nn.layers import capture, run_until

    start = time.perf_counter()
    k, s = len(directions), p.size
    targets = torch.from_numpy(objectives.whiten_directions(directions, whitening))
    norms = torch.from_numpy(np.linalg.norm(directions, axis=1)).float().clamp(min=1e-6)
    cap = None
    if "cap" in method:  # the cell mean's own projection on its whitened direction, times the factor
        cap = method["cap"] * (torch.from_numpy(directions) * targets).sum(1).clamp(min=1e-6)
        if method["cap"] == 0:
            norms = torch.ones_like(norms)
    rand_seeds = [render.direction_seed(d, p.seed, 0) for d in directions]
    seed_img = torch.from_numpy(seeds[:, 0]).permute(0, 3, 1, 2).float() / 255  # the nearest sample
    if method.get("init") == "seed":
        spectrum = seed_spectrum(seed_img, p.decay_power)
        if method.get("low"):  # the seed's lowest frequencies only: its layout and colours, not its detail
            spectrum = spectrum * param.low_pass(spectrum, s, method["low"])
        spectrum = spectrum.requires_grad_(True)
        params, image_fn = [spectrum], param.to_valid_rgb(param.fft_image(spectrum, s, p.decay_power))
    elif method.get("maco") == "photos":
        params, image_fn = maco_photo_image(rand_seeds, magnitude)
    else:
        params, image_fn = param.PARAMETERISATIONS[p.param](k, s, seeds=rand_seeds, decay_power=p.decay_power)
    start_img = image_fn().detach()
    refs = reference_quantiles(model, spec, layer, seeds) if method.get("vital") else None
    draws = torch.from_numpy(
        transforms.draw(rand_seeds, max(p.steps, 1), p.jitter, max(p.jitter // 2, 0), p.scale, p.rotate)
    )
    optimizer = torch.optim.Adam(params, lr=p.lr)
    rates = render.lr_schedule(dataclasses.replace(p, steps=max(p.steps, 1)))
    best_images, best_score = None, None
    with capture(model, [layer], stop=True) as outs:

        def keep_best() -> None:
            nonlocal best_images, best_score
            with torch.no_grad():
                images = image_fn()
                h = render._centre(spec, layer, run_until(model, spec.normalize(images), outs)[layer], images)
                score = objective(h, targets, p.power, cap)
            best_images, best_score = render.keep_better(best_images, best_score, images, score)

        for step in range(p.steps):
            if p.check_every and step % p.check_every == 0:
                keep_best()
            optimizer.zero_grad(set_to_none=True)
            img = image_fn()
            x = transforms.standard(img, draws[:, step], p.pad).contiguous(memory_format=memory_format)
            out = run_until(model, spec.normalize(x), outs)[layer]
            h = render._centre(spec, layer, out, x)
            loss = -(objective(h, targets, p.power, cap) / norms).sum()
            if method.get("l2"):
                loss = loss + method["l2"] * ((img - start_img) ** 2).mean(dim=(1, 2, 3)).sum()
            if refs is not None:
                f = layer_map(spec, layer, out, x)
                f = f.reshape(f.shape[0], f.shape[1], -1).sort(dim=2).values
                q = refs if refs.shape[2] == f.shape[2] else torch.nn.functional.interpolate(refs, f.shape[2])
                loss = loss + method["vital"] * ((f - q) ** 2).mean(dim=(1, 2)).sum() / layer_var
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = rates[step]
            optimizer.step()
        keep_best()
    images = best_images.detach()
    h = render.centre_activations(model, spec, layer, images)
    faith = objectives.cosine(h, torch.from_numpy(directions)).numpy()
    icon = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return {"icon": icon, "faithfulness": faith, "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="QUICK_ROWS, QUICK_METHODS, 8 directions, 64 steps, 240 photos"
    )
    ap.add_argument("--directions", type=int, default=None, help="directions per row (32; --quick 8)")
    ap.add_argument("--steps", type=int, default=None, help="optimisation steps (128; --quick 64)")
    ap.add_argument("--photos", type=int, default=None, help="photos per model (600; --quick 240)")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--patches", type=int, default=4)
    ap.add_argument("--methods", default=None, help="comma-separated names of METHODS (all)")
    ap.add_argument("--rows", default=None, help="comma-separated MODEL:LAYER rows of bench_icons.ROWS (all)")
    ap.add_argument("--out", default="bench-icons")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    a.directions = a.directions or (8 if a.quick else 32)
    a.steps = a.steps or (64 if a.quick else 128)
    a.photos = a.photos or (240 if a.quick else 600)
    methods = a.methods.split(",") if a.methods else (QUICK_METHODS if a.quick else list(METHODS))
    a.rows = a.rows or (",".join(QUICK_ROWS) if a.quick else None)
    wanted = set(a.rows.split(",")) if a.rows else None
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    from actlas import layout as layout_core
    from actlas.models.load import load_model
    from actlas.nn.fastpaths import fast_paths

    table_rows = []
    with tempfile.TemporaryDirectory(prefix="actlas-icon-methods-") as tmp:
        for name, (model, folders, layers) in bi.ROWS.items():
            layers = [layer for layer in layers if wanted is None or f"{name}:{layer}" in wanted]
            if not layers:
                continue
            model = bi.model_block(model)
            net, spec = load_model(model)
            net.eval()
            fmt = fast_paths(net, spec, layers, tuple(spec.input_size)).memory_format  # as the render stage does
            data = bi.prepare(
                name, model, folders, layers, a.photos, a.grid, a.directions, a.patches, a.size, Path(tmp), positions=4
            )
            torch.set_num_threads(a.threads)  # the layout stage (umap-learn, numba) leaves it at the core count
            for layer in layers:
                d = data[layer]
                icons, faith = {}, {}
                layer_var = float(np.trace(d["cov"]) / len(d["cov"]))
                side = d["patches"].shape[2]
                crops = np.concatenate([d["patches"].reshape(-1, side, side, 3), d["seeds"].reshape(-1, side, side, 3)])
                magnitude = photo_magnitude(crops)
                hf_p = np.array([np.median([bi.hf_share(p) for p in ps]) for ps in d["patches"]])
                sat_p = np.array([np.mean([bi.saturation(p) for p in ps]) for ps in d["patches"]])
                # what the target allows: the whitened direction v's cosine with d, as it is and with its negative
                # part cut (a post-ReLU layer's activation is >= 0)
                v = objectives.whiten_directions(d["direction"].astype(np.float32), d["whitening"])
                cos_v = [float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(v, d["direction"])]
                relu_v = np.maximum(v, 0)
                cos_r = [
                    float(np.dot(a, b) / max(np.linalg.norm(a), 1e-12) / np.linalg.norm(b))
                    for a, b in zip(relu_v, d["direction"])
                ]
                print(
                    f"{name} {layer}: cos(v, d) median {np.median(cos_v):.3f}, cos(relu(v), d) median "
                    f"{np.median(cos_r):.3f}, share of d's channels > 0: {np.mean(d['direction'] > 0):.2f}",
                    file=sys.stderr,
                    flush=True,
                )
                for m in methods:
                    method = METHODS[m]
                    base = render.fit_to_layer(
                        RenderParams(size=a.size, steps=a.steps, batch_size=a.directions),
                        spec.input_size,
                        d["grid"],
                    )
                    p = dataclasses.replace(base, **method.get("render", {}))
                    if method.get("decay_add"):
                        p = dataclasses.replace(p, decay_power=round(p.decay_power + method["decay_add"], 3))
                    whitening = d["whitening"]
                    if "whitening_eps" in method:
                        eps = method["whitening_eps"]
                        whitening = None if eps is None else layout_core.whitening(d["cov"], eps)
                    out = optimise(
                        net,
                        spec,
                        layer,
                        d["direction"].astype(np.float32),
                        whitening,
                        p,
                        method,
                        d["seeds"],
                        magnitude,
                        layer_var,
                        fmt,
                    )
                    icons[m], faith[m] = out["icon"], out["faithfulness"]
                    hf = np.median([bi.hf_share(i) for i in out["icon"]] / np.maximum(hf_p, 1e-9))
                    sat = np.median([bi.saturation(i) for i in out["icon"]] / np.maximum(sat_p, 1e-9))
                    table_rows.append(
                        [
                            f"{name} {layer}",
                            m,
                            p.size,
                            p.pad,
                            p.jitter,
                            round(float(np.median(faith[m])), 3),
                            round(float(np.percentile(faith[m], 10)), 3),
                            round(len(out["icon"]) / out["seconds"], 3),
                            round(float(hf), 2),
                            round(float(sat), 2),
                        ]
                    )
                    print(" | ".join(map(str, table_rows[-1])), file=sys.stderr, flush=True)
                title = (
                    f"{spec.name} {layer}: {a.directions} cell directions, {a.steps} steps; rows: methods, then patches"
                )
                names = ["seed"] + [f"patch {i + 1}" for i in range(d["patches"].shape[1])]
                sheet = bi.contact_sheet(
                    icons, np.concatenate([d["seeds"][:, :1], d["patches"]], axis=1), faith, title, patch_names=names
                )
                sheet.save(out_dir / f"methods-{name}-{layer}.png")

    print(f"# icon_methods: {machine()}")
    print(
        f"# {a.directions} real cell directions per row, {a.steps} steps, {a.photos} photos per model, one repetition"
    )
    print(table(bi.COLUMNS, table_rows))
    met = ", ".join(f"{s} {n}/{4 * rows}" for s, (n, rows) in bi.targets_met(table_rows).items())
    print(f"targets met, of 4 a row: {met}")


if __name__ == "__main__":
    main()
