wildcard_constraints:
    name=r"[a-z0-9-]+",


rule class_atlas:
    """Class atlas of one class: its samples laid out afresh, gridded, rendered like the main atlas."""
    input:
        stores=expand(f"{RUN}/collect/{{shard}}.zarr", shard=SHARDS),
        whiten=f"{RUN}/{{layer}}/whiten.npy",
    output:
        meta=f"{RUN}/{{layer}}/class-{{name}}/atlas.json",
    params:
        rundir=run_dir_of(2),
        model=config["model"],
        cls=lambda wc: str(CLASS_ATLASES[wc.name]["class"]),
        flags=lambda wc: _class_flags(CLASS_ATLASES[wc.name], 8, "winner"),
        device=config.get("device", "auto"),
        code=CLASS_CODE,
    threads: config["render"]["threads"]
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    benchmark:
        f"{RUN}/benchmarks/class_atlas/{{layer}}-{{name}}.tsv"
    log:
        f"{RUN}/logs/classes/{{layer}}-class-{{name}}.log",
    shell:
        "actlas class-atlas {params.rundir} --layer {wildcards.layer} --class {params.cls:q} --model {params.model}"
        " {params.flags} --device {params.device} --threads {threads}"
        " --out {params.rundir}/{wildcards.layer}/class-{wildcards.name} 2> {log}"


rule compare:
    """Two-class comparison: x = attribution to A minus B, y = a 1-D layout, rendered like an atlas."""
    input:
        stores=expand(f"{RUN}/collect/{{shard}}.zarr", shard=SHARDS),
        whiten=f"{RUN}/{{layer}}/whiten.npy",
    output:
        meta=f"{RUN}/{{layer}}/compare-{{name}}/atlas.json",
    params:
        rundir=run_dir_of(2),
        model=config["model"],
        a=lambda wc: str(COMPARISONS[wc.name]["classes"][0]),
        b=lambda wc: str(COMPARISONS[wc.name]["classes"][1]),
        flags=lambda wc: _class_flags(COMPARISONS[wc.name], 10, "top"),
        device=config.get("device", "auto"),
        code=CLASS_CODE,
    threads: config["render"]["threads"]
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    benchmark:
        f"{RUN}/benchmarks/compare/{{layer}}-{{name}}.tsv"
    log:
        f"{RUN}/logs/classes/{{layer}}-compare-{{name}}.log",
    shell:
        "actlas compare {params.rundir} --layer {wildcards.layer} --classes {params.a:q} {params.b:q}"
        " --model {params.model} {params.flags} --device {params.device} --threads {threads}"
        " --out {params.rundir}/{wildcards.layer}/compare-{wildcards.name} 2> {log}"


rule patch:
    """A patch experiment: flips to the target with static and dynamic protocols, noise and random-photo controls."""
    input:
        patch_inputs,
    output:
        report=f"{RUN}/patches/{{name}}/report.json",
        md=f"{RUN}/patches/{{name}}/report.md",
    params:
        rundir=run_dir_of(2),
        model=config["model"],
        flags=lambda wc: _patch_flags(PATCHES[wc.name]),
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
        code=PATCH_CODE,
    threads: config["render"]["threads"]
    conda:
        CONDA_ENV
    resources:
        mem_mb=6000,
        runtime=120,
    benchmark:
        f"{RUN}/benchmarks/patch/{{name}}.tsv"
    log:
        f"{RUN}/logs/patches/{{name}}.log",
    shell:
        "actlas patch {params.rundir} {params.flags} --model {params.model} --seed {params.seed}"
        " --device {params.device} --threads {threads} --out {params.rundir}/patches/{wildcards.name} 2> {log}"
