"""Code digests: what a stage runs, computed from its imports rather than listed by hand.

``code_digest("actlas.stages.layout")`` hashes the source of that module and of every actlas
module it imports, transitively (imports inside functions included), plus the package data a
module declares in ``DATA_FILES``. A Snakemake rule carries it as a parameter, so the rule reruns
when, and only when, code it runs changes. Sources are parsed, never imported: the Snakefile
computes digests at parse time without loading torch.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "actlas"
ROOT = Path(__file__).resolve().parent

# Modules left out of every digest, and why. The defaults in ``actlas.settings`` fill the config,
# and every rule passes its settings from the filled config as options: a changed default changes
# the params of exactly the rules it reaches, while adding a patch option reruns no collect.
NOT_DIGESTED = {"actlas.settings": "its defaults reach every rule as params (the filled config)"}

# Files besides Python sources that a module reads at run time (the viewer's static pages).
DATA_FILES = {
    "actlas.stages.viewer": ("viewer/index.html", "viewer/viewer.js", "viewer/viewer.css"),
}


def module_file(module: str) -> Path:
    """The source file of an actlas module (``actlas.stages.grid`` -> ``.../stages/grid.py``)."""
    parts = module.split(".")[1:]
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    raise ModuleNotFoundError(f"no actlas module {module!r} (looked for {base}.py)")


def _is_package(module: str) -> bool:
    return module_file(module).name == "__init__.py"


def _resolve(module: str, level: int, name: str | None) -> str:
    """Absolute name of a relative import ``from ..name`` inside ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _exists(module: str) -> bool:
    try:
        module_file(module)
        return True
    except ModuleNotFoundError:
        return False


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The actlas modules ``module`` imports (anywhere in its source), with their parent packages.

    A package's lazy ``__getattr__`` is not followed: it runs only when an attribute is asked for.
    """
    tree = ast.parse(module_file(module).read_text(), filename=str(module_file(module)))
    lazy = {
        id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + ".") and _exists(name):
                found.add(name)
    parents = {".".join(m.split(".")[:i]) for m in found | {module} for i in range(1, m.count(".") + 1)}
    return frozenset((found | parents) - {module})


def closure(module: str) -> list[str]:
    """``module`` and every actlas module it imports, transitively, sorted (``NOT_DIGESTED`` left out)."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen and m not in NOT_DIGESTED:
            seen.add(m)
            todo.extend(direct_imports(m))
    return sorted(seen)


@cache
def code_digest(module: str) -> str:
    """Digest of the source of ``module``'s closure and its data files (16 hex digits)."""
    h = hashlib.sha256()
    for m in closure(module):
        h.update(m.encode() + b"\0" + module_file(m).read_bytes() + b"\0")
        for rel in DATA_FILES.get(m, ()):
            h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]
