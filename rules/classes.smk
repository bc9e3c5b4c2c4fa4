# Class atlases, two-class comparisons and patch experiments: one job per entry of the config lists
# class_atlases, comparisons and patches (items, with their defaults: actlas.settings). Folder names
# are slugs of the classes as written in the config: RUN/LAYER/class-<class>/,
# RUN/LAYER/compare-<a>-<b>/, RUN/patches/<source>-to-<target>/ (or the entry's name).


def _layer(entry):
    return entry["layer"] or LAYERS[0]


CLASS_ATLASES = {paths.slug(e["class"]): e for e in config["class_atlases"]}
COMPARISONS = {f"{paths.slug(e['classes'][0])}-{paths.slug(e['classes'][1])}": e for e in config["comparisons"]}
PATCHES = {e["name"] or f"{paths.slug(e['source'] or 'any')}-to-{paths.slug(e['target'])}": e
           for e in config["patches"]}
CLASS_FILES = ["cells.npz", "rows.npy", "coords.npy", "render/batch-00000.npz", *paths.ATLAS_FILES]


def class_folder(kind, name):
    entry = (CLASS_ATLASES if kind == "class" else COMPARISONS)[name]
    return (paths.class_dir if kind == "class" else paths.compare_dir)(RUN, _layer(entry), name)


def class_args(entry, *, drop):
    options = {k: v for k, v in entry.items() if k not in drop}
    return cli_args(model=MODEL, layer=_layer(entry), device=DEVICE, **options) + " " + render_args()


def _class_rule_outputs(kind):
    base = paths.layer_dir(RUN, "{layer}") / f"{kind}-{{name}}"
    out = {f.replace("/", "_").replace(".", "_").replace("-", "_"): base / f for f in CLASS_FILES}
    return {**out, "icons": directory(base / "icons"), "examples": directory(base / "examples")}


rule class_atlas:
    """Class atlas of one class: its samples laid out afresh, gridded, rendered like the main atlas."""
    input:
        **run_inputs(),
        whiten=paths.whiten(RUN, "{layer}"),
    output:
        **_class_rule_outputs("class"),
    params:
        run=RUN,
        cls=lambda wc: CLASS_ATLASES[wc.name]["class"],
        args=lambda wc: class_args(CLASS_ATLASES[wc.name], drop=("class", "layer")),
        out=lambda wc, output: str(Path(output.atlas_json).parent),
        code=code_digest("actlas.stages.class_atlas"),
    threads: RENDER.threads
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
    output:
        **_class_rule_outputs("compare"),
        compare=paths.layer_dir(RUN, "{layer}") / "compare-{name}" / "compare.png",
    params:
        run=RUN,
        a=lambda wc: COMPARISONS[wc.name]["classes"][0],
        b=lambda wc: COMPARISONS[wc.name]["classes"][1],
        args=lambda wc: class_args(COMPARISONS[wc.name], drop=("classes", "layer")),
        out=lambda wc, output: str(Path(output.atlas_json).parent),
        code=code_digest("actlas.stages.compare"),
    threads: RENDER.threads
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


def _patch_specs(e):
    """The entry's patches, ``cell:I,J`` resolved to the largest main grid of its layer."""
    return [f"cell:grid-{max(SIZES)}:{p[5:]}" if p.startswith("cell:") and p.count(":") == 1 else p
            for p in e["patches"]]


def _patch_folders(e):
    """Atlas folders (under RUN/LAYER) a patch experiment reads: those its patches name, and for
    discovery the target's class atlas, the main grids and the comparisons of its layer."""
    layer = _layer(e)
    named = [p.split(":")[1] for p in _patch_specs(e) if p.startswith("cell:")]
    search = []
    if e["discover"]:
        target = paths.slug(e["target"])
        search = ([f"class-{target}"] if target in CLASS_ATLASES and _layer(CLASS_ATLASES[target]) == layer else [])
        search += [f"grid-{n}" for n in SIZES]
        search += [f"compare-{k}" for k, c in COMPARISONS.items() if _layer(c) == layer]
    return list(dict.fromkeys(named + search)), search


def patch_inputs(wildcards):
    """Photos (the plan's lists and stores), the atlases whose icons it pastes or searches, patch images."""
    e = PATCHES[wildcards.name]
    needs = list(run_inputs().values())
    folders, _ = _patch_folders(e)
    for folder in folders:
        base = paths.layer_dir(RUN, _layer(e)) / folder
        needs += [base / "atlas.json", base / "icons"]
    needs += [p.split(":")[1] for p in e["patches"] if p.startswith("image:")]
    return needs


def patch_args(e):
    _, search = _patch_folders(e)
    options = {k: v for k, v in e.items() if k not in ("target", "layer", "patches", "name")}
    return cli_args(model=MODEL, layer=_layer(e), patch=_patch_specs(e), search=search, seed=SEED, device=DEVICE,
                    **options)


rule patch:
    """A patch experiment: flips to the target with static and dynamic protocols, noise and random-photo controls."""
    input:
        patch_inputs,
    output:
        directory(paths.patch_dir(RUN, "{name}")),
    params:
        run=RUN,
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


def class_atlas_outputs():
    """Every class atlas and comparison atlas.json the config asks for (the viewer shows them too)."""
    out = [class_folder("class", k) / "atlas.json" for k in CLASS_ATLASES]
    return out + [class_folder("compare", k) / "atlas.json" for k in COMPARISONS]


def class_outputs():
    """Every class atlas, comparison and patch experiment the config asks for (targets of rule all)."""
    return class_atlas_outputs() + [paths.patch_dir(RUN, k) for k in PATCHES]


def class_intermediates():
    """Every file the class atlases and comparisons write (targets of rule all)."""
    out = []
    for kind, names in (("class", CLASS_ATLASES), ("compare", COMPARISONS)):
        for k in names:
            folder = class_folder(kind, k)
            out += [folder / f for f in CLASS_FILES] + [folder / "icons", folder / "examples"]
            if kind == "compare":
                out.append(folder / "compare.png")
    return out
