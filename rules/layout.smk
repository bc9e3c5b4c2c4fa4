rule layout:
    """UMAP of one layer's activations (cuML on a GPU, else umap-learn) -> coords.npy, whiten.npy, layout.json."""
    input:
        **run_inputs(),
    output:
        coords=paths.coords(RUN, "{layer}"),
        whiten=paths.whiten(RUN, "{layer}"),
        info=paths.layout_info(RUN, "{layer}"),
    params:
        run=run_of(1),
        args=cli_args(**config["layout"], seed=SEED),
        code=code_digest("actlas.stages.layout"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "layout", "{layer}"),
    benchmark:
        paths.benchmark(RUN, "layout", "{layer}")
    shell:
        "actlas layout {params.run:q} --layer {wildcards.layer:q} {params.args} 2> {log:q}"
