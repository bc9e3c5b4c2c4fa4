# The browser viewer: deep-zoom tiles of every atlas, data.json and the static viewer in RUN/viewer/.
# `actlas serve RUN` serves it on 127.0.0.1; `actlas export RUN OUT` copies it as a static site.


rule viewer:
    """Build RUN/viewer/ (tiles, data.json, OpenSeadragon from node_modules) from the run's atlases,
    class atlases and comparisons, linking each cell to the patch experiments that tested it."""
    input:
        viewer_inputs,
        whole=whole(paths.viewer_dir(RUN)),
    output:
        directory(paths.viewer_dir(RUN)),
    params:
        run=run_of(0),
        args=lambda wc: cli_args(layer=LAYERS, atlas=[str(p) for p in atlas_outputs() + class_atlas_outputs() + aligned_atlas_outputs()],
                                 patches=[str(paths.report_json(p)) for p in patch_outputs()],
                                 no_patches=True if not PATCHES else None,
                                 concepts=[str(p) for p in concept_outputs()],
                                 no_concepts=True if not CONCEPTS else None,
                                 openseadragon=str(Path(workflow.basedir) / "node_modules/openseadragon/build/openseadragon")),
        code=code_digest("actlas.stages.viewer"),
    conda:
        CONDA_ENV
    log:
        paths.log(RUN, "viewer", "viewer"),
    shell:
        "actlas viewer {params.run:q} {params.args} 2> {log:q}"
