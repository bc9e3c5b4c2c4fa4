# Shared names for every rule: the run directory, the command, shard lists, code digests.
import hashlib
import json
import sys
from pathlib import Path

from actlas.run import shards as write_shard_lists

RUN = config["run_dir"].rstrip("/")
ACTLAS = f"{sys.executable} -m actlas"
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


def code(*modules):
    """Digest of actlas modules' source: a params entry, so Snakemake reruns a stage when its code changes."""
    import actlas

    root = Path(actlas.__file__).parent
    h = hashlib.sha256()
    for m in modules:
        h.update((root / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


def as_json(d):
    return json.dumps(d, sort_keys=True)
