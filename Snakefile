# actlas: Activation Atlases as a Snakemake workflow.
#   snakemake --cores 2 --configfile config/demo.yaml
# Stages: shards (parse time) -> collect (per shard) -> layout (per layer) -> grid (checkpoint,
# per layer and size) -> render (per batch of cells) -> atlas -> manifest (+ viewer).
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")

include: "rules/common.smk"
include: "rules/collect.smk"
include: "rules/layout.smk"
include: "rules/grid.smk"
include: "rules/render.smk"
include: "rules/atlas.smk"
include: "rules/classes.smk"
include: "rules/viewer.smk"


# Bookkeeping that takes a second runs on the submit host, never as a cluster job.
localrules: all, manifest


rule all:
    input:
        f"{RUN}/manifest.json",
        VIEWER,
        class_outputs(),
    default_target: True
