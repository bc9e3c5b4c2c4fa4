# Class atlases, two-class comparisons and patch experiments: one job per entry of the config lists
# class_atlases, comparisons and patches (items, with their defaults: actlas.settings). Folder names
# are slugs of the classes as written in the config: RUN/LAYER/class-<class>/,
# RUN/LAYER/compare-<a>-<b>/, RUN/patches/<source>-to-<target>/ (or the entry's name).


rule class_atlas:
    """Class atlas of one class: its samples laid out afresh, gridded, rendered like the main atlas."""
    input:
        **run_inputs(),
        whiten=paths.whiten(RUN, "{layer}"),
        model=MODEL_FILES,
        whole=whole(*_class_rule_folders("class")),
    output:
        **_class_rule_outputs("class"),
    params:
        run=run_of(2),
        cls=lambda wc: CLASS_ATLASES[(wc.layer, wc.name)]["class"],
        args=lambda wc: class_args(CLASS_ATLASES[(wc.layer, wc.name)], drop=("class", "layer")),
        out=lambda wc, output: str(Path(output.atlas_json).parent),
        code=code_digest("actlas.stages.class_atlas"),
    threads: RENDER.threads
    # Started before render jobs that are ready with them: a class atlas optimises every icon of its
    # grid in one job (one to two minutes on a CPU), and long jobs first leave the short render jobs
    # to fill the end of a run rather than one long job running alone on an otherwise idle machine.
    priority: 1
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    benchmark:
        paths.benchmark(RUN, "class_atlas", "{layer}-{name}")
    log:
        paths.log(RUN, "classes", "{layer}-class-{name}"),
    shell:
        "actlas class-atlas {params.run:q} --class {params.cls:q} {params.args} --threads {threads}"
        " --out {params.out:q} 2> {log:q}"


rule compare:
    """Two-class comparison: x = attribution to A minus B, y = a 1-D layout, rendered like an atlas."""
    input:
        **run_inputs(),
        whiten=paths.whiten(RUN, "{layer}"),
        model=MODEL_FILES,
        whole=whole(*_class_rule_folders("compare")),
    output:
        **_class_rule_outputs("compare"),
        compare=paths.compare_png(paths.compare_dir(RUN, "{layer}", "{name}")),
    params:
        run=run_of(2),
        a=lambda wc: COMPARISONS[(wc.layer, wc.name)]["classes"][0],
        b=lambda wc: COMPARISONS[(wc.layer, wc.name)]["classes"][1],
        args=lambda wc: class_args(COMPARISONS[(wc.layer, wc.name)], drop=("classes", "layer")),
        out=lambda wc, output: str(Path(output.atlas_json).parent),
        code=code_digest("actlas.stages.compare"),
    threads: RENDER.threads
    priority: 1  # long jobs first, as class_atlas
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=120,
    benchmark:
        paths.benchmark(RUN, "compare", "{layer}-{name}")
    log:
        paths.log(RUN, "classes", "{layer}-compare-{name}"),
    shell:
        "actlas compare {params.run:q} --classes {params.a:q} {params.b:q} {params.args} --threads {threads}"
        " --out {params.out:q} 2> {log:q}"


rule patch:
    """A patch experiment: flips to the target with static and dynamic protocols, noise and random-photo controls."""
    input:
        patch_inputs,
        whole=whole(paths.patch_dir(RUN, "{name}")),
    output:
        directory(paths.patch_dir(RUN, "{name}")),
    params:
        run=run_of(1),
        target=lambda wc: PATCHES[wc.name]["target"],
        args=lambda wc: patch_args(PATCHES[wc.name]),
        code=code_digest("actlas.stages.patch"),
    threads: RENDER.threads
    conda:
        CONDA_ENV
    resources:
        mem_mb=6000,
        runtime=120,
    benchmark:
        paths.benchmark(RUN, "patch", "{name}")
    log:
        paths.log(RUN, "patches", "{name}"),
    shell:
        "actlas patch {params.run:q} --target {params.target:q} {params.args} --threads {threads}"
        " --out {output:q} 2> {log:q}"
