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

Files: :func:`save` writes safetensors with the keys saev and SAELens use (``W_dec`` (K, C),
``b_dec`` (C,), ``W_enc`` (C, K), ``b_enc`` (K,)) and the rest as string metadata; :func:`load`
reads those, Overcomplete's state-dict keys and OpenAI's, and never runs code from the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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


# --------------------------------------------------------------------------- files


def save(d: Dictionary, path: str | Path) -> None:
    """Write ``d`` as safetensors: ``W_dec`` (K, C), ``b_dec`` (C,), and ``W_enc`` (C, K), ``b_enc`` (K,)
    when it has an encoder (saev's and SAELens' names), the rest as metadata."""
    from safetensors.numpy import save_file

    # a loaded dictionary's encoder scale goes back into its decoder's row norms, as it came
    atoms = d.atoms if d.encoder_scale is None else d.atoms * d.encoder_scale[:, None]
    tensors = {"W_dec": atoms, "b_dec": d.center}
    if d.encoder is not None:
        tensors["W_enc"] = d.encoder
        tensors["b_enc"] = d.encoder_bias
    meta = {
        "format": FORMAT,
        "k": str(d.k),
        "encoding": d.encoding,
        "method": d.method,
        "threshold": json.dumps(d.threshold),
        "info": json.dumps(d.info, sort_keys=True),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(path), metadata=meta)


def load(
    path: str | Path,
    *,
    channels: int | None = None,
    k: int | None = None,
    encoding: str | None = None,
    subtract_center: bool = True,
) -> Dictionary:
    """A dictionary from a safetensors file: ours (:func:`save`), saev's or SAELens' (``W_dec`` (K, C),
    ``W_enc`` (C, K), ``b_enc``, ``b_dec``), OpenAI's (``decoder.weight`` (C, K), ``encoder.weight``,
    ``latent_bias``, ``pre_bias``) or an Overcomplete state dict (``dictionary._weights``, or the
    archetypal ``dictionary.W``/``C``/``Relax``/``multiplier``; a ``encoder.final_block.0`` linear
    encoder, with its batch norm folded in when there is one).

    Only tensors are read (safetensors holds no code). ``channels`` checks C against the layer; ``k``
    (default: the file's, else 16) and ``encoding`` (default: ``"encoder"`` when the file has a
    linear encoder we can apply exactly, else ``"omp"``) set how samples are encoded. The centre is the
    decoder bias (zero when absent); the encoder is applied to ``x - b_dec`` as Anthropic's and
    OpenAI's recipes and older saev releases do; ``subtract_center=False`` applies it to ``x``
    itself, as saev's current ``encode`` does (Overcomplete's decoders have no bias). Raises
    :class:`DictionaryError` naming the keys found and those expected.
    """
    path = Path(path)
    if not path.exists():
        raise DictionaryError(f"dictionary file not found: {path} (concepts.load)")
    if path.suffix != ".safetensors":
        raise DictionaryError(f"{path}: a dictionary must be a .safetensors file (no pickles: they run code)")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            t = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no items())
    except (SafetensorError, OSError, ValueError) as err:
        raise DictionaryError(
            f"{path} is not a readable safetensors file ({err}); export the dictionary again"
        ) from err
    t = {key: np.asarray(v, np.float32) for key, v in t.items()}
    found = ", ".join(sorted(t)) or "none"

    def bad(msg: str) -> DictionaryError:
        return DictionaryError(f"{path}: {msg} (keys found: {found})")

    def need(key: str, shape: tuple) -> np.ndarray:
        v = t[key]
        ok = len(v.shape) == len(shape) and all(s is None or s == d for s, d in zip(shape, v.shape))
        if not ok:
            want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
            raise bad(f"{key} has shape {tuple(v.shape)}, expected {want}")
        return v

    encoder = bias = None
    center = None
    if "W_dec" in t:
        atoms = need("W_dec", (None, channels))
        n_atoms, c = atoms.shape
        center = need("b_dec", (c,)) if "b_dec" in t else None
        if "W_enc" in t:
            encoder = need("W_enc", (c, n_atoms))
            bias = need("b_enc", (n_atoms,)) if "b_enc" in t else None
    elif "decoder.weight" in t:
        atoms = need("decoder.weight", (channels, None)).T
        n_atoms, c = atoms.shape
        center = need("pre_bias", (c,)) if "pre_bias" in t else None
        if "encoder.weight" in t:
            encoder = need("encoder.weight", (n_atoms, c)).T
            bias = need("latent_bias", (n_atoms,)) if "latent_bias" in t else None
    elif "dictionary._weights" in t or "dictionary.W" in t:
        if "dictionary._weights" in t:
            atoms = need("dictionary._weights", (None, channels))
        else:
            missing = [key for key in ("dictionary.W", "dictionary.C", "dictionary.Relax") if key not in t]
            if missing:
                raise bad(
                    f"an archetypal dictionary needs dictionary.W, dictionary.C and dictionary.Relax; "
                    f"missing {', '.join(missing)}"
                )
            cand = need("dictionary.C", (None, channels))
            w = need("dictionary.W", (None, cand.shape[0]))
            # Overcomplete keeps W row-stochastic while training: the same projection, then the fused atoms
            w = np.maximum(w, 0)
            w = w / (w.sum(1, keepdims=True) + 1e-8)
            atoms = w @ cand + need("dictionary.Relax", (w.shape[0], cand.shape[1]))
            if "dictionary.multiplier" in t:
                atoms = atoms * float(np.exp(t["dictionary.multiplier"].reshape(-1)[0]))
        n_atoms, c = atoms.shape
        encoder, bias = _overcomplete_encoder(t, n_atoms, c, need)
    else:
        key = next((key for key in ("dictionary", "decoder", "atoms") if key in t), None)
        if key is None:
            raise bad(
                "no decoder found; expected W_dec (K, C) (saev, SAELens), decoder.weight (C, K) (OpenAI), "
                "dictionary._weights (K, C) or dictionary.W/C/Relax (Overcomplete), or dictionary (K, C)"
            )
        atoms = need(key, (None, channels))
        n_atoms, c = atoms.shape
    if n_atoms < 1 or c < 1:
        raise bad(f"the decoder is empty ({n_atoms} x {c})")
    norms = np.linalg.norm(atoms, axis=1)
    if not np.isfinite(atoms).all() or (norms <= 0).any():
        raise bad(
            f"the decoder has {int((norms <= 0).sum())} zero and {int((~np.isfinite(atoms)).sum())} "
            "non-finite entries; every atom must be a finite non-zero direction"
        )
    if encoder is not None and center is not None and not subtract_center:
        # pre = x @ W + b = (x - center) @ W + (b + center @ W): one encoding path for both conventions
        bias = (np.zeros(n_atoms, np.float32) if bias is None else bias) + center @ encoder
    unit = bool(np.allclose(norms, 1.0, rtol=0, atol=1e-5))
    if meta.get("format") == FORMAT:
        k = k or int(meta.get("k", 16))
        encoding = encoding or meta.get("encoding")
        threshold = json.loads(meta.get("threshold", "null"))
        method = meta.get("method", "loaded")
        info = json.loads(meta.get("info", "{}"))
    else:
        threshold, method, info = None, "loaded", {"source": str(path)}
    encoding = encoding or ("encoder" if encoder is not None else "omp")
    return Dictionary(
        atoms=atoms if unit else atoms / norms[:, None],
        center=np.zeros(c, np.float32) if center is None else center,
        k=min(k or 16, n_atoms),
        encoding=encoding,
        encoder=encoder,
        encoder_bias=bias,
        # codes along unit atoms: the encoder's outputs times its atom's norm (the reconstruction is the same)
        encoder_scale=None if encoder is None or unit else norms,
        threshold=None if threshold is None else float(threshold),
        method=method,
        info=info,
    )


def _overcomplete_encoder(t: dict, n_atoms: int, c: int, need) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Overcomplete's default encoder, Linear then BatchNorm1d (eval mode, folded in), as (C, K) and (K,).

    Any other encoder (more blocks, a LayerNorm, attention) cannot be applied as one linear map:
    then there is none, and samples are encoded by OMP on the atoms.
    """
    prefix = "encoder.final_block."
    if f"{prefix}0.weight" not in t or any(k.startswith("encoder.") and not k.startswith(prefix) for k in t):
        return None, None
    w = need(f"{prefix}0.weight", (n_atoms, c)).T.copy()
    b = need(f"{prefix}0.bias", (n_atoms,)).copy() if f"{prefix}0.bias" in t else np.zeros(n_atoms, np.float32)
    bn = [f"{prefix}1.{name}" for name in ("weight", "bias", "running_mean", "running_var")]
    if all(key in t for key in bn):
        gamma, beta, mean, var = (need(key, (n_atoms,)) for key in bn)
        scale = gamma / np.sqrt(var + 1e-5)
        w, b = w * scale[None, :], (b - mean) * scale + beta
    elif any(k.startswith(f"{prefix}1.") for k in t):
        return None, None  # a LayerNorm (per-sample statistics): not linear
    return w.astype(np.float32), b.astype(np.float32)
