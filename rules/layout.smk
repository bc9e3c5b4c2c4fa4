rule layout:
    """UMAP of one layer's activations (cuML on a GPU, else umap-learn) -> coords.npy, layout.json."""
    input:
        **run_inputs(),
    output:
        coords=paths.coords(RUN, "{layer}"),
        info=paths.layout_info(RUN, "{layer}"),
    params:
        run=run_of(1),
        args=cli_args(**{k: v for k, v in config["layout"].items() if k != "whitening_eps"}, seed=SEED),
        code=code_digest("actlas.stages.layout"),
    # umap-learn runs single-threaded when seeded (random_state), as actlas seeds it: on the demo, 24 of
    # its 30 s; only the exact neighbour search (6 s) runs on BLAS threads. One core is declared so that
    # another job (a class atlas, a whitening) runs beside it rather than a core idling (BENCHMARKS.md).
    threads: 1
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


rule whitening:
    """The render whitening of one layer -> whiten.npy (all a class atlas needs of a layer it is not laid out at)."""
    input:
        **run_inputs(),
    output:
        paths.whiten(RUN, "{layer}"),
    params:
        run=run_of(1),
        args=cli_args(whitening_eps=config["layout"]["whitening_eps"]),
        code=code_digest("actlas.stages.whitening"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "layout", "{layer}-whitening"),
    benchmark:
        paths.benchmark(RUN, "whitening", "{layer}")
    shell:
        "actlas whitening {params.run:q} --layer {wildcards.layer:q} {params.args} 2> {log:q}"
