"""A dictionary of concepts: K unit directions over C channels, a centre, and how samples are encoded.

Every kind (a TopK or BatchTopK sparse autoencoder, an archetypal one, NMF, a dictionary the user
brings) ends up as a :class:`Dictionary`: ``atoms`` (K, C) unit rows, ``center`` (C,), and an
optional linear ``encoder``. :meth:`Dictionary.encode` turns activations (n, C) into non-negative
sparse codes (n, K) with ``x ~= center + codes @ atoms``.

Two encodings:

- ``"encoder"``: the autoencoder's own (amortised) encoder, ``relu(topk((x - center) @ encoder +
  encoder_bias))``, or a fixed threshold for BatchTopK (``threshold``);
- ``"omp"``: non-negative orthogonal matching pursuit on the atoms, ``k`` greedy steps, each
  refitting the coefficients of the chosen atoms by least squares (clipped at zero). It needs no
  encoder, so it also serves NMF and decoder-only dictionaries.

Files: :mod:`actlas.formats.dictionary` saves and loads it as safetensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError

FORMAT = "actlas.concepts/1"
ENCODINGS = ("encoder", "omp")

#: A re-iterable stream of activation chunks: each call starts a new pass and yields (n_i, C)
#: float16 or float32 arrays, always the same rows in the same order.
Chunks = Callable[[], Iterable[np.ndarray]]


class DictionaryError(UserError, ValueError):
    """A dictionary file or setting actlas cannot use (a missing key, a wrong shape, a bad setting)."""


@dataclass
class Dictionary:
    """K concepts over C channels.

    Attributes
    ----------
    atoms : (K, C) float32, unit rows: the concepts' directions
    center : (C,) float32, subtracted before encoding and added back by :meth:`decode`
    k : active atoms per sample (TopK and OMP); for BatchTopK the mean it was trained at
    encoding : ``"encoder"`` or ``"omp"`` (what :meth:`encode` does by default)
    encoder : (C, K) float32 or None; encoder_bias : (K,) float32 or None
    encoder_scale : (K,) float32 or None: codes along the unit atoms are the encoder's outputs times
        this (the norms of a loaded decoder's rows: TopK picks on the encoder's own outputs)
    threshold : BatchTopK's inference threshold on the pre-activations (None: TopK per sample)
    method : how it was made (``"topk"``, ``"batchtopk"``, ``"archetypal"``, ``"nmf"``, ``"loaded"``)
    info : settings and figures of its training (JSON-able)
    """

    atoms: np.ndarray
    center: np.ndarray
    k: int
    encoding: str = "omp"
    encoder: np.ndarray | None = None
    encoder_bias: np.ndarray | None = None
    encoder_scale: np.ndarray | None = None
    threshold: float | None = None
    method: str = "loaded"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.atoms = np.ascontiguousarray(self.atoms, dtype=np.float32)
        if self.atoms.ndim != 2:
            raise DictionaryError(f"atoms must be (K, C), got shape {self.atoms.shape}")
        n_atoms, channels = self.atoms.shape
        self.center = np.zeros(channels, np.float32) if self.center is None else np.asarray(self.center, np.float32)
        if self.center.shape != (channels,):
            raise DictionaryError(f"center must be ({channels},) for {channels} channels, got {self.center.shape}")
        if self.encoding not in ENCODINGS:
            raise DictionaryError(f"unknown encoding {self.encoding!r}; use one of {', '.join(ENCODINGS)}")
        if self.encoding == "encoder" and self.encoder is None:
            raise DictionaryError(
                "encoding 'encoder' needs an encoder; use encoding 'omp' for a decoder-only dictionary"
            )
        if self.encoder is not None:
            self.encoder = np.ascontiguousarray(self.encoder, dtype=np.float32)
            if self.encoder.shape != (channels, n_atoms):
                raise DictionaryError(f"encoder must be ({channels}, {n_atoms}), got {self.encoder.shape}")
            bias = np.zeros(n_atoms, np.float32) if self.encoder_bias is None else self.encoder_bias
            self.encoder_bias = np.asarray(bias, np.float32).reshape(-1)
            if self.encoder_bias.shape != (n_atoms,):
                raise DictionaryError(f"encoder bias must be ({n_atoms},), got {self.encoder_bias.shape}")
            if self.encoder_scale is not None:
                self.encoder_scale = np.asarray(self.encoder_scale, np.float32).reshape(-1)
                if self.encoder_scale.shape != (n_atoms,) or (self.encoder_scale <= 0).any():
                    raise DictionaryError(f"encoder scale must be ({n_atoms},) and positive")
        if not 1 <= int(self.k) <= n_atoms:
            raise DictionaryError(f"k must be between 1 and the {n_atoms} atoms, got {self.k}")
        self.k = int(self.k)

    @property
    def size(self) -> int:
        """K, the number of atoms."""
        return self.atoms.shape[0]

    @property
    def channels(self) -> int:
        """C, the number of channels."""
        return self.atoms.shape[1]

    def encode(self, x: np.ndarray, *, encoding: str | None = None, k: int | None = None) -> np.ndarray:
        """Non-negative sparse codes (n, K) float32 of activations ``x`` (n, C), at most ``k`` non-zero a row
        (BatchTopK's threshold: ``k`` on average)."""
        idx, val = self.encode_sparse(x, encoding=encoding, k=k)
        return dense_codes(idx, val, self.size)

    def encode_sparse(
        self, x: np.ndarray, *, encoding: str | None = None, k: int | None = None, rows: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """Codes as (idx (n, k') int64, val (n, k') float32): the atoms and their non-negative weights.

        Zero weights fill rows with fewer active atoms (their ``idx`` is then arbitrary). ``rows``
        bounds the working memory (rows encoded at once).
        """
        encoding = encoding or self.encoding
        k = int(k or self.k)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise DictionaryError(f"activations must be (n, {self.channels}), got shape {x.shape}")
        tensors = _Tensors(self)
        idx_parts, val_parts = [], []
        with torch.no_grad():
            for s in range(0, len(x), rows):
                xc = torch.from_numpy(np.asarray(x[s : s + rows], np.float32)) - tensors.center
                if encoding == "encoder":
                    if self.encoder is None:
                        raise DictionaryError("this dictionary has no encoder; encode with encoding='omp'")
                    i, v = _encode_encoder(xc, tensors, k, self.threshold)
                elif encoding == "omp":
                    i, v = omp(xc, tensors.atoms, k, gram=tensors.gram)
                else:
                    raise DictionaryError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
                idx_parts.append(i.numpy())
                val_parts.append(v.numpy())
        if not idx_parts:
            width = k if encoding == "omp" or self.threshold is None else self.size
            return np.zeros((0, width), np.int64), np.zeros((0, width), np.float32)
        width = max(p.shape[1] for p in idx_parts)
        idx = np.concatenate([_pad(p, width, 0) for p in idx_parts])
        val = np.concatenate([_pad(p, width, 0.0) for p in val_parts])
        return idx, val

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction (n, C) float32 of dense codes (n, K): ``center + codes @ atoms``."""
        return (np.asarray(codes, np.float32) @ self.atoms + self.center).astype(np.float32)

    def decode_sparse(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        """Reconstruction (n, C) float32 of sparse codes (idx, val) as :meth:`encode_sparse` returns them."""
        return (np.einsum("nk,nkc->nc", val, self.atoms[idx]) + self.center).astype(np.float32)


def dense_codes(idx: np.ndarray, val: np.ndarray, size: int) -> np.ndarray:
    """Dense codes (n, size) float32 from sparse ones (idx (n, k), val (n, k)); zero weights are padding."""
    out = np.zeros((len(idx), size), np.float32)
    rows, slots = np.nonzero(val > 0)
    out[rows, idx[rows, slots]] = val[rows, slots]
    return out


def _pad(a: np.ndarray, width: int, fill) -> np.ndarray:
    if a.shape[1] == width:
        return a
    return np.concatenate([a, np.full((a.shape[0], width - a.shape[1]), fill, a.dtype)], axis=1)


class _Tensors:
    """The dictionary's arrays as torch tensors, made once per encode call."""

    def __init__(self, d: Dictionary):
        self.atoms = torch.from_numpy(d.atoms)
        self.center = torch.from_numpy(d.center)
        self.encoder = None if d.encoder is None else torch.from_numpy(d.encoder)
        self.encoder_bias = None if d.encoder_bias is None else torch.from_numpy(d.encoder_bias)
        self.encoder_scale = None if d.encoder_scale is None else torch.from_numpy(d.encoder_scale)
        self._gram = None

    @property
    def gram(self) -> torch.Tensor:
        if self._gram is None:
            self._gram = self.atoms @ self.atoms.T
        return self._gram


def _encode_encoder(xc: torch.Tensor, t: _Tensors, k: int, threshold: float | None):
    pre = xc @ t.encoder + t.encoder_bias
    if threshold is None:
        val, idx = pre.topk(k, dim=1)
        val = val.clamp_min(0)
    else:
        # BatchTopK at inference: a fixed threshold (JumpReLU), so a row may hold more or fewer than k atoms
        keep = pre > threshold
        width = max(int(keep.sum(1).max()) if len(pre) else 0, 1)
        val, idx = torch.where(keep, pre, torch.zeros_like(pre)).topk(width, dim=1)
    if t.encoder_scale is not None:
        val = val * t.encoder_scale[idx]
    return idx, val


def omp(xc: torch.Tensor, atoms: torch.Tensor, k: int, *, gram: torch.Tensor | None = None):
    """Non-negative orthogonal matching pursuit: (idx (n, k) int64, val (n, k) float32).

    ``xc`` (n, C) centred activations, ``atoms`` (K, C) unit rows. Each of ``k`` steps adds the atom
    most positively correlated with the residual and refits the chosen atoms' coefficients by least
    squares on their Gram matrix, clipping negative ones to zero (an approximate non-negative least
    squares, exact whenever no coefficient is clipped). A row stops early when no atom correlates
    positively with its residual; its remaining slots hold weight 0. Cost per step: two (n, K, C)
    matrix products (or one (n, K, K) when K < 2C) and a batched (s x s) solve.
    """
    n, size = xc.shape[0], atoms.shape[0]
    gram = atoms @ atoms.T if gram is None else gram
    k = min(k, size)
    corr0 = xc @ atoms.T  # (n, K): x . d_j
    corr = corr0
    idx = torch.zeros(n, k, dtype=torch.long)
    coef = torch.zeros(n, k)
    g = torch.zeros(n, k, k)  # the chosen atoms' Gram matrices, grown a row and a column a step
    taken = torch.zeros(n, size, dtype=torch.bool)
    rows = torch.arange(n)
    active = torch.ones(n, dtype=torch.bool)
    tol = 1e-7 * xc.norm(dim=1).clamp_min(1e-12)
    via_gram = size < 2 * xc.shape[1]
    for s in range(k):
        best, j = corr.masked_fill(taken, float("-inf")).max(1)
        active &= best > tol
        idx[:, s] = j
        taken[rows, j] = True
        sel = idx[:, : s + 1]
        g[:, s, : s + 1] = gram[j.unsqueeze(1), sel]
        g[:, : s + 1, s] = g[:, s, : s + 1].clone()
        g[:, s, s] += 1e-6
        new = torch.linalg.solve(g[:, : s + 1, : s + 1], corr0.gather(1, sel)).clamp_min(0)
        # a row that found no positive atom keeps its coefficients (its new slot stays 0)
        coef[:, : s + 1] = torch.where(active.unsqueeze(1), new, coef[:, : s + 1])
        if s + 1 < k:
            z = torch.zeros(n, size).scatter_(1, sel, coef[:, : s + 1])
            corr = corr0 - z @ gram if via_gram else (xc - z @ atoms) @ atoms.T
    return idx, coef


# --------------------------------------------------------------------------- streams


def array_chunks(x: np.ndarray, rows: int = 8192) -> Chunks:
    """A :data:`Chunks` stream over an in-memory array (n, C), ``rows`` rows a chunk."""

    def chunks() -> Iterator[np.ndarray]:
        for s in range(0, len(x), rows):
            yield x[s : s + rows]

    return chunks


def _mix(v: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed 64-bit hash of uint64 ``v``."""
    with np.errstate(over="ignore"):
        v = (v + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        v = (v ^ (v >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        v = (v ^ (v >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return v ^ (v >> np.uint64(31))


def row_hash(start: int, n: int, salt: int) -> np.ndarray:
    """A uniform value in [0, 1) per row ``start .. start + n - 1`` of a stream, independent of chunking."""
    rows = np.arange(start, start + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(rows ^ _mix(np.full(1, salt, np.uint64)))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def heldout_mask(start: int, n: int, fraction: float, salt: int = 0) -> np.ndarray:
    """Which rows ``start .. start + n - 1`` of a stream are held out (bool (n,)): a ``fraction`` of them,
    the same rows whatever the chunking and whatever the training seed (``salt`` picks another split)."""
    return row_hash(start, n, salt + 0x5EED) < fraction


def split(chunks: Chunks, fraction: float, salt: int = 0) -> tuple[Chunks, Chunks]:
    """(training rows, held-out rows) of a stream, as two streams (see :func:`heldout_mask`)."""

    def part(held: bool) -> Chunks:
        def gen() -> Iterator[np.ndarray]:
            start = 0
            for c in chunks():
                m = heldout_mask(start, len(c), fraction, salt)
                start += len(c)
                rows = c[m] if held else c[~m]
                if len(rows):
                    yield rows

        return gen

    return part(False), part(True)


@contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch threads (None: leave as is), restoring the count afterwards."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
