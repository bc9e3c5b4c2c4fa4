"""The aligned UMAP epoch over one stacked array (numba, compiled once into its cache): ``actlas.align.layout``'s.

umap-learn's ``_optimize_layout_aligned_euclidean_single_epoch`` (gamma 1, both ends of an edge
moved): the same updates in the same order, the same random draws. Its maps are items of a numba
typed list, and every read of a partner's coordinate goes through the list; here all maps are rows
of one array (map m at ``start[m]``), their edges and per-edge schedules too. Imported lazily:
importing it loads numba.
"""

import numba
import numpy as np
from umap.layouts import clip, rdist
from umap.utils import tau_rand_int


@numba.njit(fastmath=True, cache=True)
def _pull(grad, value, d, m, row, rel, weights, coef, lo, hi, embedding, start):
    """``grad`` minus the pull of coordinate d (``value``) of row ``row`` of map m towards its partners."""
    w = (rel.shape[1] - 1) // 2
    for offset in range(lo, hi):
        if offset == 0:
            continue
        partner = rel[m, offset + w, row]
        if partner >= 0:
            grad -= clip(
                coef[offset + w] * weights[m, offset + w, row] * (value - embedding[start[m + offset] + partner, d])
            )
    return grad


@numba.njit(fastmath=True, cache=True)
def epoch(
    embedding,
    start,
    heads,
    tails,
    edge_start,
    n_edges,
    epochs_per_sample,
    a,
    b,
    weights,
    rel,
    rng_state,
    lambda_,
    alpha,
    per_negative,
    next_negative,
    next_sample,
    n,
):
    """One epoch. ``embedding`` (N, 2) float32 stacks the maps (map m's rows from ``start[m]``); ``heads``, ``tails``
    (E,) are rows within their map, map m's edges from ``edge_start[m]`` (``n_edges[m]`` of them), the per-edge
    schedules (E,) alike; ``rel``, ``weights`` as umap-learn's (n_maps, 2W + 1, max rows)."""
    n_maps = len(start) - 1
    w = (rel.shape[1] - 1) // 2
    coef = np.empty(rel.shape[1], np.float64)
    for slot in range(rel.shape[1]):
        coef[slot] = lambda_ * np.exp(-(np.abs(slot - w) - 1))
    max_edges = n_edges.max()
    order = np.arange(n_maps).astype(np.int32)
    np.random.seed(abs(rng_state[0]))
    np.random.shuffle(order)
    dim = embedding.shape[1]
    for i in range(max_edges):
        for m in order:
            if i >= n_edges[m]:
                continue
            e = edge_start[m] + i
            if next_sample[e] > n:
                continue
            lo = max(-w, -m)  # umap-learn reads offsets -w .. w - 1 that name a map
            hi = min(w, n_maps - m)
            j = heads[e]
            k = tails[e]
            cj = start[m] + j
            ck = start[m] + k
            dist_squared = rdist(embedding[cj], embedding[ck])
            if dist_squared > 0.0:
                grad_coeff = -2.0 * a * b * pow(dist_squared, b - 1.0)
                grad_coeff /= a * pow(dist_squared, b) + 1.0
            else:
                grad_coeff = 0.0
            for d in range(dim):
                grad_d = clip(grad_coeff * (embedding[cj, d] - embedding[ck, d]))
                grad_d = _pull(grad_d, embedding[cj, d], d, m, j, rel, weights, coef, lo, hi, embedding, start)
                embedding[cj, d] += clip(grad_d) * alpha
                other_grad_d = clip(grad_coeff * (embedding[ck, d] - embedding[cj, d]))
                other_grad_d = _pull(
                    other_grad_d, embedding[ck, d], d, m, k, rel, weights, coef, lo, hi, embedding, start
                )
                embedding[ck, d] += clip(other_grad_d) * alpha
            next_sample[e] += epochs_per_sample[e]
            if per_negative[e] > 0:
                n_neg = int((n - next_negative[e]) / per_negative[e])
            else:
                n_neg = 0
            size = start[m + 1] - start[m]
            for _ in range(n_neg):
                k = tau_rand_int(rng_state) % size
                ck = start[m] + k
                dist_squared = rdist(embedding[cj], embedding[ck])
                if dist_squared > 0.0:
                    grad_coeff = 2.0 * b
                    grad_coeff /= (0.001 + dist_squared) * (a * pow(dist_squared, b) + 1)
                elif j == k:
                    continue
                else:
                    grad_coeff = 0.0
                for d in range(dim):
                    if grad_coeff > 0.0:
                        grad_d = clip(grad_coeff * (embedding[cj, d] - embedding[ck, d]))
                    else:
                        grad_d = 0.0
                    grad_d = _pull(grad_d, embedding[cj, d], d, m, j, rel, weights, coef, lo, hi, embedding, start)
                    embedding[cj, d] += clip(grad_d) * alpha
            next_negative[e] += n_neg * per_negative[e]
