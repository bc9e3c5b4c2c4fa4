"""A concept dictionary file (safetensors): :func:`save` and :func:`load` a :class:`~actlas.concepts.Dictionary`.

:func:`save` writes the keys saev and SAELens use (``W_dec`` (K, C), ``b_dec`` (C,), ``W_enc`` (C, K),
``b_enc`` (K,)) and the rest as string metadata; :func:`load` reads those, Overcomplete's state-dict
keys and OpenAI's, and never runs code from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..concepts.dictionary import FORMAT, Dictionary, DictionaryError
from .atomic import _partial


def save(d: Dictionary, path: str | Path) -> None:
    """Write ``d`` as safetensors: ``W_dec`` (K, C), ``b_dec`` (C,), and ``W_enc`` (C, K), ``b_enc`` (K,)
    when it has an encoder (saev's and SAELens' names), the rest as metadata (``info`` without its timings)."""
    from safetensors.numpy import save as to_bytes

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
        # timings stay out: the same dictionary must make the same file (concepts.json records the stage's seconds)
        "info": json.dumps({k: v for k, v in d.info.items() if not k.endswith("seconds")}, sort_keys=True),
    }
    blob = to_bytes({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, metadata=meta)
    tmp = _partial(Path(path))  # atomic: a reader sees the old file or the whole new one
    tmp.write_bytes(sorted_metadata(blob))
    os.replace(tmp, path)


def sorted_metadata(blob: bytes) -> bytes:
    """A safetensors file's bytes with its ``__metadata__`` in key order: safetensors writes it in hash order,
    which changes from one save to the next, so that the same dictionary would make different files."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned, as safetensors pads it
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


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
