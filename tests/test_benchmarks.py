"""The benchmark scripts are not run by the suite (they take minutes to hours), so a module they import
from actlas can move away unseen: every ``from actlas... import name`` and ``import actlas...`` in
``benchmarks/*.py`` must resolve against the package as it is."""

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def _actlas_imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) for each import of actlas in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "actlas":
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.split(".")[0] == "actlas"]
    return found


def test_there_are_benchmarks_that_import_actlas():
    assert sum(len(_actlas_imports(p)) for p in BENCHMARKS) > 20


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_actlas_import_of_a_benchmark_resolves(path):
    missing = []
    for module, name, line in _actlas_imports(path):
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            missing.append(f"{path.name}:{line}: {module} ({err})")
            continue
        if name is not None and name != "*" and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{path.name}:{line}: {module}.{name}")
    assert not missing, missing
