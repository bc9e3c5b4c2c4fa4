# Shared names for every rule: the run directory, the command, shard lists, code digests.
import hashlib
import json
import sys
from pathlib import Path

from actlas.run import shards as write_shard_lists

RUN = config["run_dir"].rstrip("/")
CONDA_ENV = "../envs/gpu.yaml" if config.get("device") == "cuda" else "../envs/cpu.yaml"
LAYERS = config["layers"]
SIZES = config["grid"]["sizes"]

# The image set is listed once, by the main Snakemake process: shard lists whose content did
# not change keep their modification time, so adding images reruns only the shards they join.
if workflow.is_main_process:
    write_shard_lists(
        config["images"],
        RUN,
        config["model"],
        shard_size=config["collect"]["shard_size"],
        limit=config.get("limit"),
        seed=config.get("seed", 0),
    )
SHARDS = sorted(p.stem for p in Path(RUN, "shards").glob("shard-*.txt"))


wildcard_constraints:
    shard=r"shard-\d+",
    n=r"\d+",
    batch=r"\d+",
    layer=r"[^/]+",


def code(*parts):
    """Digest of the code a stage runs: whole actlas modules ("grid") or single functions ("run:grid").

    A params entry, so Snakemake reruns a stage when its code changes, and only then.
    """
    import importlib
    import inspect

    h = hashlib.sha256()
    for part in parts:
        name, _, function = part.partition(":")
        mod = importlib.import_module(f"actlas.{name}")
        h.update(inspect.getsource(getattr(mod, function) if function else mod).encode())
    return h.hexdigest()[:16]


def run_dir_of(depth):
    """A params function: the run directory, as the ``depth``-th parent of the rule's first output."""
    return lambda wildcards, output: str(Path(output[0]).parents[depth])


def as_json(d):
    return json.dumps(d, sort_keys=True)


def render_batches(wildcards):
    """Every render output of a grid, known once the grid checkpoint has run."""
    from actlas.run import n_render_batches

    cells = checkpoints.grid.get(layer=wildcards.layer, n=wildcards.n).output[0]
    count = n_render_batches(cells, config["render"]["cells_per_job"])
    return expand(
        f"{RUN}/{wildcards.layer}/grid-{wildcards.n}/icons/batch-{{batch}}.npz",
        batch=[f"{b:05d}" for b in range(count)],
    )


def atlas_outputs():
    """Every atlas.json of the run (one per layer and grid size)."""
    return expand(f"{RUN}/{{layer}}/grid-{{n}}/atlas.json", layer=LAYERS, n=SIZES)


# --- class atlases, comparisons and patch experiments (rules/classes.smk)
# Class atlases, two-class comparisons and patch experiments, one job per entry of the config
# lists class_atlases, comparisons and patches (items: config/schema.yaml). Folder names are slugs
# of the classes as written in the config: RUN/LAYER/class-<class>/, RUN/LAYER/compare-<a>-<b>/,
# RUN/patches/<source>-to-<target>/ (or the entry's name).
from actlas.patches import slug as class_slug


def _layer(entry):
    return entry.get("layer", LAYERS[0])


CLASS_ATLASES = {class_slug(str(e["class"])): e for e in config.get("class_atlases", [])}
COMPARISONS = {f"{class_slug(str(e['classes'][0]))}-{class_slug(str(e['classes'][1]))}": e
               for e in config.get("comparisons", [])}
PATCHES = {e.get("name") or f"{class_slug(str(e.get('source') or 'any'))}-to-{class_slug(str(e['target']))}": e
           for e in config.get("patches", [])}
# classes.py uses patches.py only for class_index and slug: a patch change never reruns class atlases
CLASS_CODE = code("classes", "patches:class_index", "patches:slug", "grid", "render", "atlas", "run:render",
                  "run:atlas", "run:load_samples")
PATCH_CODE = code("patches", "images", "run:shard_lists", "run:shard_stores", "store")


def _class_flags(e, grid_default, filter_default):
    return (f"--grid {e.get('grid', grid_default)} --filter {e.get('filter', filter_default)}"
            f" --top {e.get('top', 2000)} --method {e.get('method', 'tsne')} --min-count {e.get('min_count', 1)}"
            f" {RENDER_FLAGS}")  # RENDER_FLAGS (render.smk) ends with --seed: layout and render seed


def patch_inputs(wildcards):
    """A patch experiment needs the atlases whose icons it pastes (and the target's class atlas to discover)."""
    e = PATCHES[wildcards.name]
    layer = _layer(e)
    needs = [f"{RUN}/shards/{s}.txt" for s in SHARDS]
    if any(p.startswith("cell:") for p in e.get("patches", [])) or e.get("discover"):
        needs += atlas_outputs()
    target = class_slug(str(e["target"]))
    if e.get("discover") and target in CLASS_ATLASES:
        needs.append(f"{RUN}/{layer}/class-{target}/atlas.json")
    for p in e.get("patches", []):
        if p.startswith("cell:class-") or p.startswith("cell:compare-"):
            needs.append(f"{RUN}/{layer}/{p.split(':')[1]}/atlas.json")
    return needs


def _patch_flags(e):
    flags = [f"--target {json.dumps(str(e['target']))}", f"--layer {_layer(e)}"]
    if e.get("source"):
        flags.append(f"--source {json.dumps(str(e['source']))}")
    flags += [f"--patch {json.dumps(p)}" for p in e.get("patches", [])]
    if e.get("discover"):
        flags.append(f"--discover --candidates {e.get('candidates', 12)}")
    flags.append(f"--sizes {','.join(str(s) for s in e.get('sizes', [0.3, 0.45]))}")
    flags.append(f"--static {e.get('static', 'bottom-right')} --max-images {e.get('max_images', 96)}")
    return " ".join(flags)


def class_atlas_outputs():
    """Every class atlas and comparison atlas.json the config asks for (the viewer shows them too)."""
    out = [f"{RUN}/{_layer(e)}/class-{k}/atlas.json" for k, e in CLASS_ATLASES.items()]
    return out + [f"{RUN}/{_layer(e)}/compare-{k}/atlas.json" for k, e in COMPARISONS.items()]


def class_outputs():
    """Every class atlas, comparison and patch report the config asks for (targets of rule all)."""
    return class_atlas_outputs() + [f"{RUN}/patches/{k}/report.json" for k in PATCHES]
