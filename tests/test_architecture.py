"""docs/architecture.md stays in step with the rules; code digests follow imports."""

import importlib
import re

from actlas import digest
from conftest import ROOT


def _rules() -> dict[str, str]:
    """rule name -> the stage module its code digest names, from rules/*.smk."""
    out = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", text, re.M | re.S):
            found = re.search(r'code_digest\("([\w.]+)"\)', m[2])
            out[m[1]] = found[1] if found else None
    return out


def _table() -> dict[str, str]:
    out = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[1].startswith("`"):
            out[cells[1].split("`")[1]] = cells[2].strip("`")
    return out


def test_every_rule_is_in_the_architecture_table_with_its_module():
    rules, table = _rules(), _table()
    assert set(rules) - {"all"} == set(table), "docs/architecture.md lists other rules than rules/*.smk"
    for rule, module in table.items():
        if rules[rule] is not None:
            assert rules[rule] == module, f"rule {rule} digests {rules[rule]}, the table says {module}"
        mod = importlib.import_module(module)
        assert mod.__doc__, module


def test_every_stage_module_has_its_function():
    for module in set(_table().values()):
        name = module.rsplit(".", 1)[1]
        assert callable(getattr(importlib.import_module(module), name)), module


def test_digest_covers_the_imports_and_nothing_else():
    grid = digest.closure("actlas.stages.grid")
    assert "actlas.grid" in grid and "actlas.store" in grid and "actlas.stages.samples" in grid
    assert "actlas.render" not in grid and "actlas.serve" not in grid and "actlas.cli" not in grid
    viewer = digest.closure("actlas.stages.viewer")
    assert "actlas.serve" not in viewer, "editing the HTTP server must not rebuild viewers"
    assert "actlas.stages.render" in digest.closure("actlas.stages.render")
    # settings reach the rules as params (the filled config): a new option must not rerun collect
    assert all("actlas.settings" not in digest.closure(s) for s in set(_table().values()))


def test_digest_changes_with_the_code_it_covers(tmp_path, monkeypatch):
    """A one-line change in any module changes the digests of exactly the stages that import it."""
    import shutil

    copy = tmp_path / "actlas"
    shutil.copytree(digest.ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    stages = sorted(set(_table().values()))
    modules = sorted(
        "actlas." + ".".join(p.relative_to(copy).with_suffix("").parts)
        for p in copy.rglob("*.py")
        if p.name != "__init__.py"
    )

    def digests():
        digest.direct_imports.cache_clear()
        digest.code_digest.cache_clear()
        return {s: digest.code_digest(s) for s in stages}

    monkeypatch.setattr(digest, "ROOT", copy)
    try:
        before = digests()
        for module in modules:
            path = digest.module_file(module)
            text = path.read_text()
            path.write_text(text + "\n# a one-line change\n")
            after = digests()
            path.write_text(text)
            changed = {s for s in stages if before[s] != after[s]}
            assert changed == {s for s in stages if module in digest.closure(s)}, module
        assert "actlas.stages.viewer" not in {s for s in stages if "actlas.serve" in digest.closure(s)}
    finally:
        digest.direct_imports.cache_clear()
        digest.code_digest.cache_clear()
