"""docs/architecture.md stays in step with the code; code digests follow imports and are as fine as the work;
the core stays pure; ``actlas.paths`` is the one place a run file is named."""

import ast
import importlib
import re

from conftest import ROOT

from actlas import digest

SRC = ROOT / "src" / "actlas"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()

# The core: arrays (and tensors) in, arrays out. None of them reads or names a file.
CORE = (
    "actlas.collect",
    "actlas.layout",
    "actlas.grid",
    "actlas.probe",
    "actlas.classes",
    "actlas.atlas",
    "actlas.align.matching",
    "actlas.align.layout",
    "actlas.align.epoch",
    "actlas.align.measures",
    "actlas.concepts.dictionary",
    "actlas.concepts.stream",
    "actlas.concepts.sae",
    "actlas.concepts.train",
    "actlas.concepts.metrics",
    "actlas.concepts.summaries",
    "actlas.viz.param",
    "actlas.viz.transforms",
    "actlas.viz.objectives",
    "actlas.viz.render",
    "actlas.nn.layers",
    "actlas.nn.kinds",
    "actlas.nn.padding",
    "actlas.nn.fastpaths",
    "actlas.patches.experiment",
    "actlas.patches.stats",
    "actlas.patches.spec",
    "actlas.models.logits",
    "actlas.text",
)
IO_MODULES = ("json", "pathlib", "matplotlib", "os", "shutil", "tempfile")


def _modules() -> list[str]:
    """Every module of the package, as a dotted name."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out.append(".".join(("actlas", *parts[:-1])) if parts[-1] == "__init__" else ".".join(("actlas", *parts)))
    return out


def _rules() -> dict[str, str]:
    """rule name -> the stage module its code digest names, from rules/*.smk."""
    out = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", text, re.M | re.S):
            found = re.search(r'code_digest\("([\w.]+)"\)', m[2])
            out[m[1]] = found[1] if found else None
    return out


def _table(heading: str, columns: int) -> list[list[str]]:
    """The rows of the Markdown table under ``heading`` in docs/architecture.md (cells stripped)."""
    section = ARCHITECTURE.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == columns and cells[0] and not set(cells[0]) <= {"-", " "}:
            rows.append(cells)
    return rows[1:]  # without the header


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_every_rule_is_in_the_stage_table_with_its_module():
    rules = _rules()
    table = {_code(row[1])[0]: _code(row[2])[0] for row in _table("Stages", 6)}
    assert set(rules) - {"all"} == set(table), "docs/architecture.md lists other rules than rules/*.smk"
    for rule, module in table.items():
        if rules[rule] is not None:
            assert rules[rule] == module, f"rule {rule} digests {rules[rule]}, the table says {module}"
        mod = importlib.import_module(module)
        assert mod.__doc__, module
        name = module.rsplit(".", 1)[1]
        assert callable(getattr(mod, name)), module


def test_every_file_format_is_in_the_format_table_with_its_reader_and_writer():
    rows = [row for row in _table("File formats", 4) if _code(row[1])[0].startswith("actlas.formats.")]
    modules = {_code(row[1])[0] for row in rows}
    assert modules == {m for m in _modules() if m.startswith("actlas.formats.")}, "the format table and formats/"
    for row in rows:
        module = importlib.import_module(_code(row[1])[0])
        for name in _code(row[2]):
            assert callable(getattr(module, name.split("(")[0])), (row[1], name)


def test_every_module_is_in_the_map():
    """A newcomer finds every module from docs/architecture.md alone."""
    listed = set(re.findall(r"`(actlas(?:\.\w+)*)`", ARCHITECTURE))
    for module in _modules():
        if module.endswith("__main__"):
            continue
        assert module in listed, f"docs/architecture.md does not name {module}"


def test_digest_covers_the_imports_and_nothing_else():
    grid = digest.closure("actlas.stages.grid")
    assert "actlas.grid" in grid and "actlas.data.store" in grid and "actlas.data.samples" in grid
    assert "actlas.viz.render" not in grid and "actlas.serve" not in grid and "actlas.cli" not in grid
    viewer = digest.closure("actlas.stages.viewer")
    assert "actlas.serve" not in viewer, "editing the HTTP server must not rebuild viewers"
    assert "actlas.stages.render" in digest.closure("actlas.stages.render")
    # settings reach the rules as params (the filled config): a new option must not rerun collect
    assert all("actlas.settings" not in digest.closure(s) for s in set(_rules().values()) if s)


def test_render_digest_excludes_collect_the_store_and_the_image_decoders():
    """Icons are cached under render's digest: editing collection or decoding must serve every icon from the cache."""
    render = set(digest.closure("actlas.stages.render"))
    for module in (
        "actlas.collect",
        "actlas.stages.collect",
        "actlas.data.store",
        "actlas.data.decode",
        "actlas.data.images",
        "actlas.data.samples",
        "actlas.grid",
        "actlas.layout",
        "actlas.smk",
    ):
        assert module not in render, module


def test_core_modules_never_import_files_or_plots():
    for module in CORE:
        path = digest.module_file(module)
        tree = ast.parse(path.read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & set(IO_MODULES), f"{module} imports {imported & set(IO_MODULES)}"


# names of run files: spelled in actlas.paths and nowhere else in the package or the rules
RUN_FILE = re.compile(
    r"(manifest\.json|whiten\.npy|coords\.npy|cells\.npz|rows\.npy|layout\.json|atlas\.json|atlas\.png|"
    r"atlas-labelled\.png|compare\.png|report\.json|report\.md|index\.json|skipped\.tsv|data\.json|"
    r"\.actlas\.lock|\.actlas-seal\.json|batch-\d*|bars\.png|single-photo\.png)"
)


def _string_constants(tree: ast.AST) -> list[str]:
    """String constants of a module that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_paths_is_the_only_place_a_run_file_is_named():
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "paths.py" and path.parent == SRC:
            continue
        named = [s for s in _string_constants(ast.parse(path.read_text())) if RUN_FILE.search(s)]
        # messages may name a file for the reader (": run ... first"); code may not build a path from one
        named = [s for s in named if not re.search(r"\s", s)]
        assert not named, f"{path.relative_to(ROOT)} spells {named}: use actlas.paths"
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        code = "\n".join(line for line in smk.read_text().splitlines() if not line.lstrip().startswith("#"))
        quoted = [s for s in re.findall(r"\"([^\"\n]*)\"", code) if RUN_FILE.search(s) and not re.search(r"\s", s)]
        assert not quoted, f"{smk.name} spells {quoted}: use actlas.paths"


def test_no_module_is_much_over_400_lines():
    """Each module has one job; those over 400 lines say in docs/architecture.md why."""
    long = {m: len(digest.module_file(m).read_text().splitlines()) for m in _modules() if not m.endswith("__main__")}
    long = {m: n for m, n in long.items() if n > 420}
    explained = set(re.findall(r"`(actlas(?:\.\w+)+)` is over 400 lines", ARCHITECTURE))
    assert set(long) <= explained, f"modules over 400 lines without a reason in docs/architecture.md: {long}"


def test_digest_changes_with_the_code_it_covers(tmp_path, monkeypatch):
    """A one-line change in any module changes the digests of exactly the stages that import it."""
    import shutil

    copy = tmp_path / "actlas"
    shutil.copytree(digest.ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    stages = sorted({s for s in _rules().values() if s})
    modules = sorted(
        "actlas." + ".".join(p.relative_to(copy).with_suffix("").parts)
        for p in copy.rglob("*.py")
        if p.name != "__init__.py"
    )

    def digests():  # a comment changes no import: the parsed imports stay cached, the digests do not
        digest.code_digest.cache_clear()
        return {s: digest.code_digest(s) for s in stages}

    monkeypatch.setattr(digest, "ROOT", copy)
    digest.direct_imports.cache_clear()
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
