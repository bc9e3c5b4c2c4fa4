"""The photos of a patch experiment: a run's photos (a seeded sample, the source class, the photos
near the target), or held-out photo folders; decoded and preprocessed as the model sees them."""

from __future__ import annotations

import numpy as np
import torch

from ..data.decode import decode
from ..data.images import list_images
from ..errors import DataError
from ..models.spec import ModelSpec
from .experiment import CONTIGUOUS, Photos, predict, seed_of


def image_tensor(image) -> torch.Tensor:
    """PIL RGB image -> (3, H, W) float in [0, 1] (no resizing)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_photos(rows: list[tuple[str, int]], spec: ModelSpec) -> tuple[torch.Tensor, list[str], np.ndarray]:
    """Decode and preprocess (resize + centre crop) photos; undecodable ones are dropped."""
    xs, paths, labels = [], [], []
    for path, label in rows:
        image, _ = decode(path)
        if image is not None:
            xs.append(spec.transform(image))
            paths.append(path)
            labels.append(label)
    x = torch.stack(xs) if xs else torch.zeros(0, 3, *spec.input_size)
    return x, paths, np.array(labels, dtype=np.int64)


def choose_photos(
    rows: list[tuple[str, int]], source: int | None, target: int, max_images: int, seed: int, n_pool: int = 32
) -> tuple[list, list, list]:
    """Split a run's photos (path, label) into source-class rows, a seeded sample of ``max_images``
    rows whose label is not the target (source-class rows excluded: they are reported on their own),
    and ``n_pool`` other rows for the random-crop control. Returns (source_rows, sample_rows, pool_rows)."""
    src = [r for r in rows if source is not None and r[1] == source]
    other = [r for r in rows if r[1] != target and (source is None or r[1] != source)]
    order = np.random.default_rng(seed_of("photos", seed)).permutation(len(other))
    sample = [other[i] for i in sorted(order[:max_images])]
    pool = [other[i] for i in order[max_images : max_images + n_pool]]
    return src, sample, pool


def run_photos(
    rows: list[tuple[str, int]],
    spec: ModelSpec,
    source: int | None,
    target: int,
    near: np.ndarray,
    *,
    max_images: int,
    seed: int,
) -> tuple[Photos, int, int]:
    """The photos of a run an experiment is measured on (``choose_photos``), plus at most ``max_images``
    (seeded) of those whose top-5 at collection holds the target (``near`` (len(rows),) bool) that are
    not among them already. Returns (photos, how many were sampled, how many are near the target in the run)."""
    src_rows, sample_rows, pool_rows = choose_photos(rows, source, target, max_images, seed)
    near_paths = {r[0] for r, m in zip(rows, near) if m and r[1] != target}
    chosen = {r[0] for r in src_rows + sample_rows}
    extra_rows = [r for r in rows if r[0] in near_paths and r[0] not in chosen]
    order = np.random.default_rng(seed_of("near_target", seed)).permutation(len(extra_rows))[:max_images]
    extra_rows = [extra_rows[i] for i in sorted(order)]
    if not src_rows + sample_rows + extra_rows:
        raise DataError(
            "no photo to measure the patch on: the run holds no photo of the source class and every photo is of "
            "the target; collect more images (images, limit) or choose another source or target"
        )
    x, photo_paths, labels = load_photos(src_rows + sample_rows + extra_rows, spec)
    pool, _, _ = load_photos(pool_rows, spec)
    extra_paths = {r[0] for r in extra_rows}
    photos = Photos(
        x,
        photo_paths,
        labels,
        labels == (source if source is not None else -2),
        pool,
        near=np.array([p in near_paths for p in photo_paths], bool),
        extra=np.array([p in extra_paths for p in photo_paths], bool),
    )
    return photos, len(sample_rows), len(near_paths)


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
    memory_format: torch.memory_format = CONTIGUOUS,
    n_pool: int = 32,
) -> tuple[Photos, dict, tuple[np.ndarray, np.ndarray]]:
    """The held-out population: the source-class photos of ``folders`` (labelled by folder name, as a
    run's images are) that the model classifies correctly, a seeded choice of at most ``max_evaluate``;
    and ``n_pool`` photos of the folders of neither class for the random-crop control.
    Returns (photos, counts for the report, (p(target) (n,), top-1 (n,)) of the chosen photos)."""
    rows = sorted({r for f in folders for r in list_images(f, spec.synsets, spec.categories)})
    src = [r for r in rows if r[1] == source]
    if not src:
        raise DataError(
            f"no {spec.short_name(source)!r} photos in {', '.join(map(str, folders))}: evaluate folders "
            "hold one subfolder per class, named by its synset or class name, as a run's images do"
        )
    x, photo_paths, labels = load_photos(src, spec)
    if not len(x):
        raise DataError(
            f"none of the {len(src)} {spec.short_name(source)!r} photos in {', '.join(map(str, folders))} "
            "could be decoded: `actlas shards FOLDER RUN` writes each file's reason to RUN/shards/skipped.tsv"
        )
    prob, top = predict(net, spec, x, target, batch_size, device, memory_format)
    correct = np.flatnonzero(top == source)
    keep = np.sort(np.random.default_rng(seed_of("held_out", seed)).permutation(correct)[:max_evaluate])
    others = [r for r in rows if r[1] not in (source, target)]
    pool, _, _ = load_photos(
        [others[i] for i in np.random.default_rng(seed_of("held_out_pool", seed)).permutation(len(others))[:n_pool]],
        spec,
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
    memory_format: torch.memory_format = CONTIGUOUS,
) -> torch.Tensor:
    """(n, 3, H, W): at most ``max_images`` (seeded) of the run's source-class photos, those the model
    classifies correctly: what discovery searches when the rates come from held-out photos."""
    src = [r for r in rows if r[1] == source]
    order = np.random.default_rng(seed_of("search", seed)).permutation(len(src))[:max_images]
    x, _, _ = load_photos([src[i] for i in sorted(order)], spec)
    if not len(x):
        return x
    _, top = predict(net, spec, x, target, batch_size, device, memory_format)
    return x[torch.from_numpy(top == source)]
