rule atlas:
    """Tile a grid's icons into the atlas PNGs, with icons, dataset examples and atlas.json."""
    input:
        **run_inputs(),
        cells=paths.cells(paths.grid_dir(RUN, "{layer}", "{n}")),
        batches=lambda wc: grid_batches(wc.layer, wc.n),
    output:
        png=paths.grid_dir(RUN, "{layer}", "{n}") / "atlas.png",
        labelled=paths.grid_dir(RUN, "{layer}", "{n}") / "atlas-labelled.png",
        meta=paths.grid_dir(RUN, "{layer}", "{n}") / "atlas.json",
        icons=directory(paths.grid_dir(RUN, "{layer}", "{n}") / "icons"),
        examples=directory(paths.grid_dir(RUN, "{layer}", "{n}") / "examples"),
    params:
        run=RUN,
        args=cli_args(model=MODEL, cells_per_job=RENDER.cells_per_job, **config["atlas"]),
        code=code_digest("actlas.stages.atlas"),
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "atlas", "{layer}-{n}"),
    benchmark:
        paths.benchmark(RUN, "atlas", "{layer}-{n}")
    shell:
        "actlas atlas {params.run:q} --layer {wildcards.layer:q} --n {wildcards.n} {params.args} 2> {log:q}"


def manifest_inputs(wildcards):
    """Everything the manifest reads: layouts, atlases and the render batches of the plan."""
    out = [paths.shard_index(RUN)] + [paths.shard_store(RUN, s) for s in SHARDS] + atlas_outputs()
    out += [paths.layout_info(RUN, layer) for layer in LAYERS]
    return out + [b for layer in LAYERS for n in SIZES for b in grid_batches(layer, n)]


rule manifest:
    """Gather every stage's record into manifest.json and print where the atlases are."""
    input:
        manifest_inputs,
    output:
        paths.manifest(RUN),
    params:
        run=RUN,
        config=json.dumps(config, sort_keys=True),
        code=code_digest("actlas.stages.manifest"),
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "manifest", "manifest"),
    shell:
        "actlas manifest {params.run:q} --config {params.config:q} 2> {log:q}"


def intermediates(wildcards):
    """Every intermediate artifact of the plan (targets of rule all, so a deleted one is rebuilt)."""
    out = [paths.shard_index(RUN)]
    out += [f for s in SHARDS for f in (paths.shard_list(RUN, s), paths.shard_store(RUN, s))]
    for layer in LAYERS:
        out += [paths.coords(RUN, layer), paths.whiten(RUN, layer), paths.layout_info(RUN, layer)]
        for n in SIZES:
            gdir = paths.grid_dir(RUN, layer, n)
            out += [paths.cells(gdir), *grid_batches(layer, n), gdir / "icons", gdir / "examples",
                    gdir / "atlas.png", gdir / "atlas-labelled.png"]
    return out + class_intermediates()
