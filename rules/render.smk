rule render:
    """Icons of one batch of cells (the model loaded once, the whole batch optimised together)."""
    input:
        cells=paths.cells(paths.grid_dir(RUN, "{layer}", "{n}")),
        whiten=paths.whiten(RUN, "{layer}"),
        model=MODEL_FILES,
    output:
        paths.render_batch(paths.grid_dir(RUN, "{layer}", "{n}"), "{batch}"),
    params:
        run=run_of(3),
        args=f"{cli_args(model=MODEL, cells_per_job=RENDER.cells_per_job, device=DEVICE)} {render_args()}",
        code=code_digest("actlas.stages.render"),
    threads: RENDER.threads
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "render", "{layer}-{n}-{batch}"),
    benchmark:
        paths.benchmark(RUN, "render", "{layer}-{n}-{batch}")
    shell:
        "actlas render {params.run:q} --layer {wildcards.layer:q} --n {wildcards.n} --batch {wildcards.batch}"
        " {params.args} --threads {threads} 2> {log:q}"
