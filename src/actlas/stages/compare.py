"""compare: two classes side by side -> ``LAYER/compare-<a>-<b>/`` (x: attribution to A minus B; y: a 1-D layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import classes as classes_core
from .. import paths
from ..data.samples import load_samples
from ..errors import ConfigError, DataError
from ..formats.atomic import save_image
from ..models.heads import require_logits
from ..models.load import load_spec
from ..settings import Comparison, Render, RenderParams, Run
from ..text import slug
from .class_atlas import build_folder, sample_keys


def compare(
    run_dir: str | Path,
    layer: str,
    classes: tuple[str | int, str | int],
    model,
    *,
    filter: str = Comparison.filter,
    top: int = Comparison.top,
    grid: int = Comparison.grid,
    method: str = Comparison.method,
    min_count: int = Comparison.min_count,
    n_examples: int = Comparison.n_examples,
    seed: int = Run.seed,
    params: RenderParams | None = None,
    device: str = Run.device,
    threads: int | None = Render.threads,
    progress: bool = False,
    out: str | Path | None = None,
) -> Path:
    """Comparison of classes A and B -> ``LAYER/compare-<a>-<b>/atlas.json`` (+ compare.png with its axis).

    Samples: those a class atlas of A or of B would keep (``filter``, ``top``). x: attribution to A
    minus attribution to B (A right); y: 1-D layout of the activations.
    """
    if len(classes) != 2:
        raise ConfigError(f"compare needs two classes, got {list(classes)}")
    a, b = classes
    spec = load_spec(model)
    require_logits(spec, "a comparison")
    ca, cb = spec.class_index(str(a)), spec.class_index(str(b))
    if ca == cb:
        raise ConfigError(f"compare needs two different classes, got {a!r} twice")
    na, nb = spec.short_name(ca), spec.short_name(cb)
    samples = load_samples(run_dir, layer)
    rows = classes_core.dedupe(
        np.concatenate(
            [
                classes_core.select_samples(samples.attr_class, samples.attr_value, c, filter=filter, top=top)
                for c in (ca, cb)
            ]
        ),
        sample_keys(samples),
    )
    if len(rows) < 2:
        raise DataError(
            f"only {len(rows)} samples support {na!r} or {nb!r}: try filter top, or collect more "
            "images or positions (collect.positions)"
        )
    va, _ = classes_core.class_attribution(samples.attr_class[rows], samples.attr_value[rows], ca)
    vb, _ = classes_core.class_attribution(samples.attr_class[rows], samples.attr_value[rows], cb)
    y = classes_core.embed(samples.activation[rows], 1, method=method, seed=seed)[:, 0]
    coords = classes_core.comparison_coords(va, vb, y)
    folder = Path(out) if out else paths.compare_dir(run_dir, layer, f"{slug(na)}-{slug(nb)}")
    # "pair", not "classes": atlas.json's "classes" stays the model's class list, as in every atlas
    extra = {
        "kind": "compare",
        "pair": [na, nb],
        "pair_indices": [ca, cb],
        "filter": filter,
        "top": top,
        "method": method,
        "x_axis": f"attribution to {na} minus attribution to {nb} ({nb} left, {na} right)",
        "y_axis": f"1-D {method} of the activations",
    }
    path = build_folder(
        folder,
        run_dir,
        layer,
        model,
        spec,
        samples,
        rows,
        coords,
        grid,
        min_count=min_count,
        params=params,
        device=device,
        threads=threads,
        n_examples=n_examples,
        extra=extra,
        progress=progress,
    )
    axes_png(paths.atlas_labelled(folder), paths.compare_png(folder), left=nb, right=na)
    return path


def axes_png(src: Path, dst: Path, *, left: str, right: str) -> Path:
    """Copy of a comparison's labelled atlas with an axis strip below: "<- more LEFT | more RIGHT ->"."""
    image = Image.open(src).convert("RGB")
    strip = max(24, image.width // 40)
    canvas = Image.new("RGB", (image.width, image.height + strip), (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=int(strip * 0.6))
    y = image.height + strip // 6
    draw.text((4, y), f"<- more {left}", fill=(0, 0, 0), font=font)
    text = f"more {right} ->"
    width = draw.textbbox((0, 0), text, font=font)[2]
    draw.text((image.width - width - 4, y), text, fill=(0, 0, 0), font=font)
    draw.line((image.width // 2, image.height, image.width // 2, image.height + strip), fill=(0, 0, 0))
    return save_image(dst, canvas)
