RENDER = {k: v for k, v in config["render"].items() if k not in ("cells_per_job", "threads")}
RENDER_FLAGS = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(RENDER.items())) + f" --seed {config.get('seed', 0)}"


rule render:
    """Icons of one batch of cells (the model loaded once, the whole batch optimised together)."""
    input:
        cells=f"{RUN}/{{layer}}/grid-{{n}}/cells.npz",
        whiten=f"{RUN}/{{layer}}/whiten.npy",
    output:
        f"{RUN}/{{layer}}/grid-{{n}}/icons/batch-{{batch}}.npz",
    params:
        rundir=run_dir_of(3),
        model=config["model"],
        flags=RENDER_FLAGS,
        cells_per_job=config["render"]["cells_per_job"],
        device=config.get("device", "auto"),
        code=code("render", "param", "transforms", "objectives", "models", "layers", "run:render"),
    threads: config["render"]["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    log:
        f"{RUN}/logs/render/{{layer}}-{{n}}-{{batch}}.log",
    benchmark:
        f"{RUN}/benchmarks/render/{{layer}}-{{n}}-{{batch}}.tsv"
    shell:
        "actlas render {params.rundir} --layer {wildcards.layer} --n {wildcards.n} --model {params.model}"
        " --batch {wildcards.batch} --cells-per-job {params.cells_per_job} {params.flags}"
        " --device {params.device} --threads {threads} 2> {log}"
