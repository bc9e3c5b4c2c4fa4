"""ImageNet-1k's label space: its 1,000 WordNet ids, and recognising a list of class names as ImageNet-1k's.

``imagenet1k_synsets.txt`` (package data) holds the 1,000 WordNet ids in the standard ImageNet-1k
class order, one a line: public ImageNet metadata, copied from timm's ``timm/data/_info/imagenet_synsets.txt``
(Apache-2.0; ``tests/test_models.py`` holds the two equal when timm is installed). A source whose class
names are ImageNet-1k's in that order (torchvision's weights, a Hugging Face ``id2label``, a card's
labels file) gets these synsets, so folders of ImageNet photos named by WordNet id are labelled.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

SYNSETS_FILE = Path(__file__).with_name("imagenet1k_synsets.txt")
WORDNET_ID = re.compile(r"^n\d{8}$")
MATCH = 0.98  # share of the 1,000 names that must match ImageNet-1k's (torchvision spells two differently)


@lru_cache(maxsize=1)
def imagenet1k_synsets() -> tuple[str, ...]:
    """The 1,000 WordNet ids of ImageNet-1k, in class order."""
    return tuple(line.strip() for line in SYNSETS_FILE.read_text().splitlines() if line.strip())


@lru_cache(maxsize=1)
def _imagenet1k_names() -> tuple[str, ...]:
    """ImageNet-1k's short class names in class order, as torchvision's weights metadata gives them."""
    import torchvision

    return tuple(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _first(name: str) -> str:
    return " ".join(str(name).split(",")[0].lower().replace("_", " ").split())


def is_imagenet1k(categories) -> bool:
    """Whether ``categories`` (class names in logit order) are ImageNet-1k's, in its order: 1,000 names whose
    first comma-separated name matches ImageNet-1k's (``"tench"``, ``"tench, Tinca tinca"``)."""
    if len(categories) != 1000:
        return False
    names = _imagenet1k_names()
    return sum(_first(a) == _first(b) for a, b in zip(categories, names)) >= MATCH * len(names)


def synsets_for(categories) -> tuple[str, ...]:
    """The WordNet ids of ``categories`` when they are ImageNet-1k's class names in order, else ()."""
    return imagenet1k_synsets() if is_imagenet1k(categories) else ()


def wordnet_folders(names) -> list[str]:
    """The names among ``names`` (folder names) that look like WordNet ids (``n01440764``)."""
    return [n for n in names if WORDNET_ID.match(str(n))]
