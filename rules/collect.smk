rule shard_list:
    """One shard's image list, written from the parse-time plan (rewritten only when its rows change)."""
    output:
        paths.shard_list(RUN, "{shard}"),
    params:
        digest=lambda wc: shard_files.shard_digest(PLAN.shards[wc.shard]),
    log:
        paths.log(RUN, "shards", "{shard}"),
    run:
        shard_files.write_shard(output[0], PLAN.shards[wildcards.shard])


rule shard_index:
    """The shards of the current plan (stale lists of an earlier plan are never read)."""
    output:
        index=paths.shard_index(RUN),
        skipped=paths.shard_skipped(RUN),
    params:
        shards=SHARDS,
        skipped=shard_files.skipped_digest(PLAN.skipped),
    log:
        paths.log(RUN, "shards", "index"),
    run:
        shard_files.write_index(Path(output.index).parent.parent, params.shards, PLAN.skipped)


rule collect:
    """Activations and attributions of one shard of images -> a Zarr store (and its skip list)."""
    input:
        shard=paths.shard_list(RUN, "{shard}"),
        model=MODEL_FILES,
        probe=PROBE,  # a head: probe model's probe (collect reads it beside its store's collect/)
        whole=whole(paths.shard_store(RUN, "{shard}")),
    output:
        store=directory(paths.shard_store(RUN, "{shard}")),
        skipped=paths.store_skipped(paths.shard_store(RUN, "{shard}")),
    params:
        args=cli_args(model=MODEL, layer=COLLECTED, seed=SEED, device=DEVICE,
                      **{k: v for k, v in config["collect"].items() if k not in ("shard_size", "threads")}),
        code=code_digest("actlas.stages.collect"),
    threads: config["collect"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "collect", "{shard}"),
    benchmark:
        paths.benchmark(RUN, "collect", "{shard}")
    shell:
        "actlas collect {input.shard:q} {output.store:q} {params.args} --threads {threads} 2> {log:q}"
