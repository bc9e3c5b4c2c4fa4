# Concept atlases: one job per item of the config list `concepts` (one dictionary per layer of
# layers): RUN/LAYER/concepts/ holds the dictionary, the concepts' cells and render batch (icons
# rendered as cells' are), icons/, examples/, sheet.jpg and concepts.json (actlas.stages.concepts).


rule concepts:
    """A layer's dictionary of concepts: learned (or loaded), measured on held-out samples, rendered, summarised."""
    input:
        concept_inputs,
    output:
        dictionary=paths.dictionary(paths.concepts_dir(RUN, "{layer}")),
        cells=paths.cells(paths.concepts_dir(RUN, "{layer}")),
        batch=paths.render_batch(paths.concepts_dir(RUN, "{layer}"), 0),
        png=paths.atlas_png(paths.concepts_dir(RUN, "{layer}")),
        atlas=paths.atlas_json(paths.concepts_dir(RUN, "{layer}")),
        sheet=paths.concept_sheet(paths.concepts_dir(RUN, "{layer}")),
        meta=paths.concepts_json(paths.concepts_dir(RUN, "{layer}")),
        icons=directory(paths.icons_dir(paths.concepts_dir(RUN, "{layer}"))),
        examples=directory(paths.examples_dir(paths.concepts_dir(RUN, "{layer}"))),
    params:
        run=run_of(2),
        args=lambda wc: concept_args(CONCEPTS[wc.layer]),
        out=lambda wc, output: str(Path(output.meta).parent),
        code=code_digest("actlas.stages.concepts"),
    threads: RENDER.threads
    priority: 1  # a long job (learning, every concept's icon): started early, as class_atlas
    conda:
        CONDA_ENV
    resources:
        mem_mb=6000,
        runtime=120,
    benchmark:
        paths.benchmark(RUN, "concepts", "{layer}")
    log:
        paths.log(RUN, "concepts", "{layer}"),
    shell:
        "actlas concepts {params.run:q} {params.args} --threads {threads} --out {params.out:q} 2> {log:q}"
