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

import numpy as np
import torch

from .dictionary import Chunks, Dictionary, DictionaryError, torch_threads
from .sae import learn_sae
from .stream import Blocks, Stats, first_pass, lr_scale

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
        stats = first_pass(chunks, sample_rows)
        if stats.n < 2:
            raise DictionaryError(f"a dictionary needs at least 2 training rows, the stream holds {stats.n}")
        if method == "auto":
            method = AUTO["nonnegative" if stats.minimum >= 0 else "signed"]
        if epochs is None:
            epochs = int(min(50, max(2, math.ceil(samples / stats.n))))
        blocks = Blocks(chunks, stats, memory_bytes, center=method != "nmf")
        if method == "dl":
            d = _learn_dl(blocks, stats, size, k, seed, epochs, batch_size, lr, encoding, dead_after)
        elif method == "nmf":
            d = _learn_dl(blocks, stats, size, k, seed, epochs, batch_size, lr, encoding, dead_after, nonneg=True)
        else:
            d = learn_sae(
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


# --------------------------------------------------------------------------- dictionary learning


def _learn_dl(
    blocks: Blocks,
    stats: Stats,
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
                    group["lr"] = lr * lr_scale(step, total)
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
