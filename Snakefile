# actlas: Activation Atlases as a Snakemake workflow.
#   snakemake --cores 2 --configfile config/demo.yaml
# Stages (docs/architecture.md): shard_list/shard_index (per shard, on the submit host) -> collect
# (per shard) -> layout (per layer) -> grid (checkpoint, per layer and size) -> render (per batch of
# cells) -> atlas -> class_atlas/compare/patch -> viewer -> manifest.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# The config checked before any job: size, schema, settings; each problem one line, as the CLI says it.
import sys
from actlas.configcheck import check_config, check_names, load_schema
from actlas.errors import UserError

try:
    config.update(check_config(config, load_schema(Path(workflow.basedir) / "config" / "schema.yaml")))
    check_names(config)
except UserError as err:
    sys.exit(f"Error: {err}")

include: "rules/common.smk"
include: "rules/probe.smk"
include: "rules/collect.smk"
include: "rules/layout.smk"
include: "rules/grid.smk"
include: "rules/render.smk"
include: "rules/atlas.smk"
include: "rules/classes.smk"
include: "rules/concepts.smk"
include: "rules/viewer.smk"


# Bookkeeping that takes a second runs on the submit host, never as a cluster job.
localrules: all, shard_list, shard_index, manifest


rule all:
    """Every artifact of the run: deleting any of them makes the next run rebuild it and what follows."""
    input:
        paths.manifest(RUN),
        paths.viewer_dir(RUN),
        class_outputs(),
        intermediates,
        concept_outputs(),
        concept_intermediates(),
    default_target: True


onstart:
    STARTED.append(time.time())
    run_lock("acquire")


onsuccess:
    run_lock("seal")
    run_lock("release")


onerror:
    report_job_errors(STARTED[0] if STARTED else 0.0)
    run_lock("release")
