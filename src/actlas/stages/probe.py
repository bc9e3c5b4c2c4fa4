"""probe: the linear probe of a ``head: probe`` model -> ``RUN/probe/probe.npz`` and ``probe.json``.

An encoder without logits (DINOv2, CLIP's image tower, MAE) gets its class head here, before any
collect job: attribution needs the head, and the head needs every shard's labelled photos. The
stage reads the run's photos (the shard lists of the current plan; their labels are their class
folders through the model's ``labels``), computes the head's features (``actlas.models.heads``),
fits and measures the probe (``actlas.probe``) and writes it (``actlas.formats.probe``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import probe as probe_core
from ..data import images as imgs
from ..device import resolve_device, set_threads
from ..errors import ConfigError, DataError
from ..formats.probe import Probe, write_probe
from ..formats.shards import run_rows
from ..models.headhook import head_mode
from ..models.heads import head_of
from ..models.load import load_model
from ..models.spec import ModelSpec
from ..progress import progress_bar
from ..settings import Collect, Run
from ..settings import Probe as ProbeSettings
from .collect import ShardImages, collate


def photo_features(
    net: torch.nn.Module,
    spec: ModelSpec,
    rows: list[tuple[str, int]],
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    progress: bool = False,
    what: str = "probe",
) -> tuple[np.ndarray, np.ndarray]:
    """The head's features of photos ``rows`` (path, label): (features (n, D) float32, labels (n,)) of
    those that decode, in row order."""
    loader = torch.utils.data.DataLoader(
        ShardImages(rows, spec), batch_size=batch_size, num_workers=workers, collate_fn=collate
    )
    feats, labels, offset = [], [], 0
    with progress_bar(what, total=len(rows), enabled=progress) as bar, torch.no_grad(), head_mode(net, "features"):
        for x, ok, _, _ in loader:
            f = net(spec.normalize(x.to(device))).float().cpu().numpy()
            keep = np.array(ok, dtype=bool)
            feats.append(f[keep])
            labels.append(np.array([rows[offset + i][1] for i in range(len(ok))], dtype=np.int64)[keep])
            offset += len(ok)
            bar.update(len(ok))
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(feats).astype(np.float32), np.concatenate(labels)


def probe(
    run_dir: str | Path,
    model,
    *,
    max_images: int = ProbeSettings.max_images,
    holdout: float = ProbeSettings.holdout,
    c: float = ProbeSettings.c,
    evaluate: tuple[str, ...] = ProbeSettings.evaluate,
    batch_size: int = ProbeSettings.batch_size,
    seed: int = Run.seed,
    device: str = Run.device,
    threads: int | None = Collect.threads,
    progress: bool = False,
) -> Path:
    """Train the linear probe of a ``head: probe`` model on the run's labelled photos -> ``RUN/probe/probe.npz``.

    At most ``max_images`` labelled photos (a seeded choice); per class a seeded ``holdout`` fraction
    is held out and the probe (logistic regression, inverse L2 strength ``c``) is fitted on the rest;
    its held-out accuracy, and its accuracy on each ``evaluate`` folder (labelled like the run's
    images), go into ``probe.json``.
    """
    set_threads(threads)
    dev = resolve_device(device)
    net, spec = load_model(model)
    head = head_of(spec)
    if head.kind != "probe":
        raise ConfigError(f"the probe stage trains a head: probe model's probe; this model's head is {head.kind}")
    if len(spec.categories) < 2:
        raise ConfigError(
            "head: probe learns the classes of the run's labelled photos: set model.labels to their class names "
            "(the photo folders' names; a list or a file, one a line)"
        )
    net.to(dev)
    rows = [r for r in run_rows(run_dir) if r[1] >= 0]
    if not rows:
        raise DataError(
            f"no labelled photos in {run_dir}: the probe learns from photos in class folders named by model.labels "
            f"({', '.join(spec.categories[:3])}, ...)"
        )
    rows = imgs.select(rows, max_images, seed)
    kw = dict(batch_size=batch_size, workers=0, device=dev, progress=progress)  # decoded in this process: one pass
    features, labels = photo_features(net, spec, rows, **kw)
    train, held = probe_core.split(labels, holdout, seed)
    weight, bias = probe_core.fit(features[train], labels[train], len(spec.categories), c=c)
    accuracy = probe_core.accuracy(weight, bias, features[held], labels[held])
    counts = np.bincount(labels[held], minlength=len(spec.categories)) if len(held) else None
    evaluated = []
    for folder in evaluate:
        found = [r for r in imgs.list_images(folder, spec.synsets, spec.categories) if r[1] >= 0]
        if not found:
            raise DataError(f"probe.evaluate {folder}: no photos in class folders named by model.labels")
        found = imgs.select(found, max_images, seed)
        f, y = photo_features(net, spec, found, **kw, what=f"probe {Path(folder).name}")
        acc = _round(probe_core.accuracy(weight, bias, f, y))
        evaluated.append({"images": str(folder), "photos": int(len(y)), "accuracy": acc})
    per_class = probe_core.per_class(weight, bias, features[held], labels[held], labels[train])
    record = Probe(
        weight=weight,
        bias=bias,
        classes=list(spec.categories),
        layer=head.layer,
        dims=int(features.shape[1]),
        accuracy=_round(accuracy),
        held_out=int(len(held)),
        train=int(len(train)),
        chance=_round(float(counts.max() / counts.sum())) if counts is not None else None,
        per_class={spec.short_name(k): v for k, v in per_class.items()},
        evaluate=evaluated,
        skipped=int(len(rows) - len(labels)),
        c=float(c),
        holdout=float(holdout),
        seed=int(seed),
    )
    return write_probe(run_dir, record)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
