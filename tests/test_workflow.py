"""The Snakemake workflow on a few real photos with the real MobileNetV2 (slow)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import small_config, snakemake

pytestmark = pytest.mark.slow


def _planned(out) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table."""
    counts, table = {}, False
    for line in out.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        if table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and not set(line.strip()) <= {"-", " "}:
                break
    return counts


def test_pipeline_outputs(small_run):
    for n in (3, 5):
        meta = json.loads((small_run / "features.13" / f"grid-{n}" / "atlas.json").read_text())
        png = Image.open(small_run / "features.13" / f"grid-{n}" / "atlas.png")
        assert png.size == (n * 48, n * 48)
        assert meta["grid"] == n and len(meta["cells"]) >= 2
        cell = meta["cells"][0]
        assert cell["label"] and cell["count"] >= 2 and -1 <= cell["faithfulness"] <= 1
        assert (small_run / "features.13" / f"grid-{n}" / cell["icon"]).exists()
        assert cell["examples"] and (small_run / "features.13" / f"grid-{n}" / cell["examples"][0]["src"]).exists()
        icons = np.stack([np.asarray(Image.open(small_run / "features.13" / f"grid-{n}" / c["icon"])) for c in meta["cells"]])
        assert icons.std() > 10  # not grey, not blank
    info = json.loads(snakemake_info(small_run))
    assert info["images"] == 24 and info["skipped"] == 0
    assert info["layers"]["features.13"]["grid_sizes"] == [3, 5]
    assert info["layers"]["features.13"]["samples"] == 24 * 6


def snakemake_info(run_dir) -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "actlas", "info", str(run_dir)], check=True, capture_output=True,
                          text=True).stdout


def test_rerun_plans_only_what_changed(small_run):
    work = small_run.parent
    assert _planned(snakemake(work, "-n")) == {}, "a finished run plans nothing"

    cfg = (work / "config.yaml").read_text()
    (work / "changed.yaml").write_text(cfg.replace("steps: 12", "steps: 13"))
    os.replace(work / "config.yaml", work / "orig.yaml")
    os.replace(work / "changed.yaml", work / "config.yaml")
    try:
        planned = _planned(snakemake(work, "-n"))
    finally:
        os.replace(work / "orig.yaml", work / "config.yaml")
    assert set(planned) <= {"render", "atlas", "manifest", "config_snapshot", "viewer", "all"}
    assert planned.get("render", 0) >= 2 and planned.get("atlas") == 2
    assert "collect" not in planned and "layout" not in planned and "grid" not in planned

    # Removing one image changes only the shard list it belongs to (shards are split by a stable
    # hash of each path): that shard's collect is planned, the other shards' are not.
    import yaml

    images = Path(yaml.safe_load((work / "config.yaml").read_text())["images"][0])
    photo = sorted(images.glob("*/*"))[0]
    target = photo.readlink()
    shards_before = {p.name: p.read_text() for p in (small_run / "shards").glob("shard-*.txt")}
    photo.unlink()
    try:
        planned = _planned(snakemake(work, "-n"))
        changed = [n for n, text in shards_before.items() if (small_run / "shards" / n).read_text() != text]
    finally:
        photo.symlink_to(target)
        snakemake(work, "-n")  # rewrites the shard list as it was; its checksum matches the recorded one
    assert len(changed) == 1 and len(shards_before) >= 2
    assert planned.get("collect") == 1
    assert {"layout", "grid"} <= set(planned)
    assert _planned(snakemake(work, "-n")) == {}, "restoring the image restores the plan"


def test_class_atlases_comparisons_and_patches_as_rules(small_run, tmp_path):
    """Config lists -> class_atlas, compare and patch jobs; the viewer lists the new maps; a change to a
    patch setting reruns only that experiment."""
    import shutil

    import yaml

    from actlas.models import load_model
    from actlas.patches import slug
    from actlas.run import load_samples
    from conftest import CARD

    work = tmp_path / "work"
    shutil.copytree(small_run.parent, work, symlinks=True)
    run = work / "run"
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["run_dir"] = str(run)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    # The copy has no Snakemake metadata, so only mtimes speak, and an earlier test may have rewritten
    # a shard list: --touch marks the copy's finished outputs up to date, in DAG order.
    snakemake(work, "--touch")
    _, spec = load_model(str(CARD))
    s = load_samples(run, "features.13", columns=("attr_class", "attr_value"))
    a, b = (spec.short_name(int(c)) for c in np.argsort(-np.bincount(s.attr_class[:, 0]))[:2])
    overlay = {
        "class_atlases": [{"class": a, "filter": "top", "grid": 3}],
        "comparisons": [{"classes": [a, b], "grid": 3}],
        "patches": [{"target": a, "discover": True, "candidates": 3, "sizes": [0.45], "max_images": 8}],
    }
    (work / "classes.yaml").write_text(yaml.safe_dump(overlay))
    both = ("--configfile", str(work / "config.yaml"), str(work / "classes.yaml"))
    planned = _planned(snakemake(work, "-n", *both))
    # exactly the new jobs and the viewer; the manifest (it records the config) may follow
    assert {k: v for k, v in planned.items() if k not in ("manifest", "all")} == {
        "class_atlas": 1, "compare": 1, "patch": 1, "viewer": 1}, planned
    snakemake(work, *both)
    slug_a = slug(a)
    meta = json.loads((run / "features.13" / f"class-{slug_a}" / "atlas.json").read_text())
    assert meta["kind"] == "class" and meta["class"] == a and meta["grid"] == 3 and meta["cells"]
    assert sum(c["count"] for c in meta["cells"]) == meta["samples"]
    report = json.loads((run / "patches" / f"any-to-{slug_a}" / "report.json").read_text())
    assert report["target"] == a and report["discovery"]["best"].startswith("cell:")
    data = json.loads((run / "viewer" / "data.json").read_text())
    assert {e["kind"] for e in data["extras"]} == {"class", "compare"}
    assert _planned(snakemake(work, "-n", *both)) == {}, "a finished run plans nothing"
    overlay["patches"][0]["max_images"] = 9
    (work / "classes.yaml").write_text(yaml.safe_dump(overlay))
    planned = _planned(snakemake(work, "-n", *both))
    assert {k: v for k, v in planned.items() if k not in ("manifest", "all")} == {"patch": 1}, planned
