rule atlas:
    """Tile a grid's icons into the atlas PNGs, with icons, dataset examples and atlas.json."""
    input:
        render_batches,
    output:
        png=f"{RUN}/{{layer}}/grid-{{n}}/atlas.png",
        labelled=f"{RUN}/{{layer}}/grid-{{n}}/atlas-labelled.png",
        meta=f"{RUN}/{{layer}}/grid-{{n}}/atlas.json",
    params:
        model=config["model"],
        density="--density" if config["atlas"]["density"] else "--no-density",
        n_examples=config["atlas"]["n_examples"],
        code=code("atlas", "run"),
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        f"{RUN}/logs/atlas/{{layer}}-{{n}}.log",
    shell:
        "{ACTLAS} atlas {RUN} --layer {wildcards.layer} --n {wildcards.n} --model {params.model}"
        " {params.density} --n-examples {params.n_examples} 2> {log}"


def atlas_outputs():
    """Every atlas.json of the run (one per layer and grid size)."""
    return expand(f"{RUN}/{{layer}}/grid-{{n}}/atlas.json", layer=LAYERS, n=SIZES)


rule config_snapshot:
    """The run's config as JSON, rewritten only when it changes (an input of the manifest)."""
    output:
        f"{RUN}/config.json",
    params:
        config=as_json(config),
    run:
        Path(output[0]).write_text(params.config)


rule manifest:
    """Gather every stage's record into manifest.json and print where the atlases are."""
    input:
        atlas_outputs(),
        config=f"{RUN}/config.json",
    output:
        f"{RUN}/manifest.json",
    log:
        f"{RUN}/logs/manifest.log",
    shell:
        "{ACTLAS} manifest {RUN} --config {input.config} 2> {log}"
