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
