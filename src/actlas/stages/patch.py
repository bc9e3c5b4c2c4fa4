"""patch: a patch experiment on a run's photos -> ``RUN/patches/NAME/`` (report.json, report.md, figures).

Pastes a patch (an atlas icon, an image crop, a rendered direction) into photos and measures
how often the top-1 class flips to the target, against noise and random-photo controls
(``actlas.patches`` holds the pure pieces; docs/patches.md the protocol).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import paths
from .. import patches as patches_core
from ..classes import class_index
from ..layers import fast_paths, layer_kinds, layer_names
from ..models import ModelSpec
from ..patches import (
    CORNERS,
    Photos,
    beats_controls,
    choose_photos,
    evaluate_patch,
    image_tensor,
    load_photos,
    paste,
    predict,
    report_markdown,
)
from ..settings import Patch, Run


def _run_config(run_dir: str | Path) -> dict:
    """The config a finished run was made with (manifest.json's ``config``; empty if none)."""
    path = Path(run_dir) / "manifest.json"
    return json.loads(path.read_text()).get("config", {}) if path.exists() else {}


def default_layer(run_dir: str | Path) -> str:
    """The run's first layer (from the manifest), for commands that do not name one."""
    layers = _run_config(run_dir).get("layers")
    if layers:
        return layers[0]
    found = [p.parent.name for p in Path(run_dir).glob("*/coords.npy")]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"cannot tell which layer of {run_dir} to use: pass --layer (found {found or 'none'})")


def default_model(run_dir: str | Path) -> str:
    """The run's model (from the manifest)."""
    model = _run_config(run_dir).get("model")
    if model:
        return model
    raise ValueError(f"{run_dir} has no manifest.json naming its model: pass --model")


def load_patch(
    spec_text: str,
    run_dir: str | Path,
    layer: str,
    *,
    model: nn.Module | None = None,
    spec: ModelSpec | None = None,
    params=None,
    device="cpu",
) -> tuple[str, torch.Tensor]:
    """Parse a patch specification -> (name, patch (3, h, w) in [0, 1]).

    - ``cell:I,J`` an icon of the run's main atlas (largest grid of ``layer``);
      ``cell:DIR:I,J`` an icon of ``RUN/LAYER/DIR`` (``grid-16``, ``class-great-white-shark``, ...)
    - ``example:DIR:I,J,E`` dataset-patch crop E of cell (I, J) of ``RUN/LAYER/DIR`` (``examples/I_J_E.jpg``:
      the photo around a sample nearest the cell's direction)
    - ``image:PATH`` a whole image, ``image:PATH:X0,Y0,X1,Y1`` a crop of it (pixels of the original)
    - ``direction:PATH.npy`` an icon rendered now for a direction (C,) with the run's whitening
    """
    from PIL import Image

    from .. import images as imgs

    kind, _, rest = spec_text.partition(":")
    ldir = Path(run_dir) / layer
    if kind == "cell":
        parts = rest.split(":")
        if len(parts) == 1:
            grids = sorted(ldir.glob("grid-*/icons"), key=lambda p: int(p.parent.name.split("-")[1]))
            if not grids:
                raise FileNotFoundError(f"no atlas icons under {ldir}: run the workflow (atlas) first")
            folder, ij = grids[-1].parent, parts[0]
        else:
            folder, ij = ldir / parts[0], parts[1]
        m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", ij)
        if not m:
            raise ValueError(f"bad cell {spec_text!r}: write cell:I,J or cell:grid-16:I,J (column, row)")
        path = folder / "icons" / f"{m[1]}_{m[2]}.png"
        if not path.exists():
            have = sorted(p.stem.replace("_", ",") for p in (folder / "icons").glob("*_*.png"))[:20]
            raise FileNotFoundError(f"no icon {path}; cells with icons there: {', '.join(have) or 'none'}")
        return f"{folder.name}:{m[1]},{m[2]}", image_tensor(Image.open(path))
    if kind == "example":
        m = re.fullmatch(r"([^:]+):\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", rest)
        if not m:
            raise ValueError(f"bad example {spec_text!r}: write example:DIR:I,J,E (column, row, example number)")
        path = ldir / m[1] / "examples" / f"{m[2]}_{m[3]}_{m[4]}.jpg"
        if not path.exists():
            raise FileNotFoundError(f"no dataset patch {path}: run the workflow (atlas) first, or pick another cell")
        return f"{m[1]}:{m[2]},{m[3]}:example{m[4]}", image_tensor(Image.open(path))
    if kind == "image":
        m = re.fullmatch(r"(.+?)(?::(\d+),(\d+),(\d+),(\d+))?", rest)
        path = m[1]
        image, reason = imgs.decode(path)
        if image is None:
            raise FileNotFoundError(f"patch image {path}: {reason}")
        if m[2]:
            box = tuple(int(m[k]) for k in range(2, 6))
            if not (box[0] < box[2] <= image.width and box[1] < box[3] <= image.height):
                raise ValueError(f"box {box} is not inside {path} ({image.width}x{image.height}): x0<x1<=W, y0<y1<=H")
            image = image.crop(box)
        return f"image:{Path(path).name}" + (f":{m[2]},{m[3]},{m[4]},{m[5]}" if m[2] else ""), image_tensor(image)
    if kind == "direction":
        from ..render import fit_to_layer
        from ..render import render as render_icons
        from ..settings import RenderParams

        if model is None or spec is None:
            raise ValueError("a direction patch needs the model: pass model= and spec=")
        direction = np.load(rest).astype(np.float32).reshape(1, -1)
        whitening = np.load(ldir / "whiten.npy") if (ldir / "whiten.npy").exists() else None
        ((_, _, grid),) = layer_kinds(model, [layer], spec.input_size, spec.layer_kinds, device).values()
        params = fit_to_layer(params or RenderParams(), spec.input_size, grid)  # as the layer's atlas icons
        # One direction: a batch of its tries alone, not padded to a full render batch.
        params = dataclasses.replace(params, batch_size=params.tries)
        out = render_icons(
            model, spec, layer, direction, whitening=whitening, params=params, device=device, progress=False
        )
        return f"direction:{Path(rest).name}", torch.from_numpy(out["icon"][0]).permute(2, 0, 1).float() / 255.0
    raise ValueError(
        f"unknown patch {spec_text!r}: use cell:I,J, cell:DIR:I,J, example:DIR:I,J,E, "
        "image:PATH[:X0,Y0,X1,Y1] or direction:PATH.npy"
    )


def candidate_icons(
    run_dir: str | Path,
    layer: str,
    target: int,
    target_name: str,
    *,
    limit: int = 12,
    folders: tuple[str, ...] = (),
    crops: int = 0,
) -> list[str]:
    """Patch specs worth trying for a target, best first by the cell's mean attribution to the target:
    every icon of its class atlas, and icons labelled with the target in the main atlases and in
    comparisons (``folders`` under ``RUN/LAYER``; default ``class-<target>``, ``grid-*``, ``compare-*``).
    The ``limit`` best cells give their icon and, after all the icons, their first ``crops`` dataset
    patches (``example:DIR:I,J,E``)."""
    ldir = Path(run_dir) / layer
    scored: list[tuple[float, str]] = []
    if folders:
        found = [ldir / f for f in folders]
    else:
        found = (
            [ldir / f"class-{paths.slug(target_name)}"] + sorted(ldir.glob("grid-*")) + sorted(ldir.glob("compare-*"))
        )
    for folder in found:
        meta = folder / "atlas.json"
        if not meta.exists():
            continue
        for cell in json.loads(meta.read_text())["cells"]:
            value = float(cell["attribution"].get(str(target), 0.0))
            if folder.name.startswith("class-") or cell["label_index"] == target:
                examples = [
                    f"example:{folder.name}:{cell['i']},{cell['j']},{Path(ex['src']).stem.split('_')[-1]}"
                    for ex in cell.get("examples", [])[:crops]
                ]
                scored.append((value, f"cell:{folder.name}:{cell['i']},{cell['j']}", examples))
    scored.sort(key=lambda t: -t[0])
    best = scored[:limit]
    return [icon for _, icon, _ in best] + [e for _, _, examples in best for e in examples]


def near_target_mask(run_dir: str | Path, n_rows: int, target: int) -> np.ndarray:
    """(n_rows,) bool over the run's photos (shard-list order): the target is in the photo's top-5
    predictions stored at collection (``images/pred``) but is not its top-1. All False when the
    run's stores are missing or incomplete."""
    from .. import store

    try:
        stores = paths.shard_stores(run_dir)
        pred, ok = store.read(stores, "images/pred"), store.read(stores, "images/ok")
    except (KeyError, FileNotFoundError, ValueError):
        return np.zeros(n_rows, bool)
    if not stores or len(pred) != n_rows:
        return np.zeros(n_rows, bool)
    return ok.astype(bool) & (pred[:, 1:] == target).any(1) & (pred[:, 0] != target)


def patch(
    run_dir: str | Path,
    target: str | int,
    model,
    *,
    source: str | int | None = Patch.source,
    layer: str | None = Patch.layer,
    patches: tuple[str, ...] = Patch.patches,
    discover: bool = Patch.discover,
    candidates: int = Patch.candidates,
    sizes: tuple[float, ...] = Patch.sizes,
    static: str = Patch.static,
    crops: int = Patch.crops,
    max_images: int = Patch.max_images,
    evaluate: tuple[str, ...] = Patch.evaluate,
    max_evaluate: int = Patch.max_evaluate,
    photo: str | None = Patch.photo,
    batch_size: int = Patch.batch_size,
    search: tuple[str, ...] = Patch.search,
    name: str | None = Patch.name,
    seed: int = Run.seed,
    device: str = Run.device,
    threads: int | None = None,
    out: str | Path | None = None,
    icons_run: str | Path | None = None,
    corners: tuple[str, ...] = CORNERS,
) -> Path:
    """Patch experiments on a run's photos -> ``RUN/patches/NAME/report.json`` (+ report.md, figures).

    ``patches`` are specs for ``load_patch``; with ``discover`` the target's class-atlas and
    atlas icons (those in the folders ``search`` names under ``RUN/LAYER``; default every atlas
    folder there), and ``crops`` dataset patches of each of their cells, are searched on half of the
    photos and the best is reported on the other half. With ``evaluate`` (held-out photo folders,
    labelled like a run's images) every rate is measured on at most ``max_evaluate`` of their
    source-class photos that the model classifies correctly, and discovery searches instead on at
    most ``max_images`` of the run's source-class photos (classified correctly): it never sees the
    held-out ones. The static protocol pastes at corner ``static`` with the largest of ``sizes``.
    ``photo`` adds the article's single-photo demonstration: every patch and candidate on that one
    photo, with p(source) and p(target) before and after (``single-photo.png``).
    ``icons_run`` is the run whose ``LAYER`` folder holds the icons (default ``run_dir``, which
    always supplies the photos through its shard lists).
    """
    from .. import images as imgs
    from ..collect import resolve_device
    from ..models import load_model

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    net, mspec = load_model(model)
    dev = resolve_device(device)
    net = net.to(dev)
    layer = layer or default_layer(run_dir)
    # the same function, fewer ops; the icons' layer keeps its own output (a direction patch renders at it)
    own = [layer] if layer in layer_names(net) else []
    fast_paths(net, mspec, own, tuple(mspec.input_size), dev)
    icons_run = icons_run or run_dir
    t = class_index(mspec, target)
    s = class_index(mspec, source) if source else None
    sizes = tuple(float(v) for v in sizes)
    static = (static, max(sizes))
    if static[0] not in corners:
        raise ValueError(f"static {static} must be one of the corners {corners} and sizes {sizes}")
    if photo and s is None:
        raise ValueError("a single-photo demonstration (photo) shows p(source): give --source")
    if not patches and not discover:
        raise ValueError("nothing to test: give --patch SPEC (cell:I,J, image:PATH, direction:PATH.npy) or --discover")
    rows = [r for lst in paths.shard_lists(run_dir) for r in imgs.read_shard(lst)]
    if not rows:
        raise FileNotFoundError(f"no shard lists in {run_dir}/shards: run the workflow (or actlas shards) first")
    held_info, search_x = None, None
    if evaluate:
        if s is None:
            raise ValueError("evaluate (held-out photos) measures a source class: give --source")
        photos, held_info, (clean_prob, clean_top) = held_out_photos(
            evaluate, net, mspec, s, t, max_evaluate=max_evaluate, seed=seed, batch_size=batch_size, device=dev
        )
        search_x = run_source_photos(
            rows, net, mspec, s, t, max_images=max_images, seed=seed, batch_size=batch_size, device=dev
        )
        sample_rows, near_paths = [], set()
    else:
        src_rows, sample_rows, pool_rows = choose_photos(rows, s, t, max_images, seed)
        near_mask = near_target_mask(run_dir, len(rows), t)
        near_paths = {r[0] for r, m in zip(rows, near_mask) if m and r[1] != t}
        chosen = {r[0] for r in src_rows + sample_rows}
        extra_rows = [r for r in rows if r[0] in near_paths and r[0] not in chosen]
        extra_rows = [
            extra_rows[i] for i in sorted(np.random.default_rng(seed + 2).permutation(len(extra_rows))[:max_images])
        ]
        x, photo_paths, labels = load_photos(src_rows + sample_rows + extra_rows, mspec)
        pool, _, _ = load_photos(pool_rows, mspec)
        extra_paths = {r[0] for r in extra_rows}
        photos = Photos(
            x,
            photo_paths,
            labels,
            labels == (s if s is not None else -2),
            pool,
            near=np.array([p in near_paths for p in photo_paths], bool),
            extra=np.array([p in extra_paths for p in photo_paths], bool),
        )
        clean_prob, clean_top = predict(net, mspec, photos.x, t, batch_size, dev)
    name = name or f"{paths.slug(mspec.short_name(s)) if s is not None else 'any'}-to-{paths.slug(mspec.short_name(t))}"
    out = Path(out) if out else paths.patch_dir(run_dir, name)
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(
        clean_prob=clean_prob,
        clean_top=clean_top,
        corners=tuple(corners),
        sizes=sizes,
        static=static,
        seed=seed,
        batch_size=batch_size,
        device=dev,
    )
    entries, trials, tried = [], {}, []
    for text in patches:
        pname, patch = load_patch(text, icons_run, layer, model=net, spec=mspec, device=dev)
        tried.append((text, pname, patch))
        e = evaluate_patch(net, mspec, photos, pname, patch, t, trials=trials, **kw)
        e["spec"] = text
        _save_patch_png(patch, out / f"patch-{paths.slug(pname)}.png")
        e["patch_png"] = f"patch-{paths.slug(pname)}.png"
        entries.append(e)
    discovery = None
    if discover:
        specs = candidate_icons(icons_run, layer, t, mspec.short_name(t), limit=candidates, folders=search, crops=crops)
        if not specs:
            raise FileNotFoundError(
                f"no icons to search for {mspec.short_name(t)!r}: run actlas class-atlas "
                f"{run_dir} --class {mspec.short_name(t)!r} (or the workflow's atlases) first"
            )
        cands = [load_patch(sp, icons_run, layer) for sp in specs]
        tried += [(sp, name, patch) for sp, (name, patch) in zip(specs, cands)]
        if search_x is not None:
            if not len(search_x):
                raise ValueError(
                    f"no {mspec.short_name(s)!r} photos of the run that the model classifies correctly "
                    "to search on: discovery with evaluate searches the run's source-class photos"
                )
            best, scores = patches_core.score_candidates(
                net, mspec, search_x, cands, t, sizes=sizes, batch_size=batch_size, device=dev
            )
            n_search, held = len(search_x), None
        else:
            best, scores, searched, held = patches_core.discover(
                net,
                mspec,
                photos,
                cands,
                t,
                clean_top=clean_top,
                sizes=sizes,
                seed=seed,
                batch_size=batch_size,
                device=dev,
            )
            n_search = len(searched)
        for sc, sp in zip(scores, specs):
            sc["spec"] = sp
        e = evaluate_patch(net, mspec, photos, cands[best][0], cands[best][1], t, subset=held, trials=trials, **kw)
        e["spec"], e["discovered"] = specs[best], True
        e["patch_png"] = f"patch-{paths.slug(cands[best][0])}.png"
        _save_patch_png(cands[best][1], out / e["patch_png"])
        entries.append(e)
        discovery = {
            "search_images": int(n_search),
            "held_out_images": int(len(photos.x) if held is None else len(held)),
            "candidates": scores,
            "best": specs[best],
            "search_protocol": f"dynamic, every corner at size {max(sizes)}",
            "search_photos": (
                "the run's source-class photos classified correctly"
                if held is None
                else "a seeded half of the photos not of the source class"
            ),
        }
    pops = ("source_correct", "not_target", "near_target")
    for e in entries:
        e["beats_controls"] = {pop: beats_controls(e, pop) for pop in pops}
        e["vs_controls"] = {pop: patches_core.vs_controls(e, pop) for pop in pops}
    report = {
        "source": mspec.short_name(s) if s is not None else None,
        "target": mspec.short_name(t),
        "target_index": t,
        "model": model,
        "layer": layer,
        "icons_run": str(icons_run),
        "photos_run": str(run_dir),
        "corners": list(corners),
        "sizes": list(sizes),
        "static": list(static),
        "seed": seed,
        "images": {
            "source_class": int(photos.source.sum()),
            "sampled_not_target": len(sample_rows),
            "near_target": int(photos.mask("near").sum()),
            "near_target_in_run": int(len(near_paths)),
            "evaluated": len(photos.x),
            "run_total": len(rows),
            **({"evaluate": held_info, "searched": int(len(search_x))} if held_info else {}),
        },
        "clean_top1_is_target": int((clean_top == t).sum()),
        "patches": entries,
        "discovery": discovery,
        "seconds": round(time.perf_counter() - start, 1),
    }
    figures = write_figures(report, photos, trials, clean_prob, clean_top, mspec, out)
    if photo:
        report["single_photo"], figure = single_photo_demo(
            photo,
            tried,
            net,
            mspec,
            s,
            t,
            corners=tuple(corners),
            sizes=sizes,
            batch_size=batch_size,
            device=dev,
            out=out,
        )
        figures.append(figure)
    report["figures"] = figures
    paths.write_json(out / "report.json", report)
    paths.write_text(out / "report.md", report_markdown(report))
    return out / "report.json"


def held_out_photos(
    folders: tuple[str, ...],
    net,
    spec: ModelSpec,
    source: int,
    target: int,
    *,
    max_evaluate: int,
    seed: int,
    batch_size: int,
    device,
    n_pool: int = 32,
) -> tuple[Photos, dict, tuple[np.ndarray, np.ndarray]]:
    """The held-out population: the source-class photos of ``folders`` (labelled by folder name, as a
    run's images are) that the model classifies correctly, a seeded choice of at most ``max_evaluate``;
    and ``n_pool`` photos of the folders of neither class for the random-crop control.
    Returns (photos, counts for the report, (p(target) (n,), top-1 (n,)) of the chosen photos)."""
    from .. import images as imgs

    rows = sorted({r for f in folders for r in imgs.list_images(f, spec.synsets, spec.categories)})
    src = [r for r in rows if r[1] == source]
    if not src:
        raise ValueError(
            f"no {spec.short_name(source)!r} photos in {', '.join(map(str, folders))}: evaluate folders "
            "hold one subfolder per class, named by its synset or class name, as a run's images do"
        )
    x, photo_paths, labels = load_photos(src, spec)
    if not len(x):
        raise ValueError(
            f"none of the {len(src)} {spec.short_name(source)!r} photos in {', '.join(map(str, folders))} "
            "could be decoded: `actlas shards FOLDER RUN` writes each file's reason to RUN/shards/skipped.tsv"
        )
    prob, top = predict(net, spec, x, target, batch_size, device)
    correct = np.flatnonzero(top == source)
    keep = np.sort(np.random.default_rng(seed + 3).permutation(correct)[:max_evaluate])
    others = [r for r in rows if r[1] not in (source, target)]
    pool, _, _ = load_photos(
        [others[i] for i in np.random.default_rng(seed + 4).permutation(len(others))[:n_pool]], spec
    )
    photos = Photos(x[keep], [photo_paths[i] for i in keep], labels[keep], np.ones(len(keep), bool), pool)
    info = {
        "folders": [str(f) for f in folders],
        "source_class": len(src),
        "decoded": len(photo_paths),
        "classified_correctly": int(len(correct)),
        "evaluated": int(len(keep)),
        "max_evaluate": max_evaluate,
    }
    return photos, info, (prob[keep], top[keep])


def run_source_photos(
    rows: list[tuple[str, int]],
    net,
    spec: ModelSpec,
    source: int,
    target: int,
    *,
    max_images: int,
    seed: int,
    batch_size: int,
    device,
) -> torch.Tensor:
    """(n, 3, H, W): at most ``max_images`` (seeded) of the run's source-class photos, those the model
    classifies correctly: what discovery searches when the rates come from held-out photos."""
    src = [r for r in rows if r[1] == source]
    order = np.random.default_rng(seed + 5).permutation(len(src))[:max_images]
    x, _, _ = load_photos([src[i] for i in sorted(order)], spec)
    if not len(x):
        return x
    _, top = predict(net, spec, x, target, batch_size, device)
    return x[torch.from_numpy(top == source)]


def single_photo_demo(
    photo: str,
    tried: list[tuple[str, str, torch.Tensor]],
    net,
    spec: ModelSpec,
    source: int,
    target: int,
    *,
    corners,
    sizes,
    batch_size: int,
    device,
    out: Path,
    shown: int = 3,
) -> tuple[dict, str]:
    """Every tried patch (spec, name, (3, h, w)) on one photo -> (report section, ``single-photo.png``:
    the photo, then for the ``shown`` best patches the patch and the photo with it, each titled with
    p(source), p(target) and the top-1 class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, _, _ = load_photos([(photo, source)], spec)
    if not len(x):
        from .. import images as imgs

        raise FileNotFoundError(f"photo {photo}: {imgs.decode(photo)[1]}")
    by_name = {name: (sp, patch) for sp, name, patch in tried}
    result = patches_core.single_photo(
        net,
        spec,
        x[0],
        [(name, patch) for _, name, patch in tried],
        source,
        target,
        corners=corners,
        sizes=sizes,
        batch_size=batch_size,
        device=device,
    )
    for row in result["candidates"]:
        row["spec"] = by_name[row["name"]][0]
    tops = {result["before"]["top"], *(r["top"] for r in result["candidates"])}
    section = {"photo": str(photo), **result, "names": {str(k): spec.short_name(k) for k in sorted(tops)}}
    best = result["candidates"][:shown]
    s_name, t_name = spec.short_name(source), spec.short_name(target)

    def title(r: dict) -> str:
        return f"p({s_name}) {r['p_source']:.3f}\np({t_name}) {r['p_target']:.3f}\ntop: {spec.short_name(r['top'])}"

    fig, axes = plt.subplots(len(best) or 1, 3, figsize=(7.2, 2.8 * max(len(best), 1)), squeeze=False)
    for row, r in enumerate(best):
        patch = by_name[r["name"]][1]
        after = paste(x[:1], patch, r["corner"], r["size"])[0]
        panels = (
            (x[0], "before\n" + title(result["before"])),
            (patch, f"{r['name']}\n{r['corner']} @ {r['size']}"),
            (after, "after\n" + title(r)),
        )
        for ax, (img, text) in zip(axes[row], panels):
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_title(text, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{Path(photo).name}: {s_name} -> {t_name}, the best {len(best)} patches on this photo", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "single-photo.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return section, "single-photo.png"


def _save_patch_png(patch: torch.Tensor, path: Path) -> None:
    from PIL import Image

    paths.save_image(path, Image.fromarray((patch.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)))


def write_figures(
    report: dict,
    photos: Photos,
    trials: dict,
    clean_prob: np.ndarray,
    clean_top: np.ndarray,
    spec: ModelSpec,
    out: Path,
) -> list[str]:
    """bars.png (patch vs controls, static and dynamic, with intervals; one row per population with
    photos: not_target, near_target) and one examples-*.png per
    patch (photos before and after at the static setting, with target probabilities)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    entries = report["patches"]
    held = bool(report["images"].get("evaluate"))  # held-out photos: all of the source class, one population
    pops = (
        ["source_correct"]
        if held
        else [
            pop
            for pop in ("not_target", "near_target")
            if any(e["populations"].get(pop, {}).get("patch", {}).get("n") for e in entries)
        ]
        or ["not_target"]
    )
    fig, grid = plt.subplots(
        len(pops), 2, figsize=(max(6, 2.2 * len(entries) + 3), 3.6 * len(pops)), sharey=True, squeeze=False
    )
    kinds = (("patch", "tab:red"), ("noise", "tab:gray"), ("random_image", "tab:blue"))
    for pop, axes in zip(pops, grid):
        for ax, proto in zip(axes, ("static", "dynamic")):
            for k, (kind, color) in enumerate(kinds):
                xs, ys, err = [], [], [[], []]
                for i, e in enumerate(entries):
                    r = e["populations"][pop][kind][proto]
                    if not r["n"]:
                        continue
                    xs.append(i + (k - 1) * 0.27)
                    ys.append(r["rate"])
                    err[0].append(r["rate"] - r["ci"][0])
                    err[1].append(r["ci"][1] - r["rate"])
                ax.bar(xs, ys, 0.27, yerr=err, color=color, label=kind, capsize=3)
            ax.set_xticks(range(len(entries)))
            ax.set_xticklabels(
                [e["name"] + ("*" if e.get("discovered") else "") for e in entries], rotation=20, fontsize=7, ha="right"
            )
            ns = sorted({e["populations"][pop]["patch"][proto]["n"] for e in entries})
            ax.set_title(
                f"{pop}, {proto} (n = {', '.join(map(str, ns))}"
                f"{'; held-out photos' if held else '; * held-out half' if any(e.get('discovered') for e in entries) else ''})",
                fontsize=8,
            )
            ax.set_ylim(0, 1)
        axes[0].set_ylabel(f"top-1 -> {report['target']}")
    grid[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bars.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    names.append("bars.png")
    t = report["target_index"]
    static = (report["static"][0], report["static"][1])
    for e in entries:
        idx, trial = trials[(e["name"], "patch")]
        ci, si = trial.corners.index(static[0]), trial.sizes.index(static[1])
        src = [r for r, i in enumerate(idx) if photos.source[i]]
        rest = [r for r, i in enumerate(idx) if not photos.source[i] and clean_top[i] != t]
        rest.sort(key=lambda r: -trial.prob[r, ci, si])
        pick = (src + rest)[:6]
        if not pick:
            continue
        from PIL import Image

        patch = np.asarray(Image.open(out / e["patch_png"]).convert("RGB"), dtype=np.float32) / 255.0
        patch_t = torch.from_numpy(patch).permute(2, 0, 1)
        fig, axes = plt.subplots(2, len(pick), figsize=(2.1 * len(pick), 4.6), squeeze=False)
        for col, r in enumerate(pick):
            i = idx[r]
            before = photos.x[i]
            after = paste(before[None], patch_t, *static)[0]
            label = spec.short_name(int(photos.label[i])) if photos.label[i] >= 0 else "?"
            for row, (img, title) in enumerate(
                (
                    (before, f"{label}\ntop: {spec.short_name(int(clean_top[i]))}\np={clean_prob[i]:.3f}"),
                    (after, f"top: {spec.short_name(int(trial.top[r, ci, si]))}\np={trial.prob[r, ci, si]:.3f}"),
                )
            ):
                ax = axes[row, col]
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_title(title, fontsize=7)
                ax.axis("off")
        fig.suptitle(
            f"{e['name']}: p({report['target']}) before (top) and after, {static[0]} at {static[1]}", fontsize=8
        )
        fig.tight_layout()
        fname = f"examples-{paths.slug(e['name'])}.png"
        fig.savefig(out / fname, dpi=100, metadata={"Software": None})
        plt.close(fig)
        names.append(fname)
    return names
