rule atlas:
    """Tile a grid's icons into the atlas PNGs, with icons, dataset examples and atlas.json."""
    input:
        **run_inputs(),
        cells=paths.cells(paths.grid_dir(RUN, "{layer}", "{n}")),
        batches=lambda wc: grid_batches(wc.layer, wc.n),
        model=MODEL_FILES,
        whole=whole(paths.icons_dir(paths.grid_dir(RUN, "{layer}", "{n}")), paths.examples_dir(paths.grid_dir(RUN, "{layer}", "{n}"))),
    output:
        png=paths.atlas_png(paths.grid_dir(RUN, "{layer}", "{n}")),
        labelled=paths.atlas_labelled(paths.grid_dir(RUN, "{layer}", "{n}")),
        meta=paths.atlas_json(paths.grid_dir(RUN, "{layer}", "{n}")),
        icons=directory(paths.icons_dir(paths.grid_dir(RUN, "{layer}", "{n}"))),
        examples=directory(paths.examples_dir(paths.grid_dir(RUN, "{layer}", "{n}"))),
    params:
        run=run_of(2),
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


rule manifest:
    """Gather every stage's record into manifest.json and print where the atlases are."""
    input:
        manifest_inputs,
    output:
        paths.manifest(RUN),
    params:
        run=run_of(0),
        config=json.dumps(config, sort_keys=True),
        code=code_digest("actlas.stages.manifest"),
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "manifest", "manifest"),
    shell:
        "actlas manifest {params.run:q} --config {params.config:q} 2> {log:q}"
