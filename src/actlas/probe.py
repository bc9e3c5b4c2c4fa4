"""probe's core: a linear probe (multinomial logistic regression) on an encoder's features.

The probe stage (``actlas.stages.probe``) gives it the features (n, D) of the run's labelled photos;
a seeded split per class holds out a fraction to measure the probe, which is trained on the rest
(what is reported is exactly the probe that is used). Features are standardised for the fit and
the standardisation is folded into the weights, so the head applies ``features @ weight.T + bias``
to raw features. Deterministic: the same features, labels and seed give the same probe.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

UNSEEN_MARGIN = 30.0  # a class without training photos: its logit this far below the lowest bias, never predicted


def split(labels: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows), each sorted: per class a seeded ``holdout`` fraction held out
    (rounded, at least one of a class with two photos or more when ``holdout`` > 0)."""
    labels = np.asarray(labels)
    held = []
    rng = np.random.default_rng(seed)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        k = int(round(holdout * len(rows)))
        if holdout > 0 and len(rows) >= 2:
            k = min(max(k, 1), len(rows) - 1)
        else:
            k = 0
        held.append(rng.permutation(rows)[:k])
    held_rows = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels)), held_rows)
    return train, held_rows


def fit(
    features: np.ndarray, labels: np.ndarray, n_classes: int, *, c: float = 1.0, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on standardised ``features`` (n, D) with ``labels`` (n,) in 0..n_classes-1.

    Returns ``weight`` (n_classes, D) and ``bias`` (n_classes,) float32 on the raw features. A class
    without photos gets weight 0 and a bias ``UNSEEN_MARGIN`` below the lowest: never predicted.
    ``c`` is the inverse L2 strength (scikit-learn's ``C``).
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    seen = np.unique(y)
    if len(seen) < 2:
        raise DataError(
            f"the probe needs labelled photos of at least 2 classes, got {len(seen)}: add photos in class "
            "folders (probe.max_images, the run's images)"
        )
    mean = x.mean(0)
    std = np.maximum(x.std(0), 1e-6 * max(float(x.std()), 1e-12))
    model = LogisticRegression(C=c, max_iter=max_iter)
    model.fit((x - mean) / std, y)
    coef, intercept = model.coef_, model.intercept_
    if len(seen) == 2:  # scikit-learn's binary form: one row for the second class; as two softmax rows
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight = np.zeros((n_classes, x.shape[1]))
    weight[seen] = coef / std
    seen_bias = intercept - (coef / std * mean).sum(1)
    bias = np.full(n_classes, seen_bias.min() - UNSEEN_MARGIN)
    bias[seen] = seen_bias
    return weight.astype(np.float32), bias.astype(np.float32)


def predict(weight: np.ndarray, bias: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Top-1 class (n,) of features (n, D) under a probe."""
    return (np.asarray(features, dtype=np.float64) @ weight.T.astype(np.float64) + bias).argmax(1)


def accuracy(weight: np.ndarray, bias: np.ndarray, features: np.ndarray, labels: np.ndarray) -> float | None:
    """Fraction of ``features`` (n, D) whose top-1 class is their label; None for no rows."""
    if not len(labels):
        return None
    return float((predict(weight, bias, features) == np.asarray(labels)).mean())


def per_class(
    weight: np.ndarray, bias: np.ndarray, features: np.ndarray, labels: np.ndarray, train_labels: np.ndarray
) -> dict[int, dict]:
    """Per class of the data: its training photos, held-out photos and held-out accuracy (None without any)."""
    pred = predict(weight, bias, features) if len(labels) else np.zeros(0, np.int64)
    out = {}
    for c in sorted(set(np.asarray(train_labels).tolist()) | set(np.asarray(labels).tolist())):
        mine = np.asarray(labels) == c
        out[int(c)] = {
            "train": int((np.asarray(train_labels) == c).sum()),
            "held_out": int(mine.sum()),
            "accuracy": round(float((pred[mine] == c).mean()), 4) if mine.any() else None,
        }
    return out
