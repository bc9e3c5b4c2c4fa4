# Shared names for every rule: the run directory, the plan of shards, settings, code digests.
# Parse time reads the config and lists the images; it writes nothing and loads no model.
import json
import shlex
from pathlib import Path

import numpy as np

from actlas import paths, settings
from actlas.digest import code_digest
from actlas.smk import check_run_dir, cli_args
from actlas.stages import shards as shards_stage

config.update(settings.fill(config))
RUN = check_run_dir(config["run_dir"], workflow.basedir)
LAYERS = list(config["layers"])
SIZES = list(config["grid"]["sizes"])
SEED = config["seed"]
DEVICE = config["device"]
MODEL = json.dumps(config["model"]) if isinstance(config["model"], dict) else str(config["model"])
CONDA_ENV = "../envs/gpu.yaml" if DEVICE == "cuda" else "../envs/cpu.yaml"
RENDER = settings.from_mapping(settings.Render, config["render"])

# The shards of the image set, planned from a listing (read only): {shard name: rows}.
PLAN = shards_stage.plan(config["images"], config["model"], shard_size=config["collect"]["shard_size"],
                         limit=config["limit"], seed=SEED)
SHARDS = list(PLAN)


wildcard_constraints:
    shard=r"shard-\d+",
    n=r"\d+",
    batch=r"\d+",
    layer=r"[^/]+",
    name=r"[a-z0-9-]+",


def q(value):
    """One shell-quoted argument."""
    return shlex.quote(str(value))


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
    with np.load(cells) as f:
        count = paths.n_batches(len(f["count"]), RENDER.cells_per_job)
    return [paths.render_batch(paths.grid_dir(RUN, layer, n), b) for b in range(count)]


def atlas_outputs():
    """Every atlas.json of the run (one per layer and grid size)."""
    return [paths.grid_dir(RUN, layer, n) / "atlas.json" for layer in LAYERS for n in SIZES]


def run_lock(action):
    """One writer per run directory: take the lock at the start of a real run, give it back at the end."""
    if workflow.dryrun or not workflow.is_main_process:
        return
    try:
        from actlas import lock
    except ImportError:  # TEMPORARY until the lock module lands (issue 14)
        return
    getattr(lock, action)(RUN, workflow.basedir)
