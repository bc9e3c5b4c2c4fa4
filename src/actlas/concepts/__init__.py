"""Concept dictionaries of a layer: learn or load K unit directions, encode samples sparsely, measure, summarise.

Pure functions over numpy/torch arrays and streams of activation chunks; no paths of a run.

- :mod:`.dictionary`: :class:`Dictionary` (atoms (K, C), centre, encoder, ``encode``), OMP, streams and
  the held-out split (its file, safetensors with saev, SAELens, OpenAI and Overcomplete keys, is
  :mod:`actlas.formats.dictionary`);
- :mod:`.train`: :func:`learn` (TopK, BatchTopK, archetypal, dictionary learning, NMF) from a stream,
  over :mod:`.stream` (first-pass figures, bounded float32 blocks) and :mod:`.sae` (the autoencoders);
- :mod:`.metrics`: explained variance, L0, dead atoms, seed stability (Hungarian matching), per atom too;
- :mod:`.summaries`: per concept (frequency, exemplars, classes, place on the atlas, exemplar purity) and per cell
  (its direction as a few concepts).
"""

from .dictionary import Chunks, Dictionary, DictionaryError, array_chunks, heldout_mask, split
from .metrics import atom_stability, evaluate, match_atoms, stability
from .summaries import (
    class_weights,
    decompose,
    encode_stream,
    exemplar_purity,
    frequency,
    placement,
    sparse_codes,
    top_rows,
)
from .train import METHODS, learn

__all__ = [
    "METHODS",
    "Chunks",
    "Dictionary",
    "DictionaryError",
    "array_chunks",
    "atom_stability",
    "class_weights",
    "decompose",
    "encode_stream",
    "evaluate",
    "exemplar_purity",
    "frequency",
    "heldout_mask",
    "learn",
    "match_atoms",
    "placement",
    "sparse_codes",
    "split",
    "stability",
    "top_rows",
]
