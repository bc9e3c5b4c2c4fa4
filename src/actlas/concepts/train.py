"""Learning a dictionary from a stream of activation chunks, in a bounded amount of memory.

:func:`learn` reads the stream (:data:`~actlas.concepts.dictionary.Chunks`) several times: one
pass for the count, mean, scale, minimum and a uniform sample of rows (the sample seeds the
archetypal candidates), then one pass per epoch. Rows are held in float32 blocks of at most
``memory_bytes``; when every training row fits, the block is read once and kept, else each epoch
streams the chunks block by block and shuffles within each block. Nothing else grows with the
number of rows, so 1,000,000 x 512 float16 rows train within about ``memory_bytes`` plus the model.

Methods:

- ``"topk"``: a TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse
  autoencoders", and OpenAI's ``sparse_autoencoder``): inputs centred on the mean and scaled to unit
  mean squared norm; a learned pre-encoder bias (``b_dec``) subtracted before the encoder and added
  back after the decoder; encoder initialised as the decoder's transpose; decoder rows kept at unit
  norm after every step, with the gradient parallel to each row removed first (Anthropic's and saev's
  recipe); Adam, a short warm-up and a linear decay over the last fifth of the steps; and the AuxK
  loss (1/32 of the error of reconstructing the residual from the top ``k_aux`` dead latents) so that
  latents that stop firing get a gradient again.
- ``"batchtopk"``: the same, keeping the top ``k x batch`` activations of a whole batch (Bussmann et
  al. 2024); inference uses a fixed threshold, the running mean of the batches' smallest kept value.
- ``"archetypal"``: TopK with Fel et al.'s (2025) relaxed archetypal dictionary: each atom is a convex
  combination of candidate points (k-means centroids of a sample of the rows) plus a relaxation of
  norm at most ``delta``, which ties atoms to the data and makes them more stable across seeds.
- ``"dl"``: classic sparse dictionary learning (Olshausen and Field; Mairal et al.'s online form):
  codes by non-negative OMP (:func:`~actlas.concepts.dictionary.omp`) on the current atoms, atoms by
  Adam on the reconstruction error, unit rows, atoms initialised at sampled rows, and an atom unused for
  ``dead_after`` rows restarted at the worst-reconstructed row of the batch. No encoder: codes by OMP.
- ``"nmf"``: for non-negative layers (post-ReLU maps), as Lucid's Building Blocks did: ``"dl"`` with
  atoms kept non-negative and rows not centred, a sparse NMF (codes and atoms non-negative, at most k
  atoms a row). Sparse because the dictionaries are overcomplete (K > C), where plain NMF has no unique
  answer; scikit-learn's ``MiniBatchNMF`` (partial_fit) found planted parts less well (tests, BENCHMARKS).

Results are deterministic for a given seed, thread count and stream.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch

from .dictionary import Chunks, Dictionary, DictionaryError, row_hash, torch_threads

METHODS = ("auto", "topk", "batchtopk", "archetypal", "dl", "nmf")
#: What ``method="auto"`` learns, by the sign of the layer's activations (chosen by bench_concepts.py).
AUTO = {"signed": "archetypal", "nonnegative": "nmf"}


def learn(
    chunks: Chunks,
    *,
    method: str = "auto",
    size: int = 512,
    k: int = 16,
    seed: int = 0,
    epochs: int | None = None,
    samples: int = 500_000,
    batch_size: int = 1024,
    lr: float = 3e-3,
    encoding: str | None = None,
    delta: float = 0.1,
    candidates: int | None = None,
    dead_after: int = 32768,
    memory_bytes: int = 1 << 30,
    sample_rows: int = 65536,
    threads: int | None = None,
    init_from_rows: bool = True,
) -> Dictionary:
    """Learn a :class:`~actlas.concepts.dictionary.Dictionary` of ``size`` atoms from a stream.

    Parameters
    ----------
    chunks : the training rows, a re-iterable stream of (n_i, C) float16/float32 chunks (split held-out
        rows off first with :func:`actlas.concepts.dictionary.split`)
    method : ``"topk"``, ``"batchtopk"``, ``"archetypal"``, ``"dl"``, ``"nmf"``, or ``"auto"``: :data:`AUTO`'s
        choice for the layer, NMF when no activation is negative (post-ReLU), else an archetypal TopK
        autoencoder
    size : K, the number of atoms (typically 256 to 1,024)
    k : active atoms per sample (TopK, OMP), or on average (BatchTopK)
    seed : initialisation and shuffling
    epochs : passes over the rows; default: enough to see about ``samples`` rows (at least 2, at most 50)
    batch_size, lr : the minibatch and Adam's learning rate
    encoding : how :meth:`Dictionary.encode` encodes by default: ``"omp"`` (default: on the features.13,
        features.16 and layer3 benchmarks it explains more held-out variance at the same L0 than the
        autoencoders' own encoders) or ``"encoder"`` (the autoencoders' only; faster)
    delta : the archetypal relaxation's largest norm, in units of the rows' root mean squared norm
    candidates : archetypal candidate points (k-means centroids; default 2 x size, at most the sample)
    dead_after : a latent that has not fired for this many rows counts as dead for the AuxK loss
    memory_bytes : the float32 training rows held at once
    sample_rows : rows sampled uniformly in the first pass (archetypal candidates)
    threads : torch threads (default: as set)
    init_from_rows : the autoencoders' atoms start at sampled rows (centred), else at random directions
    """
    if method not in METHODS:
        raise DictionaryError(f"unknown concepts method {method!r}; use one of {', '.join(METHODS)} (concepts.method)")
    if size < 1 or not 1 <= k <= size:
        raise DictionaryError(f"concepts need size >= 1 and 1 <= k <= size, got size {size} and k {k}")
    with torch_threads(threads):
        start = time.perf_counter()
        stats = _first_pass(chunks, sample_rows)
        if stats.n < 2:
            raise DictionaryError(f"a dictionary needs at least 2 training rows, the stream holds {stats.n}")
        if method == "auto":
            method = AUTO["nonnegative" if stats.minimum >= 0 else "signed"]
        if epochs is None:
            epochs = int(min(50, max(2, math.ceil(samples / stats.n))))
        blocks = _Blocks(chunks, stats, memory_bytes, center=method != "nmf")
        if method == "dl":
            d = _learn_dl(blocks, stats, size, k, seed, epochs, batch_size, lr, encoding, dead_after)
        elif method == "nmf":
            d = _learn_dl(blocks, stats, size, k, seed, epochs, batch_size, lr, encoding, dead_after, nonneg=True)
        else:
            d = _learn_sae(
                blocks,
                stats,
                method,
                size,
                k,
                seed,
                epochs,
                batch_size,
                lr,
                encoding,
                delta,
                candidates,
                dead_after,
                init_from_rows,
            )
        d.info.update(
            rows=stats.n,
            epochs=epochs,
            seconds=round(time.perf_counter() - start, 3),
            threads=torch.get_num_threads(),
            seed=seed,
        )
        return d


# --------------------------------------------------------------------------- passes over the stream


class _Stats:
    """First-pass figures of the training rows: count, mean (C,), scale, minimum, and a row sample."""

    def __init__(self, n: int, mean: np.ndarray, scale: float, raw_scale: float, minimum: float, sample: np.ndarray):
        self.n, self.mean, self.scale, self.raw_scale, self.minimum, self.sample = (
            n,
            mean,
            scale,
            raw_scale,
            minimum,
            sample,
        )


def _first_pass(chunks: Chunks, sample_rows: int) -> _Stats:
    n, total, sq, minimum = 0, None, 0.0, math.inf
    keep_x: list[np.ndarray] = []
    keep_h: list[np.ndarray] = []
    kept = 0
    for c in chunks():
        c = np.asarray(c)
        if c.ndim != 2:
            raise DictionaryError(f"activation chunks must be (n, C), got shape {c.shape}")
        if len(c) == 0:
            continue
        x = c.astype(np.float64)
        if not np.isfinite(x).all():
            raise DictionaryError("the activations hold NaN or infinite values; collect the layer again")
        total = x.sum(0) if total is None else total + x.sum(0)
        sq += float((x * x).sum())
        minimum = min(minimum, float(x.min()))
        # a uniform sample whatever the chunking: the rows with the smallest hashes (a bottom-m sketch)
        h = row_hash(n, len(c), 0xA11CE)
        keep_x.append(c.astype(np.float32))
        keep_h.append(h)
        kept += len(c)
        n += len(c)
        if kept > 2 * sample_rows:
            keep_x, keep_h, kept = _prune(keep_x, keep_h, sample_rows)
    if n == 0:
        return _Stats(0, np.zeros(0, np.float32), 1.0, 1.0, 0.0, np.zeros((0, 0), np.float32))
    keep_x, keep_h, _ = _prune(keep_x, keep_h, sample_rows)
    mean = total / n
    var = max(sq / n - float(mean @ mean), 0.0)
    scale = math.sqrt(var) if var > 0 else 1.0
    raw = math.sqrt(sq / n) if sq > 0 else 1.0
    return _Stats(n, mean.astype(np.float32), scale, raw, minimum, keep_x[0])


def _prune(xs: list[np.ndarray], hs: list[np.ndarray], m: int):
    x, h = np.concatenate(xs), np.concatenate(hs)
    order = np.argsort(h, kind="stable")[:m]
    order.sort()
    return [x[order]], [h[order]], len(order)


class _Blocks:
    """Epochs over the training rows in float32 blocks of at most ``memory_bytes`` (one buffer, reused).

    Rows are centred and scaled as they are copied in (``offset``, ``div``); each block comes with a
    random order of its rows, and minibatches gather rows in that order.
    """

    def __init__(self, chunks: Chunks, stats: _Stats, memory_bytes: int, center: bool):
        self.chunks, self.stats = chunks, stats
        self.channels = len(stats.mean)
        self.cap = min(stats.n, max(1024, int(memory_bytes // (4 * max(self.channels, 1)))))
        self.offset = stats.mean if center else np.zeros_like(stats.mean)
        self.div = stats.scale if center else stats.raw_scale
        self._buffer: np.ndarray | None = None
        self._whole = False  # the buffer holds every row: read once, kept for every epoch

    def sizes(self) -> list[int]:
        """Rows of each block of an epoch."""
        full, rest = divmod(self.stats.n, self.cap)
        return [self.cap] * full + ([rest] if rest else [])

    def epoch(self, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The blocks of one epoch as (rows (n_b, C) float32, a random order of them (n_b,) from ``g``)."""
        if self._buffer is None:
            self._buffer = np.empty((self.cap, self.channels), np.float32)
        if self._whole:
            yield torch.from_numpy(self._buffer), torch.randperm(self.cap, generator=g)
            return
        held = 0
        for c in self.chunks():
            c = np.asarray(c)
            while len(c):
                take = min(len(c), self.cap - held)
                part = self._buffer[held : held + take]
                part[:] = c[:take]
                part -= self.offset
                part /= self.div
                held += take
                c = c[take:]
                if held == self.cap:
                    self._whole = self.cap == self.stats.n
                    yield torch.from_numpy(self._buffer), torch.randperm(held, generator=g)
                    held = 0
        if held:
            yield torch.from_numpy(self._buffer[:held]), torch.randperm(held, generator=g)


# --------------------------------------------------------------------------- sparse autoencoders


class _SAE(torch.nn.Module):
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


def _candidates(stats: _Stats, n: int) -> torch.Tensor:
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


def _learn_sae(
    blocks: _Blocks,
    stats: _Stats,
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
        cand = _candidates(stats, candidates or 2 * size)
        kmeans_seconds = time.perf_counter() - start
        if len(cand) < size:
            raise DictionaryError(
                f"archetypal needs at least {size} candidate rows, the sample holds {len(cand)}; lower concepts.size"
            )
    init = torch.from_numpy((stats.sample - stats.mean) / stats.scale) if init_from_rows else None
    model = _SAE(channels, size, k, g, method == "batchtopk", cand, delta, init)
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
                scale = _lr_scale(step, total)
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


# --------------------------------------------------------------------------- dictionary learning


def _lr_scale(step: int, total: int) -> float:
    """Warm-up over the first 2% of the steps (at most 100), linear decay to 0 over the last 20%."""
    warmup = max(1, min(100, total // 50))
    decay_from = int(0.8 * total)
    scale = min(1.0, (step + 1) / warmup)
    if step >= decay_from:
        scale *= max(0.0, (total - step) / max(1, total - decay_from))
    return scale


def _learn_dl(
    blocks: _Blocks,
    stats: _Stats,
    size: int,
    k: int,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    encoding: str | None,
    dead_after: int,
    nonneg: bool = False,
) -> Dictionary:
    """Sparse dictionary learning with OMP codes; ``nonneg``: sparse NMF (atoms >= 0, rows not centred)."""
    from .dictionary import omp

    method = "nmf" if nonneg else "dl"
    if encoding == "encoder":
        raise DictionaryError(f"method {method} has no encoder; use encoding 'omp'")
    if nonneg and stats.minimum < 0:
        raise DictionaryError(
            f"NMF needs non-negative activations (a post-ReLU layer), this layer reaches {stats.minimum:.3g}; "
            "use concepts.method topk"
        )
    g = torch.Generator().manual_seed(seed)
    sample = torch.from_numpy((stats.sample - blocks.offset) / blocks.div)
    if len(sample) < size:
        raise DictionaryError(
            f"method {method} starts its {size} atoms at sampled rows, the sample holds {len(sample)}"
        )
    d0 = sample[torch.randperm(len(sample), generator=g)[:size]] + 1e-3 * torch.rand(size, sample.shape[1], generator=g)
    D = torch.nn.Parameter(d0 / d0.norm(dim=1, keepdim=True).clamp_min(1e-8))
    b = torch.nn.Parameter(torch.zeros(len(stats.mean)))
    opt = torch.optim.Adam([D] if nonneg else [D, b], lr=lr)
    total = epochs * sum(math.ceil(n / batch_size) for n in blocks.sizes())
    since = torch.zeros(size)
    dead_after = min(dead_after, stats.n)
    step, restarts, loss_sum, loss_n = 0, 0, 0.0, 0
    for epoch in range(epochs):
        for block, order in blocks.epoch(g):
            for s in range(0, len(block), batch_size):
                x = block[order[s : s + batch_size]]
                with torch.no_grad():
                    idx, val = omp(x - b, D, k)
                    z = torch.zeros(len(x), size).scatter_(1, idx, val)
                err = x - (z @ D + b)
                loss = (err * err).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                with torch.no_grad():
                    D.grad -= (D.grad * D).sum(1, keepdim=True) * D
                for group in opt.param_groups:
                    group["lr"] = lr * _lr_scale(step, total)
                opt.step()
                with torch.no_grad():
                    fired = (z > 0).any(0)
                    since = torch.where(fired, torch.zeros_like(since), since + len(x))
                    dead = torch.nonzero(since > dead_after).flatten()
                    if len(dead) and step < int(0.8 * total):
                        # restart dead atoms at what the batch's worst-reconstructed rows miss
                        worst = (err * err).sum(1).argsort(descending=True)[: len(dead)]
                        r = err.detach()[worst]
                        D[dead[: len(r)]] = r.clamp_min(0) + 1e-6 if nonneg else r
                        since[dead[: len(r)]] = 0
                        restarts += len(r)
                    if nonneg:
                        D.clamp_(min=0)
                    D /= D.norm(dim=1, keepdim=True).clamp_min(1e-8)
                if epoch == epochs - 1:
                    loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
                step += 1
    info = {
        "method": method,
        "size": size,
        "k": k,
        "lr": lr,
        "batch_size": batch_size,
        "steps": step,
        "restarts": restarts,
        "final_loss": round(loss_sum / max(loss_n, 1), 6),
    }
    center = blocks.offset + blocks.div * b.detach().numpy()
    return Dictionary(
        atoms=D.detach().numpy().copy(),
        center=center.astype(np.float32),
        k=k,
        encoding="omp",
        method=method,
        info=info,
    )
