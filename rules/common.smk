# Shared names for every rule: the run directory, the plan of shards, settings, code digests.
# Parse time reads the config and lists the images; it writes nothing and loads no model.
import json
import re
import sys
import time
from pathlib import Path

from actlas import alignments as alignment_plan
from actlas import paths, settings
from actlas.digest import code_digest
from actlas.formats import shards as shard_files
from actlas.formats.cells import read_directions
from actlas.models import heads
from actlas.models.sources import check_model, model_files
from actlas.patches.spec import default_name, default_search, parse_patch, with_grid
from actlas.smk import check_run_dir, cli_args, model_arg, or_exit
from actlas.stages import shards as shards_stage
from actlas.text import slug

config.update(settings.fill(config))
# An encoder's head (docs/models.md): a probe or none without class names takes the photo folders' names;
# the head is checked as far as data tells (text embeddings: file, shape, class count) before any job runs.
config["model"] = or_exit(heads.with_folder_labels, config["model"], config["images"])
HEAD = or_exit(heads.check_workflow, config)
RUN = or_exit(check_run_dir, config["run_dir"], workflow.basedir)
PROBE = [paths.probe_npz(RUN), paths.probe_json(RUN)] if HEAD.kind == "probe" else []  # what collect and patch read
LAYERS = list(config["layers"])
SIZES = list(config["grid"]["sizes"])
SEED = config["seed"]
DEVICE = config["device"]
MODEL = model_arg(config["model"])
MODEL_FILES = model_files(config["model"])  # inputs of every rule that loads the model
or_exit(check_model, config["model"])  # no weights, a bad weights name, an unknown built-in: one line before any job
CONDA_ENV = "../envs/gpu.yaml" if DEVICE == "cuda" else "../envs/cpu.yaml"
RENDER = settings.from_mapping(settings.Render, config["render"])

# The shards of the image set, planned from a listing (read only): {shard name: rows}.
PLAN = or_exit(shards_stage.plan, config["images"], config["model"], shard_size=config["collect"]["shard_size"],
               limit=config["limit"], seed=SEED)
SHARDS = list(PLAN.shards)

# Folders the workflow writes whole (directory() outputs) that lost a file since the last finished run
# (actlas.repair): Snakemake sees the folder, not its files. A real run removes them before the DAG is
# built (under the run's lock), so their rules rebuild them whole; a dry run writes nothing: it names them,
# and `whole` below plans their rules.
from actlas import repair as _repair

INCOMPLETE = _repair.incomplete_folders(RUN) if workflow.is_main_process else {}
# Snakemake tells the Snakefile only of -n; these modes also run no job (nothing would rebuild a removed
# folder), so they are told of the folders too, and remove nothing.
_RUNS_NO_JOB = {"--touch", "-t", "--lint", "--dag", "--d3dag", "--rulegraph", "--filegraph", "--summary", "-S",
                "--detailed-summary", "-D", "--list-rules", "--list", "-l", "--list-target-rules", "--lt",
                "--list-changes", "--lc", "--list-input-changes", "--li", "--list-params-changes", "--lp",
                "--list-code-changes", "--unlock", "--cleanup-metadata", "--cm", "--delete-all-output",
                "--delete-temp-output", "--report", "--archive", "--containerize", "--print-compilation",
                "--conda-create-envs-only", "--generate-unit-tests"}
if INCOMPLETE:
    if getattr(workflow.output_settings, "dryrun", False) or _RUNS_NO_JOB & set(sys.argv[1:]):
        for _folder, _lost in INCOMPLETE.items():
            print(f"actlas: {_repair.describe(_folder, _lost)}", file=sys.stderr)
    else:
        from actlas import lock as _lock

        try:
            _lock.check(RUN)  # another workflow on this run: leave its folders alone (onstart refuses this one)
        except _lock.LockError:
            INCOMPLETE = {}
        for _folder in _repair.remove(INCOMPLETE):
            print(f"actlas: removed {_folder}, which lost {INCOMPLETE[_folder]}: this run rebuilds it", file=sys.stderr)
        INCOMPLETE = {}


def whole(*folders):
    """An input function for the directory() outputs ``folders`` of a rule. In a dry run, a folder
    that lost a file takes the run's seal (written after every output of the run) as an input, so the
    plan shows the job that rebuilds it; otherwise nothing (a real run has removed that folder already,
    and records no input that later runs would miss)."""
    from snakemake.io import apply_wildcards

    def check(wildcards):
        lost = [f for f in (Path(apply_wildcards(str(p), wildcards)) for p in folders) if f in INCOMPLETE]
        return [str(paths.seal(RUN))] if lost else []

    return check


wildcard_constraints:
    shard=r"shard-\d+",
    n=r"\d+",
    batch=r"\d+",
    layer=r"[^/]+",
    name=r"[a-z0-9-]+",


def run_of(depth):
    """A params function: the run directory, the ``depth``-th parent of the rule's first output."""
    return lambda wildcards, output: str(Path(output[0]).parents[depth])


def run_inputs():
    """What every stage reading samples needs: the plan's index, shard lists and stores."""
    return {
        "index": paths.shard_index(RUN),
        "lists": [paths.shard_list(RUN, s) for s in SHARDS],
        "stores": [paths.shard_store(RUN, s) for s in SHARDS],
    }


def render_args():
    """The render settings of the config as stage options (the icon depends on exactly these)."""
    return cli_args(**{k: v for k, v in settings.as_config(RENDER.params()).items() if k != "seed"}, seed=SEED)


def grid_batches(layer, n):
    """Every render batch of a grid, known once the grid checkpoint has run."""
    cells = checkpoints.grid.get(layer=layer, n=n).output[0]
    count = paths.n_batches(len(read_directions(cells)), RENDER.cells_per_job)
    return [paths.render_batch(paths.grid_dir(RUN, layer, n), b) for b in range(count)]


def atlas_outputs():
    """Every atlas.json of the run (one per layer and grid size)."""
    return [paths.atlas_json(paths.grid_dir(RUN, layer, n)) for layer in LAYERS for n in SIZES]


def run_lock(action):
    """One writer per run directory: the lock is taken when a real run starts and given back when it
    ends; a finished run is sealed (``actlas verify`` compares its files with the seal)."""
    if workflow.dryrun or not workflow.is_main_process:
        return
    from actlas import lock, verify

    if action == "acquire":
        try:
            note = lock.acquire(RUN, owner=f"{workflow.basedir} (snakemake)")
        except lock.LockError as err:
            sys.exit(f"Error: {err}")
        if note:
            print(note, file=sys.stderr)
        lock.mark_holder(RUN)  # the jobs this workflow starts work under its lock (lock.for_command)
    elif action == "seal":
        verify.seal(RUN)
    else:
        lock.release(RUN)


STARTED = []  # when this workflow started (onstart): job logs written since then belong to it


def report_job_errors(since):
    """Print the one-line error of each job that failed since ``since`` (its log names the cause and
    the fix; Snakemake's console shows only the log's path)."""
    if workflow.dryrun or not workflow.is_main_process:
        return
    from actlas.joblogs import job_errors

    for line in job_errors(RUN, since):
        print(f"actlas: {line}", file=sys.stderr)


# --- class atlases, comparisons, patch experiments, viewer, manifest (rules/classes.smk, viewer.smk, atlas.smk)

def manifest_inputs(wildcards):
    """Everything the manifest reads: layouts, atlases and the render batches of the plan."""
    out = [paths.shard_index(RUN)] + [paths.shard_store(RUN, s) for s in SHARDS] + atlas_outputs() + PROBE
    out += [paths.layout_info(RUN, layer) for layer in LAYERS]
    out += [paths.align_json(RUN, a.name) for a in ALIGNMENTS] + aligned_atlas_outputs()
    out += [b for a in ALIGNMENTS for m in a.maps for n in a.sizes for b in aligned_batches(a.name, m.id, n)]
    return out + [b for layer in LAYERS for n in SIZES for b in grid_batches(layer, n)]

def intermediates(wildcards):
    """Every intermediate artifact of the plan (targets of rule all, so a deleted one is rebuilt)."""
    out = [paths.shard_index(RUN)] + PROBE
    out += [f for s in SHARDS for f in (paths.shard_list(RUN, s), paths.shard_store(RUN, s))]
    # Snakemake reruns a job for a missing output only when something asks for that file: ask for each one
    out += [paths.shard_skipped(RUN)] + [paths.store_skipped(paths.shard_store(RUN, s)) for s in SHARDS]
    out += atlas_outputs()
    out += [paths.whiten(RUN, layer) for layer in COLLECTED]
    for layer in LAYERS:
        out += [paths.coords(RUN, layer), paths.layout_info(RUN, layer)]
        for n in SIZES:
            gdir = paths.grid_dir(RUN, layer, n)
            out += [paths.cells(gdir), *grid_batches(layer, n), paths.icons_dir(gdir), paths.examples_dir(gdir),
                    paths.atlas_png(gdir), paths.atlas_labelled(gdir)]
    return out + class_intermediates()

def _layer(entry):
    return entry["layer"] or LAYERS[0]

# The alignments (rules/align.smk) and the other models they name ({folder name: model}).
ALIGNMENTS, OTHER_MODELS = alignment_plan.plan(config)

# Every layer collected (and whitened): the main atlases' layers, laid out, then any other layer a class
# atlas, comparison or patch experiment names (the article built its class atlases at a late layer), and
# the run's own layers an alignment names.
COLLECTED = list(dict.fromkeys(LAYERS + [_layer(e) for k in ("class_atlases", "comparisons", "patches")
                                          for e in config[k]] + alignment_plan.layers_of(ALIGNMENTS)))

# Every layer a job will read, checked on the architecture built without weights on the meta device (no download,
# no user code; cached per user): unknown, never run, run twice, or not reaching the logits: one line before any job.
from actlas.models.meta import check_layers

or_exit(check_layers, config["model"], COLLECTED)
for _name, _model in OTHER_MODELS.items():
    or_exit(check_layers, _model, alignment_plan.layers_of(ALIGNMENTS, _name))

def _by_layer(kind, entries, name):
    """{(layer, folder name): entry}; the same folder asked for twice is an error."""
    out = {}
    for e in entries:
        key = (_layer(e), name(e))
        if key in out:
            raise ValueError(f"{kind}: two items make {key[0]}/{key[1]}; drop one, or give one another layer")
        out[key] = e
    return out

CLASS_ATLASES = _by_layer("class_atlases", config["class_atlases"], lambda e: slug(e["class"]))

COMPARISONS = _by_layer("comparisons", config["comparisons"],
                        lambda e: f"{slug(e['classes'][0])}-{slug(e['classes'][1])}")

PATCHES = {e["name"] or default_name(e["source"], e["target"]): e for e in config["patches"]}

CLASS_FILES = [*paths.CLASS_FILES, *paths.ATLAS_FILES]

def class_folder(kind, key):
    layer, name = key
    return (paths.class_dir if kind == "class" else paths.compare_dir)(RUN, layer, name)

def class_args(entry, *, drop):
    options = {k: v for k, v in entry.items() if k not in drop}
    return f"{cli_args(model=MODEL, layer=_layer(entry), device=DEVICE, **options)} {render_args()}"

def _class_rule_outputs(kind):
    base = class_folder(kind, ("{layer}", "{name}"))
    out = {re.sub(r"\W", "_", f): base / f for f in CLASS_FILES}
    return {**out, "icons": directory(paths.icons_dir(base)), "examples": directory(paths.examples_dir(base))}

def _class_rule_folders(kind):
    """The folders of a class rule that the workflow writes whole (for ``whole``)."""
    base = class_folder(kind, ("{layer}", "{name}"))
    return paths.icons_dir(base), paths.examples_dir(base)

def _patch_specs(e):
    """The entry's patches, ``cell:I,J`` resolved to the largest main grid of its layer."""
    return [with_grid(p, max(SIZES)) for p in e["patches"]]

def _patch_folders(e):
    """Atlas folders (under RUN/LAYER) a patch experiment reads: those its patches name, and for
    discovery those of its ``search`` (default: ``actlas.patches.spec.default_search``)."""
    layer = _layer(e)
    named = [s.folder for s in map(parse_patch, _patch_specs(e)) if s.kind in ("cell", "example")]
    search = list(e["search"]) if e["discover"] else []
    if e["discover"] and not search:
        classes = [f"class-{name}" for at, name in CLASS_ATLASES if at == layer]
        search = default_search(e["target"], classes, [f"grid-{n}" for n in SIZES],
                                [f"compare-{name}" for at, name in COMPARISONS if at == layer])
    return list(dict.fromkeys(named + search)), search

def patch_inputs(wildcards):
    """Photos (the plan's lists and stores), the atlases whose icons it pastes or searches, patch images
    and directions."""
    e = PATCHES[wildcards.name]
    inputs = run_inputs()
    needs = [inputs["index"], *inputs["lists"], *inputs["stores"], *MODEL_FILES]
    folders, _ = _patch_folders(e)
    specs = [parse_patch(p) for p in e["patches"]]
    for folder in folders:
        base = paths.layer_dir(RUN, _layer(e)) / folder
        examples = e["crops"] or any(s.kind == "example" and s.folder == folder for s in specs)
        needs += [paths.atlas_json(base), paths.icons_dir(base)] + ([paths.examples_dir(base)] if examples else [])
    needs += [s.path for s in specs if s.kind in ("image", "direction")]
    return needs + list(e["evaluate"]) + ([e["photo"]] if e["photo"] else []) + PROBE

def patch_args(e):
    _, search = _patch_folders(e)
    options = {k: v for k, v in e.items() if k not in ("target", "layer", "patches", "name", "search")}
    return cli_args(model=MODEL, layer=_layer(e), patch=_patch_specs(e), search=search, seed=SEED, device=DEVICE,
                    **options)

def class_atlas_outputs():
    """Every class atlas and comparison atlas.json the config asks for (the viewer shows them too)."""
    out = [paths.atlas_json(class_folder("class", k)) for k in CLASS_ATLASES]
    return out + [paths.atlas_json(class_folder("compare", k)) for k in COMPARISONS]

def patch_outputs():
    """Every patch experiment's folder the config asks for."""
    return [paths.patch_dir(RUN, k) for k in PATCHES]

def class_outputs():
    """Every class atlas, comparison and patch experiment the config asks for (targets of rule all)."""
    return class_atlas_outputs() + patch_outputs()

def class_intermediates():
    """Every file the class atlases and comparisons write (targets of rule all)."""
    out = []
    for kind, names in (("class", CLASS_ATLASES), ("compare", COMPARISONS)):
        for k in names:
            folder = class_folder(kind, k)
            out += [folder / f for f in CLASS_FILES] + [paths.icons_dir(folder), paths.examples_dir(folder)]
            if kind == "compare":
                out.append(paths.compare_png(folder))
    return out

def viewer_inputs(wildcards):
    """Each atlas the viewer shows: its atlas.json and PNG, and the icons and examples it links."""
    out = []
    for meta in atlas_outputs() + class_atlas_outputs() + aligned_atlas_outputs():
        out += [meta, paths.atlas_png(meta.parent), paths.icons_dir(meta.parent), paths.examples_dir(meta.parent)]
    return out + patch_outputs() + concept_viewer_inputs()


# --- aligned atlases (rules/align.smk; ALIGNMENTS and OTHER_MODELS above)

ALIGN = {a.name: a for a in ALIGNMENTS}


def _aligned_map(name, map_id):
    return {m.id: m for m in ALIGN[name].maps}[map_id]


def _model_stores(model_name):
    return [paths.shard_store(paths.model_root(RUN, model_name), s) for s in SHARDS]


def _map_inputs(m):
    """What a stage reading a map's photos needs: the plan's index and lists, and its model's stores."""
    return [paths.shard_index(RUN), *[paths.shard_list(RUN, s) for s in SHARDS], *_model_stores(m.model_name)]


def _map_model_files(m):
    return MODEL_FILES if m.model_name is None else model_files(m.model)


def _align_render_args(m):
    return f"{cli_args(model=model_arg(m.model), cells_per_job=RENDER.cells_per_job, device=DEVICE)} {render_args()}"


def aligned_batches(name, map_id, n):
    """Every render batch of an aligned map's grid, known once its grid checkpoint has run."""
    cells = checkpoints.align_grid.get(name=name, map=map_id, n=n).output[0]
    count = paths.n_batches(len(read_directions(cells)), RENDER.cells_per_job)
    return [paths.render_batch(paths.aligned_grid_dir(RUN, name, map_id, n), b) for b in range(count)]


def aligned_atlas_outputs():
    """Every aligned atlas.json of the run (one per alignment, map and grid size)."""
    return [paths.atlas_json(paths.aligned_grid_dir(RUN, a.name, m.id, n)) for a in ALIGNMENTS for m in a.maps
            for n in a.sizes]


def aligned_intermediates(wildcards):
    """Every file of the alignments (targets of rule all, so a deleted one is rebuilt)."""
    out = [f for name in OTHER_MODELS for f in _model_stores(name)]
    out += [paths.whiten(paths.model_dir(RUN, m.model_name), m.layer) for a in ALIGNMENTS for m in a.maps
            if m.model_name is not None]
    for a in ALIGNMENTS:
        out += [paths.align_json(RUN, a.name), paths.align_coords(RUN, a.name)]
        for m in a.maps:
            for n in a.sizes:
                gdir = paths.aligned_grid_dir(RUN, a.name, m.id, n)
                out += [paths.cells(gdir), *aligned_batches(a.name, m.id, n), paths.icons_dir(gdir),
                        paths.examples_dir(gdir), paths.atlas_png(gdir), paths.atlas_labelled(gdir), paths.atlas_json(gdir)]
    return out



# --- concepts (rules/concepts.smk): one dictionary per layer of layers

def _concepts_by_layer():
    out = {}
    for e in config["concepts"]:
        layer = _layer(e)
        if layer not in LAYERS:
            raise ValueError(f"concepts: layer {layer!r} is not laid out; add it to layers (layers: {LAYERS})")
        if layer in out:
            raise ValueError(f"concepts: two items name layer {layer!r}; keep one dictionary per layer")
        out[layer] = e
    return out

CONCEPTS = _concepts_by_layer()

def concept_files(layer):
    """Every file the concepts stage writes for ``layer`` (concepts.json last)."""
    folder = paths.concepts_dir(RUN, layer)
    return [folder / f for f in paths.CONCEPT_FILES]

def concept_outputs():
    """Every concepts.json the config asks for (the viewer and the manifest read them)."""
    return [paths.concepts_json(paths.concepts_dir(RUN, layer)) for layer in CONCEPTS]

def concept_intermediates():
    """Every file and folder the concepts stage writes (targets of rule all)."""
    out = []
    for layer in CONCEPTS:
        folder = paths.concepts_dir(RUN, layer)
        out += concept_files(layer) + [paths.icons_dir(folder), paths.examples_dir(folder)]
    return out

def concept_viewer_inputs():
    """What the viewer reads of the concepts: each concepts.json and the icons and exemplars it links."""
    out = []
    for layer in CONCEPTS:
        folder = paths.concepts_dir(RUN, layer)
        out += [paths.concepts_json(folder), paths.icons_dir(folder), paths.examples_dir(folder)]
    return out

def concept_args(entry):
    options = {k: v for k, v in entry.items() if k not in ("layer", "seed", "size")}
    seed = SEED if entry["seed"] is None else entry["seed"]
    args = cli_args(model=MODEL, layer=_layer(entry), device=DEVICE, dictionary_seed=seed, grid=SIZES,
                    dictionary_size=entry["size"], example_extent=config["atlas"]["example_extent"], **options)
    return f"{args} {render_args()}"

def concept_inputs(wildcards):
    e = CONCEPTS[wildcards.layer]
    inputs = run_inputs()
    needs = [inputs["index"], *inputs["lists"], *inputs["stores"], *MODEL_FILES]
    needs += [paths.coords(RUN, wildcards.layer), paths.whiten(RUN, wildcards.layer)]
    needs += [paths.cells(paths.grid_dir(RUN, wildcards.layer, n)) for n in SIZES]
    return needs + ([e["load"]] if e["load"] else [])
