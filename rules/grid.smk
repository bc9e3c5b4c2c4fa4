checkpoint grid:
    """Bin a layout into an N x N grid; the non-empty cells decide how many render jobs follow."""
    input:
        f"{RUN}/{{layer}}/coords.npy",
    output:
        f"{RUN}/{{layer}}/grid-{{n}}/cells.npz",
    params:
        rundir=run_dir_of(2),
        min_count=config["grid"]["min_count"],
        code=code("grid", "run:grid", "run:load_samples"),
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        f"{RUN}/logs/grid/{{layer}}-{{n}}.log",
    benchmark:
        f"{RUN}/benchmarks/grid/{{layer}}-{{n}}.tsv"
    shell:
        "actlas grid {params.rundir} --layer {wildcards.layer} --n {wildcards.n} --min-count {params.min_count} 2> {log}"
