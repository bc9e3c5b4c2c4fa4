rule atlas:
    """Tile a grid's icons into the atlas PNGs, with icons, dataset examples and atlas.json."""
    input:
        render_batches,
    output:
        png=f"{RUN}/{{layer}}/grid-{{n}}/atlas.png",
        labelled=f"{RUN}/{{layer}}/grid-{{n}}/atlas-labelled.png",
        meta=f"{RUN}/{{layer}}/grid-{{n}}/atlas.json",
    params:
        rundir=run_dir_of(2),
        model=config["model"],
        density="--density" if config["atlas"]["density"] else "--no-density",
        n_examples=config["atlas"]["n_examples"],
        code=code("atlas", "run:atlas", "run:label_agreement", "run:load_samples"),
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        f"{RUN}/logs/atlas/{{layer}}-{{n}}.log",
    benchmark:
        f"{RUN}/benchmarks/atlas/{{layer}}-{{n}}.tsv"
    shell:
        "actlas atlas {params.rundir} --layer {wildcards.layer} --n {wildcards.n} --model {params.model}"
        " {params.density} --n-examples {params.n_examples} 2> {log}"


rule manifest:
    """Gather every stage's record into manifest.json and print where the atlases are."""
    input:
        atlas_outputs(),
    output:
        f"{RUN}/manifest.json",
    params:
        rundir=run_dir_of(0),
        config=as_json(config),
    conda:
        CONDA_ENV
    log:
        f"{RUN}/logs/manifest.log",
    shell:
        "actlas manifest {params.rundir} --config-json {params.config:q} 2> {log}"
