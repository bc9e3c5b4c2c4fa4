checkpoint grid:
    """Bin a layout into an N x N grid; the non-empty cells decide how many render jobs follow."""
    input:
        **run_inputs(),
        coords=paths.coords(RUN, "{layer}"),
    output:
        paths.cells(paths.grid_dir(RUN, "{layer}", "{n}")),
    params:
        run=run_of(2),
        min_count=config["grid"]["min_count"],
        code=code_digest("actlas.stages.grid"),
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "grid", "{layer}-{n}"),
    benchmark:
        paths.benchmark(RUN, "grid", "{layer}-{n}")
    shell:
        "actlas grid {params.run:q} --layer {wildcards.layer:q} --n {wildcards.n} --min-count {params.min_count}"
        " 2> {log:q}"
