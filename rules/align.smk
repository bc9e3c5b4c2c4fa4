# Aligned atlases (config alignments; actlas.alignments): two or more maps laid out so that the same place in
# each holds what the same photos activate, each then gridded, rendered and composed like a main atlas.
# A map of another model: that model collected over the run's own shard lists into RUN/models/MODEL/
# (model_collect) and its layers whitened there (model_whitening). Files: RUN/aligned/NAME/ (align.json,
# coords.npz, MAP/grid-N/ atlas folders; MAP is the layer, or LAYER@MODEL). Its functions: rules/common.smk.

wildcard_constraints:
    map=r"[^/]+",
    model=r"[a-z0-9-]+",


rule model_collect:
    """Another model's activations over one shard list of the run (an alignment's map) -> RUN/models/MODEL/collect/."""
    input:
        shard=paths.shard_list(RUN, "{shard}"),
        model=lambda wc: model_files(OTHER_MODELS[wc.model]),
        whole=whole(paths.shard_store(paths.model_dir(RUN, "{model}"), "{shard}")),
    output:
        store=directory(paths.shard_store(paths.model_dir(RUN, "{model}"), "{shard}")),
        skipped=paths.store_skipped(paths.shard_store(paths.model_dir(RUN, "{model}"), "{shard}")),
    params:
        args=lambda wc: cli_args(model=model_arg(OTHER_MODELS[wc.model]),
                                 layer=alignment_plan.layers_of(ALIGNMENTS, wc.model), seed=SEED, device=DEVICE,
                                 **{k: v for k, v in config["collect"].items() if k not in ("shard_size", "threads")}),
        code=code_digest("actlas.stages.collect"),
    threads: config["collect"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "collect", "{model}-{shard}"),
    benchmark:
        paths.benchmark(RUN, "collect", "{model}-{shard}")
    shell:
        "actlas collect {input.shard:q} {output.store:q} {params.args} --threads {threads} 2> {log:q}"


rule model_whitening:
    """The render whitening of a layer of another model of the run -> RUN/models/MODEL/LAYER/whiten.npy."""
    input:
        index=paths.shard_index(RUN),
        lists=[paths.shard_list(RUN, s) for s in SHARDS],
        stores=lambda wc: _model_stores(wc.model),
    output:
        paths.whiten(paths.model_dir(RUN, "{model}"), "{layer}"),
    params:
        run=run_of(3),
        args=cli_args(whitening_eps=config["layout"]["whitening_eps"]),
        code=code_digest("actlas.stages.whitening"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "layout", "{model}-{layer}-whitening"),
    benchmark:
        paths.benchmark(RUN, "whitening", "{model}-{layer}")
    shell:
        "actlas whitening {params.run:q} --layer {wildcards.layer:q} --model-name {wildcards.model:q} {params.args}"
        " 2> {log:q}"


rule align:
    """Aligned UMAP of an alignment's maps (one point a photo: its mean activation) -> coords.npz, align.json."""
    input:
        lambda wc: list(dict.fromkeys(f for m in ALIGN[wc.name].maps for f in _map_inputs(m))),
    output:
        record=paths.align_json(RUN, "{name}"),
        coords=paths.align_coords(RUN, "{name}"),
    params:
        run=run_of(2),
        args=lambda wc: cli_args(map=[m.id for m in ALIGN[wc.name].maps], alignment=ALIGN[wc.name].alignment,
                                 seed=SEED, **{k: v for k, v in config["layout"].items()
                                               if k not in ("whitening_eps", "whiten")}),
        code=code_digest("actlas.stages.align"),
    # umap-learn's optimiser runs on one thread (as layout's); the exact neighbour search alone uses BLAS threads
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "align", "{name}"),
    benchmark:
        paths.benchmark(RUN, "align", "{name}")
    shell:
        "actlas align {params.run:q} --name {wildcards.name:q} {params.args} 2> {log:q}"


checkpoint align_grid:
    """Bin one aligned map into an N x N grid; the non-empty cells decide how many render jobs follow."""
    input:
        maps=lambda wc: _map_inputs(_aligned_map(wc.name, wc.map)),
        coords=paths.align_coords(RUN, "{name}"),
    output:
        paths.cells(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}")),
    params:
        run=run_of(4),
        min_count=config["grid"]["min_count"],
        code=code_digest("actlas.stages.align_grid"),
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "align", "{name}-{map}-grid-{n}"),
    benchmark:
        paths.benchmark(RUN, "align_grid", "{name}-{map}-{n}")
    shell:
        "actlas align-grid {params.run:q} --name {wildcards.name:q} --map {wildcards.map:q} --n {wildcards.n}"
        " --min-count {params.min_count} 2> {log:q}"


rule align_render:
    """Icons of one batch of an aligned map's cells, with that map's own model and layer (and icon cache)."""
    input:
        cells=paths.cells(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}")),
        whiten=lambda wc: (lambda m: paths.whiten(paths.model_root(RUN, m.model_name), m.layer))(
            _aligned_map(wc.name, wc.map)),
        model=lambda wc: _map_model_files(_aligned_map(wc.name, wc.map)),
    output:
        paths.render_batch(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}"), "{batch}"),
    params:
        run=run_of(5),
        args=lambda wc: _align_render_args(_aligned_map(wc.name, wc.map)),
        code=code_digest("actlas.stages.align_render"),
    threads: RENDER.threads
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "render", "{name}-{map}-{n}-{batch}"),
    benchmark:
        paths.benchmark(RUN, "align_render", "{name}-{map}-{n}-{batch}")
    shell:
        "actlas align-render {params.run:q} --name {wildcards.name:q} --map {wildcards.map:q} --n {wildcards.n}"
        " --batch {wildcards.batch} {params.args} --threads {threads} 2> {log:q}"


rule align_atlas:
    """Tile an aligned map's icons into its atlas files; atlas.json carries the alignment's measures."""
    input:
        maps=lambda wc: _map_inputs(_aligned_map(wc.name, wc.map)),
        record=paths.align_json(RUN, "{name}"),
        coords=paths.align_coords(RUN, "{name}"),
        cells=paths.cells(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}")),
        batches=lambda wc: aligned_batches(wc.name, wc.map, wc.n),
        model=lambda wc: _map_model_files(_aligned_map(wc.name, wc.map)),
        whole=whole(paths.icons_dir(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}")), paths.examples_dir(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}"))),
    output:
        png=paths.atlas_png(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}")),
        labelled=paths.atlas_labelled(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}")),
        meta=paths.atlas_json(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}")),
        icons=directory(paths.icons_dir(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}"))),
        examples=directory(paths.examples_dir(paths.aligned_grid_dir(RUN, "{name}", "{map}", "{n}"))),
    params:
        run=run_of(4),
        args=lambda wc: cli_args(model=model_arg(_aligned_map(wc.name, wc.map).model),
                                 cells_per_job=RENDER.cells_per_job, seed=SEED,
                                 **{k: v for k, v in config["atlas"].items() if k != "example_extent"}),
        code=code_digest("actlas.stages.align_atlas"),
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "atlas", "{name}-{map}-{n}"),
    benchmark:
        paths.benchmark(RUN, "align_atlas", "{name}-{map}-{n}")
    shell:
        "actlas align-atlas {params.run:q} --name {wildcards.name:q} --map {wildcards.map:q} --n {wildcards.n}"
        " {params.args} 2> {log:q}"
