# The browser viewer: deep-zoom tiles of every atlas, data.json and the static viewer in RUN/viewer/.
# `actlas serve RUN` serves it on 127.0.0.1; `actlas export RUN OUT` copies it as a static site.
from actlas.serve import viewer_digest

VIEWER = f"{RUN}/viewer/index.html"


rule viewer:
    """Build RUN/viewer/ (tiles, data.json, OpenSeadragon from node_modules) from the run's atlases,
    class atlases and comparisons (each atlas.json is written after its atlas.png)."""
    input:
        json=atlas_outputs() + class_atlas_outputs(),
    output:
        VIEWER,
    params:
        rundir=run_dir_of(1),
        layer_flags=" ".join(f"--layer {l}" for l in LAYERS),
        openseadragon=str(Path(workflow.basedir) / "node_modules/openseadragon/build/openseadragon"),
        code=viewer_digest(),
    conda:
        CONDA_ENV
    log:
        f"{RUN}/logs/viewer.log",
    shell:
        "actlas build-viewer {params.rundir} --openseadragon {params.openseadragon} {params.layer_flags} 2> {log}"
