"""patch: a patch experiment on a run's photos -> ``RUN/patches/NAME/`` (report.json, report.md, figures).

Pastes a patch (an atlas icon, a dataset example, an image crop, a rendered direction) into photos
and measures how often the top-1 class flips to the target, against noise and random-photo
controls (``actlas.patches``: the specs, photos, experiment, statistics and report; the protocol
in docs/patches.md). This module reads the patches and photos and writes the folder.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import paths
from ..data import store
from ..data.decode import decode
from ..device import resolve_device, set_threads
from ..errors import ConfigError, DataError, MissingError, StoreError
from ..files import require_file
from ..formats.atlas import read_atlas
from ..formats.atomic import save_image, write_text
from ..formats.layout import read_whitening
from ..formats.probe import read_probe
from ..formats.report import PatchEntry, PatchReport, write_report
from ..formats.shards import run_rows, shard_stores
from ..models.headhook import use_probe
from ..models.heads import head_of, require_logits
from ..models.load import load_model
from ..models.spec import ModelSpec
from ..nn.fastpaths import fast_paths
from ..nn.layers import layer_kinds, layer_names
from ..patches import experiment
from ..patches.photos import held_out_photos, image_tensor, load_photos, run_photos, run_source_photos
from ..patches.report import report_markdown, single_photo_figure, write_figures
from ..patches.spec import cell_spec, default_name, default_search, example_spec, parse_patch
from ..patches.stats import beats_controls, vs_controls
from ..settings import CORNERS, Patch, RenderParams, Run
from ..text import slug

POPULATIONS = ("source_correct", "not_target", "near_target")


def load_patch(
    spec_text: str,
    run_dir: str | Path,
    layer: str,
    *,
    model: torch.nn.Module | None = None,
    spec: ModelSpec | None = None,
    params: RenderParams | None = None,
    device="cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[str, torch.Tensor]:
    """A patch specification (``actlas.patches.spec``) -> (name, patch (3, h, w) in [0, 1]).

    ``cell:I,J`` takes the icon of the largest main grid of ``layer`` in ``run_dir``; a direction is
    rendered now with the model (``model``, ``spec``, in ``memory_format``) and the layer's whitening,
    at the size of the layer's atlas icons.
    """
    patch = parse_patch(spec_text)
    ldir = paths.layer_dir(run_dir, layer)
    if patch.kind == "cell":
        if patch.folder is None:
            grids = sorted(ldir.glob("grid-*/icons"), key=lambda p: int(p.parent.name.split("-")[1]))
            if not grids:
                raise MissingError(f"no atlas icons under {ldir}: run the workflow (atlas) first")
            folder = grids[-1].parent
        else:
            folder = ldir / patch.folder
        path = folder / paths.icon_name(patch.i, patch.j)
        if not path.exists():
            have = sorted(p.stem.replace("_", ",") for p in paths.icons_dir(folder).glob("*_*.png"))[:20]
            raise MissingError(f"no icon {path}; cells with icons there: {', '.join(have) or 'none'}")
        return f"{folder.name}:{patch.i},{patch.j}", image_tensor(Image.open(path))
    if patch.kind == "example":
        path = ldir / patch.folder / paths.example_name(patch.i, patch.j, patch.e)
        if not path.exists():
            raise MissingError(f"no dataset patch {path}: run the workflow (atlas) first, or pick another cell")
        return f"{patch.folder}:{patch.i},{patch.j}:example{patch.e}", image_tensor(Image.open(path))
    if patch.kind == "image":
        image, reason = decode(patch.path)
        if image is None:
            raise MissingError(f"patch image {patch.path}: {reason}")
        name = f"image:{Path(patch.path).name}"
        if patch.box:
            x0, y0, x1, y1 = patch.box
            if not (x0 < x1 <= image.width and y0 < y1 <= image.height):
                raise ConfigError(
                    f"box {patch.box} is not inside {patch.path} ({image.width}x{image.height}): x0<x1<=W, y0<y1<=H"
                )
            image = image.crop(patch.box)
            name += f":{x0},{y0},{x1},{y1}"
        return name, image_tensor(image)
    return f"direction:{Path(patch.path).name}", _render_direction(
        patch.path, run_dir, layer, model, spec, params, device, memory_format
    )


def _render_direction(path, run_dir, layer, model, spec, params, device, memory_format) -> torch.Tensor:
    """The icon (3, S, S) in [0, 1] of a direction (C,) saved at ``path``, as the layer's atlas icons."""
    from ..models.sizes import fit_icons
    from ..viz.render import fit_to_layer, render

    if model is None or spec is None:
        raise ConfigError("a direction patch needs the model: pass model= and spec=")
    try:
        direction = np.load(require_file(path, "direction file", ConfigError), allow_pickle=False)
        direction = np.asarray(direction, dtype=np.float32).reshape(1, -1)
    except (ValueError, TypeError, OSError, EOFError) as err:  # not an .npy of numbers: text, a pickle, garbage
        raise ConfigError(
            f"direction file {path} is not an .npy array of numbers ({type(err).__name__}): save one with np.save"
        ) from None
    whiten = paths.whiten(run_dir, layer)
    whitening = read_whitening(whiten) if whiten.exists() else None
    ((_, _, grid),) = layer_kinds(model, [layer], spec.input_size, spec.layer_kinds, device).values()
    params = fit_to_layer(params or RenderParams(), spec.input_size, grid)  # as the layer's atlas icons
    params = fit_icons(params, model, spec, layer, device)
    params = dataclasses.replace(params, batch_size=params.tries)  # one direction: its tries alone, not padded
    out = render(
        model,
        spec,
        layer,
        direction,
        whitening=whitening,
        params=params,
        device=device,
        memory_format=memory_format,
        progress=False,
    )
    return torch.from_numpy(out["icon"][0]).permute(2, 0, 1).float() / 255.0


def candidate_icons(
    run_dir: str | Path,
    layer: str,
    target: int,
    target_name: str,
    *,
    limit: int = Patch.candidates,
    folders: tuple[str, ...] = (),
    crops: int = 0,
) -> list[str]:
    """Patch specs worth trying for a target, best first by the cell's mean attribution to the target:
    every icon of its class atlas, and icons labelled with the target in the main atlases and in
    comparisons (``folders`` under ``RUN/LAYER``; default ``actlas.patches.spec.default_search``). The
    ``limit`` best cells give their icon and, after all the icons, their first ``crops`` dataset examples."""
    ldir = paths.layer_dir(run_dir, layer)
    if not folders:
        names = [p.name for p in sorted(ldir.glob("*")) if p.is_dir()]
        folders = default_search(
            target_name,
            [n for n in names if n.startswith("class-")],
            [p.name for p in sorted(ldir.glob("grid-*"))],
            [p.name for p in sorted(ldir.glob("compare-*"))],
        )
    scored: list[tuple[float, str, list[str]]] = []
    for folder in folders:
        meta_path = paths.atlas_json(ldir / folder)
        if not meta_path.exists():
            continue
        for cell in read_atlas(meta_path).cells:
            value = float(cell.attribution.get(str(target), 0.0))
            if folder.startswith("class-") or cell.label_index == target:
                examples = [
                    example_spec(folder, cell.i, cell.j, ex.index)
                    for ex in cell.examples[:crops]
                    if ex.index is not None
                ]
                scored.append((value, cell_spec(folder, cell.i, cell.j), examples))
    scored.sort(key=lambda t: -t[0])
    best = scored[:limit]
    return [icon for _, icon, _ in best] + [e for _, _, examples in best for e in examples]


def near_target_mask(run_dir: str | Path, n_rows: int, target: int) -> np.ndarray:
    """(n_rows,) bool over the run's photos (shard-list order): the target is in the photo's top-5
    predictions stored at collection (``images/pred``) but is not its top-1. All False when the
    run's stores are missing or incomplete."""
    try:
        stores = shard_stores(run_dir)
        pred, ok = store.read(stores, "images/pred"), store.read(stores, "images/ok")
    except (MissingError, StoreError, FileNotFoundError, KeyError):
        return np.zeros(n_rows, bool)
    if not stores or len(pred) != n_rows:
        return np.zeros(n_rows, bool)
    return ok.astype(bool) & (pred[:, 1:] == target).any(1) & (pred[:, 0] != target)


def _save_patch_png(patch: torch.Tensor, path: Path) -> None:
    pixels = (patch.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    save_image(path, Image.fromarray(pixels))


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
    probe: str | Path | None = None,
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
    photo, with p(source) and p(target) before and after (``single-photo.png``). ``layer`` is the
    layer whose icons are pasted (default: the run's first). ``icons_run`` is the run whose
    ``LAYER`` folder holds the icons (default ``run_dir``, which always supplies the photos). A
    ``head: probe`` model uses ``probe`` (default ``RUN/probe/probe.npz``); ``head: none`` is refused.
    """
    from ..runinfo import run_layers

    if name is not None and not re.fullmatch(r"[a-z0-9-]+", name):  # the config schema's pattern
        raise ConfigError(f"patch name {name!r} may hold only a-z, 0-9 and '-' (a folder under RUN/patches): rename it")
    set_threads(threads)
    start = time.perf_counter()
    net, mspec = load_model(model)
    require_logits(mspec, "a patch experiment")
    if head_of(mspec).kind == "probe":  # the run's probe is the model's class head
        record = read_probe(probe or paths.probe_npz(run_dir))
        use_probe(net, mspec, record.weight, record.bias, record.classes)
    dev = resolve_device(device)
    net = net.to(dev)
    layer = layer or run_layers(run_dir)[0]
    # the same function, fewer ops; the icons' layer keeps its own output (a direction patch renders at it)
    fast = fast_paths(net, mspec, [layer] if layer in layer_names(net) else [], tuple(mspec.input_size), dev)
    icons_run = icons_run or run_dir
    t = mspec.class_index(target)
    s = mspec.class_index(source) if source else None
    sizes = tuple(float(v) for v in sizes)
    static = (static, max(sizes))
    if static[0] not in corners:
        raise ConfigError(f"static {static} must be one of the corners {corners} and sizes {sizes}")
    if photo and s is None:
        raise ConfigError("a single-photo demonstration (photo) shows p(source): give --source")
    if not patches and not discover:
        raise ConfigError("nothing to test: give --patch SPEC (cell:I,J, image:PATH, direction:PATH.npy) or --discover")
    rows = run_rows(run_dir)
    if not rows:
        raise MissingError(f"no shard lists in {run_dir}/shards: run the workflow (or actlas shards) first")
    scoring = dict(batch_size=batch_size, device=dev, memory_format=fast.memory_format)
    held_info, search_x, counts = None, None, (0, 0)
    if evaluate:
        if s is None:
            raise ConfigError("evaluate (held-out photos) measures a source class: give --source")
        photos, held_info, (clean_prob, clean_top) = held_out_photos(
            evaluate, net, mspec, s, t, max_evaluate=max_evaluate, seed=seed, **scoring
        )
        search_x = run_source_photos(rows, net, mspec, s, t, max_images=max_images, seed=seed, **scoring)
    else:
        near = near_target_mask(run_dir, len(rows), t)
        photos, *counts = run_photos(rows, mspec, s, t, near, max_images=max_images, seed=seed)
        clean_prob, clean_top = experiment.predict(net, mspec, photos.x, t, **scoring)
    name = name or default_name(mspec.short_name(s) if s is not None else None, mspec.short_name(t))
    out = Path(out) if out else paths.patch_dir(run_dir, name)
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(clean_prob=clean_prob, clean_top=clean_top, corners=tuple(corners), sizes=sizes, static=static)
    kw.update(seed=seed, **scoring)
    entries, trials, tried = [], {}, []
    for text in patches:
        pname, pixels = load_patch(
            text, icons_run, layer, model=net, spec=mspec, device=dev, memory_format=fast.memory_format
        )
        tried.append((text, pname, pixels))
        e = experiment.evaluate_patch(net, mspec, photos, pname, pixels, t, trials=trials, **kw)
        entries.append(PatchEntry(pname, text, paths.patch_png_name(slug(pname)), e["populations"]))
        _save_patch_png(pixels, out / entries[-1].patch_png)
    discovery = None
    if discover:
        specs = candidate_icons(icons_run, layer, t, mspec.short_name(t), limit=candidates, folders=search, crops=crops)
        if not specs:
            raise MissingError(
                f"no icons to search for {mspec.short_name(t)!r}: run actlas class-atlas "
                f"{run_dir} --class {mspec.short_name(t)!r} (or the workflow's atlases) first"
            )
        cands = [load_patch(sp, icons_run, layer) for sp in specs]
        tried += [(sp, cname, pixels) for sp, (cname, pixels) in zip(specs, cands)]
        if search_x is not None:
            if not len(search_x):
                raise DataError(
                    f"no {mspec.short_name(s)!r} photos of the run that the model classifies correctly "
                    "to search on: discovery with evaluate searches the run's source-class photos"
                )
            best, scores = experiment.score_candidates(net, mspec, search_x, cands, t, sizes=sizes, **scoring)
            n_search, held = len(search_x), None
        else:
            best, scores, searched, held = experiment.discover(
                net, mspec, photos, cands, t, clean_top=clean_top, sizes=sizes, seed=seed, **scoring
            )
            n_search = len(searched)
        for sc, sp in zip(scores, specs):
            sc["spec"] = sp
        bname, bpixels = cands[best]
        e = experiment.evaluate_patch(net, mspec, photos, bname, bpixels, t, subset=held, trials=trials, **kw)
        entries.append(
            PatchEntry(bname, specs[best], paths.patch_png_name(slug(bname)), e["populations"], discovered=True)
        )
        _save_patch_png(bpixels, out / entries[-1].patch_png)
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
    for e in entries:
        e.beats_controls = {pop: beats_controls({"populations": e.populations}, pop) for pop in POPULATIONS}
        e.vs_controls = {pop: vs_controls({"populations": e.populations}, pop) for pop in POPULATIONS}
    report = PatchReport(
        source=mspec.short_name(s) if s is not None else None,
        target=mspec.short_name(t),
        target_index=t,
        model=model,
        layer=layer,
        icons_run=str(icons_run),
        photos_run=str(run_dir),
        corners=list(corners),
        sizes=list(sizes),
        static=list(static),
        seed=seed,
        images={
            "source_class": int(photos.source.sum()),
            "sampled_not_target": counts[0],
            "near_target": int(photos.mask("near").sum()),
            "near_target_in_run": int(counts[1]),
            "evaluated": len(photos.x),
            "run_total": len(rows),
            **({"evaluate": held_info, "searched": int(len(search_x))} if held_info else {}),
        },
        clean_top1_is_target=int((clean_top == t).sum()),
        patches=entries,
        discovery=discovery,
        seconds=round(time.perf_counter() - start, 1),
    )
    report.figures = write_figures(report.to_json(), photos, trials, clean_prob, clean_top, mspec, out)
    if photo:
        report.single_photo, x_photo, result = _single_photo(
            photo, tried, net, mspec, s, t, tuple(corners), sizes, scoring
        )
        pixels = {pname: px for _, pname, px in tried}
        report.figures.append(single_photo_figure(photo, x_photo, result, pixels, mspec, s, t, out))
    write_report(paths.report_json(out), report)
    write_text(paths.report_md(out), report_markdown(report.to_json()))
    return paths.report_json(out)


def _single_photo(photo, tried, net, spec, source, target, corners, sizes, scoring) -> tuple[dict, torch.Tensor, dict]:
    """The article's single-photo demonstration: every tried patch (spec, name, (3, h, w)) on one photo
    -> (the report's section, the photo (1, 3, H, W), the result ``actlas.patches.experiment.single_photo``)."""
    x, _, _ = load_photos([(photo, source)], spec)
    if not len(x):
        raise MissingError(f"photo {photo}: {decode(photo)[1]}")
    by_name = {name: (sp, pixels) for sp, name, pixels in tried}
    result = experiment.single_photo(
        net,
        spec,
        x[0],
        [(name, pixels) for _, name, pixels in tried],
        source,
        target,
        corners=corners,
        sizes=sizes,
        **scoring,
    )
    for row in result["candidates"]:
        row["spec"] = by_name[row["name"]][0]
    tops = {result["before"]["top"], *(r["top"] for r in result["candidates"])}
    section = {"photo": str(photo), **result, "names": {str(k): spec.short_name(k) for k in sorted(tops)}}
    return section, x, result
