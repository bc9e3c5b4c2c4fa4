"""Aligned atlases as stages: the config's ``alignments`` planned at parse time (``actlas.alignments``), and the
align, align-grid, align-render and align-atlas stages on a tiny run of two tiny models (no shared assets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from actlas import alignments, settings
from actlas.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))

BLOCK = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "labels": [f"c{i}" for i in range(10)]}
NET = BLOCK | {"source": "tiny_models:tiny_net", "trust_code": True}
VIT = BLOCK | {"source": "tiny_models:tiny_vit", "trust_code": True}


def _config(items, **over) -> dict:
    return settings.fill({"model": NET, "images": ["x"], "layers": ["features.4"], "alignments": items, **over})


# --------------------------------------------------------------------------- the plan (parse time, pure)


def test_plan_names_maps_folders_and_other_models():
    items = [
        {"atlases": ["features.1", "features.4"]},
        {"atlases": ["features.4", {"layer": "blocks.1", "model": VIT}], "alignment": 0.3, "sizes": [4]},
        {"atlases": ["features.4", {"layer": "blocks.0", "model": VIT, "name": "vit"}], "name": "cnn-vit"},
        {"atlases": [{"layer": "features.1", "model": NET}, "features.4"], "name": "own"},  # the run's model again
    ]
    plan, models = alignments.plan(_config(items, grid={"sizes": [3, 5]}))
    assert [a.name for a in plan] == [
        "features-1-features-4",
        "features-4-blocks-1-tiny-models-tiny-vit",
        "cnn-vit",
        "own",
    ]
    assert [m.id for m in plan[1].maps] == ["features.4", "blocks.1@tiny-models-tiny-vit"]
    assert plan[0].sizes == (3, 5) and plan[1].sizes == (4,) and plan[1].alignment == 0.3
    assert plan[0].alignment == settings.Alignment.alignment == 0.1
    assert set(models) == {"tiny-models-tiny-vit", "vit"} and models["vit"] == VIT
    assert [m.model_name for m in plan[3].maps] == [None, None]  # the run's model is never collected twice
    assert alignments.layers_of(plan) == ["features.1", "features.4"]
    assert alignments.layers_of(plan, "vit") == ["blocks.0"]
    assert alignments.parse_map("blocks.1@vit") == ("blocks.1", "vit")
    assert alignments.parse_map("features.4") == ("features.4", None)
    assert alignments.model_name("config/models/cifar10_vit.json") == "cifar10-vit"


@pytest.mark.parametrize(
    "items, over, message",
    [
        ([{"atlases": ["features.4"]}], {}, "two or more atlases"),
        ([{"atlases": ["features.4", "features.4"]}], {}, "listed twice"),
        ([{"atlases": ["features.1", "features.4"], "alignment": -1}], {}, "at least 0"),
        ([{"atlases": ["features.1", "features.4"], "strength": 1}], {}, "unknown setting alignments.strength"),
        ([{"atlases": ["features.1", {"model": VIT}]}], {}, "a layer name or"),
        ([{"atlases": ["features.1", "features.4"]}] * 2, {}, "two items make aligned/features-1-features-4"),
        (
            [
                {"atlases": ["features.4", {"layer": "blocks.1", "model": VIT, "name": "m"}]},
                {"atlases": ["features.4", {"layer": "blocks.1", "model": NET | {"x": 1}, "name": "m"}]},
            ],
            {},
            "share the folder models/m",
        ),
        ([{"atlases": ["features.4", {"layer": "blocks.1", "model": VIT, "name": "models"}]}], {}, "not usable"),
        ([], {"layers": ["aligned"]}, "name of a run folder"),
    ],
)
def test_plan_refuses_what_cannot_be_built_in_one_line(items, over, message):
    with pytest.raises(ConfigError, match=message) as err:
        alignments.plan(_config(items, **over))
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- the stages on a tiny run


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory):
    """tests/_aligned_run.py: two alignments ("layers", "cnn-vit") of two tiny models over 16 generated photos."""
    from _aligned_run import make_aligned_run

    return make_aligned_run(tmp_path_factory.mktemp("aligned"))


@pytest.mark.slow  # the tiny run's layouts take ~20 s of CPU
def test_align_writes_coords_and_measures(aligned_run):
    from actlas import paths
    from actlas.formats.align import read_align_record, read_aligned_coords

    for name, maps in (("layers", ["features.1", "features.4"]), ("cnn-vit", ["features.4", "blocks.1@vit"])):
        coords = read_aligned_coords(paths.align_coords(aligned_run, name))
        assert coords.maps == maps
        for xy, photos in zip(coords.coords, coords.photos):
            assert xy.shape == (16, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
            assert xy.min() >= 0 and xy.max() <= 1 and np.array_equal(photos, np.arange(16))
        record = read_align_record(paths.align_json(aligned_run, name))
        (pair,) = record.pairs
        assert pair.maps == maps and pair.pairs == 16 and 0 <= pair.near <= 1 and 0 <= pair.near_chance <= 1
        # matched photos land closer together than shuffled ones (the aligned layout's pull)
        assert pair.matched < pair.shuffled and pair.ratio < 0.8, pair
        assert [t.map for t in record.trust] == maps and all(0 < t.aligned <= 1 for t in record.trust)
        assert [m.photos for m in record.maps] == [16, 16]
    assert record.maps[1].model == "vit" and record.maps[1].channels == 16


@pytest.mark.slow  # the tiny run's layouts take ~20 s of CPU
def test_aligned_atlases_carry_measures_and_partners(aligned_run):
    from actlas import paths
    from actlas.formats.atlas import read_atlas

    for map_id, other in (("features.4", "blocks.1@vit"), ("blocks.1@vit", "features.4")):
        folder = paths.aligned_grid_dir(aligned_run, "cnn-vit", map_id, 3)
        meta = read_atlas(paths.atlas_json(folder))
        assert meta.kind == "aligned" and meta.aligned.map == map_id
        assert meta.aligned.maps == ["features.4", "blocks.1@vit"] and meta.aligned.name == "cnn-vit"
        assert meta.layer == map_id.split("@")[0] and meta.grid == 3
        (pair,) = meta.aligned.pairs
        assert pair.maps == [map_id, other] and pair.grid == 3
        assert sum(c.count for c in meta.cells) == 16  # one point a photo
        for cell in meta.cells:
            assert set(cell.partners) == {other}
            assert sum(p[2] for p in cell.partners[other]) == cell.count  # every photo lands somewhere there
            assert 0 <= cell.near[other] <= 1
            assert (folder / cell.icon).exists() and len(cell.examples) == 1
        assert (folder / "atlas.png").exists() and meta.faithfulness_median is not None
        raw = json.loads(paths.atlas_json(folder).read_text())
        assert raw["aligned"]["model"] == ("vit" if "@" in map_id else None)
        if "@" in map_id:  # tiny_vit's last block: its positions never reach the logits (attribution all 0)
            assert meta.label_agreement is None  # labelled by its photos, not by class 0 (all-zero attribution)
        else:
            assert meta.label_agreement is not None


@pytest.mark.slow  # the tiny run's layouts take ~20 s of CPU
def test_manifest_and_info_report_each_alignment(aligned_run):
    from actlas.stages.manifest import info

    got = info(aligned_run)["alignments"]
    assert set(got) == {"layers", "cnn-vit"}
    vit = got["cnn-vit"]
    assert vit["maps"] == ["features.4", "blocks.1@vit"] and vit["photos"] == [16, 16]
    (pair,) = vit["pairs"]
    assert pair["ratio"] < 1 and pair["near"] >= 0 and pair["unaligned_ratio"] is not None
    assert set(vit["trustworthiness"]) == {"features.4", "blocks.1@vit"}
    assert set(vit["faithfulness_median"]["blocks.1@vit"]) == {"3"}
    assert vit["atlases"]["blocks.1@vit"]["3"].endswith("atlas.png")


@pytest.mark.slow  # the tiny run's layouts take ~20 s of CPU
def test_align_command_mirrors_the_stage(aligned_run, tmp_path):
    import shutil

    from click.testing import CliRunner

    from actlas import paths
    from actlas.cli import main
    from actlas.formats.align import read_aligned_coords

    run = tmp_path / "run"
    shutil.copytree(aligned_run, run, ignore=shutil.ignore_patterns("aligned"))
    out = CliRunner().invoke(
        main, ["align", str(run), "--name", "x", "--map", "features.1", "--map", "blocks.1@vit", "--n-neighbors", "5"]
    )
    assert out.exit_code == 0, out.output
    assert read_aligned_coords(paths.align_coords(run, "x")).maps == ["features.1", "blocks.1@vit"]
    out = CliRunner().invoke(main, ["align", str(run), "--name", "y", "--map", "features.1", "--map", "nope@vit"])
    assert out.exit_code != 0 and "nope" in out.output and "Traceback" not in out.output


def _realign(run: Path, name: str, maps: list[str], alignment: float) -> None:
    """What the workflow reruns when alignment ``name``'s settings change: align, then each map's grid, icons
    and atlas (tests/_aligned_run.py's settings), then the manifest of the changed config."""
    from _aligned_run import CONFIG_ITEMS, NET, VIT

    from actlas.settings import RenderParams
    from actlas.stages.align import align
    from actlas.stages.align_atlas import align_atlas
    from actlas.stages.align_grid import align_grid
    from actlas.stages.align_render import align_render
    from actlas.stages.manifest import manifest

    params = RenderParams(size=16, min_positions=0, steps=2, batch_size=16, pad=2, jitter=1)
    align(run, name, maps, alignment=alignment, n_neighbors=5, seed=0)
    for map_id in maps:
        model = VIT if "@" in map_id else NET
        align_grid(run, name, map_id, 3, min_count=1)
        align_render(run, name, map_id, 3, model, cells_per_job=0, params=params, device="cpu", progress=False)
        align_atlas(run, name, map_id, 3, model, cells_per_job=0, n_examples=1)
    vit = dict(CONFIG_ITEMS[1]["atlases"][1])
    items = [{"atlases": [m if "@" not in m else vit for m in maps], "name": name, "alignment": alignment}]
    items += [i for i in CONFIG_ITEMS if i["name"] != name]
    config = settings.fill(
        {"model": NET, "images": ["x"], "layers": ["features.4"], "grid": {"sizes": [3]}, "alignments": items}
    )
    config["render"]["cells_per_job"] = 0
    manifest(run, config)


def _aligned_bytes(run: Path) -> dict[str, object]:
    """Every file under RUN/aligned/ and the manifest, as a user or the viewer reads them: bytes, but the
    seconds a stage took (``*seconds``), how many icons it rendered rather than took from the cache
    (``*rendered``) and when the manifest was written (``created``) left out."""

    def drop(x):
        if isinstance(x, dict):
            return {k: drop(v) for k, v in x.items() if not k.endswith(("seconds", "rendered", "created"))}
        return [drop(v) for v in x] if isinstance(x, list) else x

    out: dict[str, object] = {}
    for path in sorted([*(run / "aligned").rglob("*"), run / "manifest.json"]):
        key = str(path.relative_to(run))
        if not path.is_file():
            continue
        if path.suffix == ".json":
            out[key] = drop(json.loads(path.read_text().replace(str(run), "RUN")))  # paths name the run
        elif path.suffix == ".npz":
            with np.load(path) as z:
                out[key] = {k: z[k].tobytes() for k in z.files if k not in ("seconds", "rendered")}
        else:
            out[key] = path.read_bytes()
    return out


@pytest.mark.slow  # the tiny run (~30 s), then one alignment redone twice (~10 s, contended)
@pytest.mark.parametrize(
    "maps, alignment",
    [(["features.1", "features.4"], 0.6), (["features.1", "features.4", "blocks.1@vit"], 0.1)],
    ids=["strength", "a map added"],
)
def test_a_changed_alignment_redone_equals_it_done_from_scratch(aligned_run, tmp_path, maps, alignment):
    """Alignment "layers" changed (its strength, or a third map): redone over the finished run, with its old
    coords, cells, icons, examples and icon cache in place, it equals the same alignment built where it never
    was (no aligned/layers, no icon cache), file for file and byte for byte; the other alignment is untouched."""
    import shutil

    from actlas import paths

    inc, fresh = tmp_path / "inc", tmp_path / "fresh"
    shutil.copytree(aligned_run, inc)
    shutil.copytree(aligned_run, fresh)
    before = _aligned_bytes(inc)
    for gone in (paths.aligned_dir(fresh, "layers"), fresh / "cache", fresh / "models" / "vit" / "cache"):
        shutil.rmtree(gone)
    (fresh / "manifest.json").unlink()
    _realign(inc, "layers", maps, alignment)
    _realign(fresh, "layers", maps, alignment)
    got, want = _aligned_bytes(inc), _aligned_bytes(fresh)
    assert got.keys() == want.keys(), sorted(got.keys() ^ want.keys())
    assert [k for k in got if got[k] != want[k]] == []
    changed = {k for k in got if got[k] != before.get(k)}
    assert "aligned/layers/coords.npz" in changed and "manifest.json" in changed
    assert not any(k.startswith("aligned/cnn-vit/") for k in changed), sorted(changed)


@pytest.mark.slow  # the tiny run's layouts take ~20 s of CPU
def test_aligned_icons_are_optimised_on_their_mean_over_positions(aligned_run):
    """An aligned cell is a mean of photo means: its icon is rendered on its own mean over positions
    (actlas.stages.align_render.POOL), recorded in the batch's params; a main atlas's at its centre."""
    from actlas import paths
    from actlas.formats.batches import read_batch

    for name, map_id in (("layers", "features.4"), ("cnn-vit", "blocks.1@vit")):
        batch = read_batch(paths.render_batch(paths.aligned_grid_dir(aligned_run, name, map_id, 3), 0))
        assert batch.params["pool"] == "mean", (name, map_id)
    assert "pool" not in read_batch(paths.render_batch(paths.grid_dir(aligned_run, "features.4", 3), 0)).params
