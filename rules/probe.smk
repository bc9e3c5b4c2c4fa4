rule probe:
    """The linear probe of a model with head: probe, trained on the run's labelled photos before any
    collect job (attribution needs the head; the head needs every shard's photos)."""
    input:
        index=paths.shard_index(RUN),
        lists=[paths.shard_list(RUN, s) for s in SHARDS],
        model=MODEL_FILES,
        evaluate=config["probe"]["evaluate"],
    output:
        npz=paths.probe_npz(RUN),
        meta=paths.probe_json(RUN),
    params:
        run=run_of(1),
        args=cli_args(model=MODEL, seed=SEED, device=DEVICE, **config["probe"]),
        code=code_digest("actlas.stages.probe"),
    threads: config["collect"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "probe", "probe"),
    benchmark:
        paths.benchmark(RUN, "probe", "probe")
    shell:
        "actlas probe {params.run:q} {params.args} --threads {threads} 2> {log:q}"
