"""Sparse autoencoders over a :class:`~actlas.concepts.stream.Blocks` stream: TopK, BatchTopK, archetypal.

:func:`learn_sae` trains :class:`SAE` in normalised units (rows centred, scaled to unit mean squared
norm) and returns a :class:`~actlas.concepts.dictionary.Dictionary` in activation units; the recipes
are described in :mod:`actlas.concepts.train`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .dictionary import Dictionary, DictionaryError
from .stream import Blocks, Stats, lr_scale

# --------------------------------------------------------------------------- sparse autoencoders


class SAE(torch.nn.Module):
    """TopK / BatchTopK autoencoder in normalised units; the decoder is plain or archetypal."""

    def __init__(
        self,
        channels: int,
        size: int,
        k: int,
        g: torch.Generator,
        batch_topk: bool,
        candidates: torch.Tensor | None,
        delta: float,
        init: torch.Tensor | None = None,
    ):
        super().__init__()
        self.k, self.batch_topk, self.delta = k, batch_topk, delta
        self.b_dec = torch.nn.Parameter(torch.zeros(channels))
        if candidates is None:
            if init is not None and len(init) >= size:
                d = init[torch.randperm(len(init), generator=g)[:size]] + 1e-3 * torch.randn(
                    size, channels, generator=g
                )
            else:
                d = torch.randn(size, channels, generator=g)
            self.D = torch.nn.Parameter(d / d.norm(dim=1, keepdim=True).clamp_min(1e-8))
            self.register_buffer("cand", torch.zeros(0, channels))
        else:
            # each atom starts at a distinct candidate (Overcomplete starts W at the identity)
            self.register_buffer("cand", candidates)
            start = torch.randperm(len(candidates), generator=g)[:size]
            w = torch.zeros(size, len(candidates))
            w[torch.arange(size), start] = 1.0
            self.W = torch.nn.Parameter(w)
            self.relax = torch.nn.Parameter(torch.zeros(size, channels))
        atoms = self.atoms().detach()
        self.W_enc = torch.nn.Parameter(atoms.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(size))
        self.threshold = None

    @property
    def archetypal(self) -> bool:
        return len(self.cand) > 0

    def atoms(self) -> torch.Tensor:
        """(K, C) unit rows."""
        if not self.archetypal:
            return self.D
        d = self.W @ self.cand + self.relax
        return d / d.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def codes(self, pre: torch.Tensor) -> torch.Tensor:
        if self.batch_topk:
            flat = pre.clamp_min(0).flatten()
            n_keep = min(self.k * pre.shape[0], flat.numel())
            thr = flat.topk(n_keep).values[-1].detach().clamp_min(1e-12)
            self.last_threshold = float(thr)
            return pre * (pre >= thr)
        val, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, val.clamp_min(0))

    @torch.no_grad()
    def project(self) -> None:
        """Back onto the constraints after a step: unit atoms, or row-stochastic W and a bounded relaxation."""
        if not self.archetypal:
            self.D /= self.D.norm(dim=1, keepdim=True).clamp_min(1e-8)
            return
        w = self.W.clamp_min(0)
        self.W.copy_(w / (w.sum(1, keepdim=True) + 1e-8))
        norm = self.relax.norm(dim=1, keepdim=True)
        self.relax.mul_(torch.clamp(self.delta / norm.clamp_min(1e-12), max=1.0))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        if not self.archetypal and self.D.grad is not None:
            self.D.grad -= (self.D.grad * self.D).sum(1, keepdim=True) * self.D


def kmeans_candidates(stats: Stats, n: int) -> torch.Tensor:
    """``n`` k-means centroids of the (centred, scaled) row sample: the archetypal candidates.

    Like the mean and the scale, they are a function of the rows alone (a fixed k-means seed and a fixed
    sample), not of the training seed: the seed varies the initial atoms and the order of the rows.
    """
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    x = (stats.sample - stats.mean) / stats.scale
    n = min(n, len(x))
    km = MiniBatchKMeans(n_clusters=n, random_state=0, batch_size=4096, n_init=1, max_iter=20)
    # scikit-learn's OpenMP threads: as many as torch's, not every core (the job asked for its threads)
    with threadpool_limits(limits=torch.get_num_threads()):
        km.fit(x)
    return torch.from_numpy(km.cluster_centers_.astype(np.float32))


def learn_sae(
    blocks: Blocks,
    stats: Stats,
    method: str,
    size: int,
    k: int,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    encoding: str | None,
    delta: float,
    candidates: int | None,
    dead_after: int,
    init_from_rows: bool,
) -> Dictionary:
    g = torch.Generator().manual_seed(seed)
    channels = len(stats.mean)
    cand = None
    if method == "archetypal":
        start = time.perf_counter()
        cand = kmeans_candidates(stats, candidates or 2 * size)
        kmeans_seconds = time.perf_counter() - start
        if len(cand) < size:
            raise DictionaryError(
                f"archetypal needs at least {size} candidate rows, the sample holds {len(cand)}; lower concepts.size"
            )
    init = torch.from_numpy((stats.sample - stats.mean) / stats.scale) if init_from_rows else None
    model = SAE(channels, size, k, g, method == "batchtopk", cand, delta, init)
    dead_after = min(dead_after, stats.n)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps_per_epoch = sum(math.ceil(s / batch_size) for s in blocks.sizes())
    total = epochs * steps_per_epoch
    decay_from = int(0.8 * total)
    k_aux = max(1, min(size // 2, channels // 2))
    since = torch.zeros(size)  # rows since each latent last fired
    thr_sum, thr_n = 0.0, 0
    step, loss_sum, loss_n = 0, 0.0, 0
    for epoch in range(epochs):
        for block, order in blocks.epoch(g):
            for s in range(0, len(block), batch_size):
                x = block[order[s : s + batch_size]]
                pre = model.pre(x)
                z = model.codes(pre)
                atoms = model.atoms()
                err = x - (z @ atoms + model.b_dec)
                loss = (err * err).sum(1).mean()
                fired = (z > 0).any(0)
                since = torch.where(fired, torch.zeros_like(since), since + len(x))
                dead = since > dead_after
                n_dead = int(dead.sum())
                if n_dead:
                    # AuxK: the dead latents' top pre-activations reconstruct what the live ones missed
                    ka = min(k_aux, n_dead)
                    val, idx = pre.masked_fill(~dead, float("-inf")).topk(ka, dim=1)
                    za = torch.zeros_like(pre).scatter(1, idx, val.clamp_min(0))
                    aux = err.detach() - za @ atoms
                    loss = loss + (aux * aux).sum(1).mean() / 32
                opt.zero_grad(set_to_none=True)
                loss.backward()
                model.remove_parallel_grad()
                scale = lr_scale(step, total)
                for group in opt.param_groups:
                    group["lr"] = lr * scale
                opt.step()
                model.project()
                if model.batch_topk and step >= decay_from:
                    thr_sum, thr_n = thr_sum + model.last_threshold, thr_n + 1
                if epoch == epochs - 1:
                    loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
                step += 1
    with torch.no_grad():
        atoms = model.atoms().detach().numpy().astype(np.float32)
        b_dec = model.b_dec.detach().numpy()
        w_enc = model.W_enc.detach().numpy()
        b_enc = model.b_enc.detach().numpy()
    s = stats.scale
    threshold = s * thr_sum / thr_n if model.batch_topk and thr_n else None
    info = {
        "method": method,
        "size": size,
        "k": k,
        "lr": lr,
        "batch_size": batch_size,
        "steps": step,
        "final_loss": round(loss_sum / max(loss_n, 1), 6),
        "dead_in_training": int((since > dead_after).sum()),
    }
    if method == "archetypal":
        info.update(candidates=len(cand), delta=delta, kmeans_seconds=round(kmeans_seconds, 3))
    # back to activation units: x ~= mean + s * (z @ atoms + b_dec); codes in activation units are s * z
    return Dictionary(
        atoms=atoms,
        center=stats.mean + s * b_dec,
        k=k,
        encoding=encoding or "omp",
        encoder=w_enc,
        encoder_bias=s * b_enc,
        threshold=threshold,
        method=method,
        info=info,
    )
