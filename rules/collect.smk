rule collect:
    """Activations and attributions of one shard of images -> a Zarr store."""
    input:
        f"{RUN}/shards/{{shard}}.txt",
    output:
        directory(f"{RUN}/collect/{{shard}}.zarr"),
    params:
        model=config["model"],
        layers=" ".join(f"--layer {l}" for l in LAYERS),
        c=config["collect"],
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
        amp="--amp" if config["collect"].get("amp", False) else "--no-amp",
        code=code("collect", "models", "images", "store", "layers"),
    threads: config["collect"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    log:
        f"{RUN}/logs/collect/{{shard}}.log",
    benchmark:
        f"{RUN}/benchmarks/collect/{{shard}}.tsv"
    shell:
        "actlas collect {input} {output} --model {params.model} {params.layers}"
        " --positions {params.c[positions]} --attr-top {params.c[attr_top]} --batch-size {params.c[batch_size]}"
        " --chunk {params.c[chunk]} --workers {params.c[workers]} --seed {params.seed}"
        " --device {params.device} --threads {threads} {params.amp} 2> {log}"
