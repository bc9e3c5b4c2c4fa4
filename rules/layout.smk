rule layout:
    """UMAP of one layer's activations (cuML on a GPU, else umap-learn) -> coords.npy, whiten.npy."""
    input:
        expand(f"{RUN}/collect/{{shard}}.zarr", shard=SHARDS),
    output:
        coords=f"{RUN}/{{layer}}/coords.npy",
        whiten=f"{RUN}/{{layer}}/whiten.npy",
        info=f"{RUN}/{{layer}}/layout.json",
    params:
        rundir=run_dir_of(1),
        l=config["layout"],
        whiten="--whiten" if config["layout"]["whiten"] else "--no-whiten",
        seed=config.get("seed", 0),
        code=code("layout", "run:layout"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    log:
        f"{RUN}/logs/layout/{{layer}}.log",
    benchmark:
        f"{RUN}/benchmarks/layout/{{layer}}.tsv"
    shell:
        "actlas layout {params.rundir} --layer {wildcards.layer} --n-neighbors {params.l[n_neighbors]}"
        " --min-dist {params.l[min_dist]} --metric {params.l[metric]} --pca {params.l[pca]}"
        " {params.whiten} --whitening-eps {params.l[whitening_eps]}"
        " --backend {params.l[backend]} --seed {params.seed} 2> {log}"
