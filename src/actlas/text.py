"""Text helpers shared by every module: one line for a message, "did you mean", folder-safe names.

Pure: standard library only.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# How close a word must be to a valid one to be suggested (difflib's ratio, 0 to 1).
CUTOFF = 0.6


def one_line(text: object, limit: int = 200) -> str:
    """``text`` as one line (runs of whitespace, tabs and newlines become one space), cut to ``limit``
    characters with ``...``."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_line(err: BaseException, limit: int = 160) -> str:
    """``TypeName: message`` of an exception, as one line of at most ``limit`` characters."""
    return one_line(f"{type(err).__name__}: {err}", limit)


def closest(word: str, choices: Iterable[str], n: int = 1) -> list[str]:
    """The ``n`` valid choices closest to ``word`` (at least ``CUTOFF`` alike), best first."""
    return difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=CUTOFF)


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> str:
    """``"; did you mean 'x'?"`` (or ``'x', 'y'`` for several) for the choices closest to ``word``; ``""``
    when none is close."""
    close = closest(word, choices, n)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def slug(text: str) -> str:
    """Folder-safe lower-case name: ``"great white shark"`` -> ``"great-white-shark"``."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"
