"""The ``actlas`` command: a thin click group, one command per stage function of the same name.

``actlas layout RUN ...`` calls ``actlas.stages.layout.layout(RUN, ...)``; a keyword
``n_neighbors`` is the flag ``--n-neighbors``, and every default comes from ``actlas.settings``
(shared options: ``actlas.cli_options``). A command acting on an existing run takes ``--layer``
and ``--model`` from the run when they are not given. Stage modules are imported inside the
commands, so ``actlas --help`` stays fast.

Errors: a ``UserError`` (``actlas.errors``) prints as exactly its message, one line, and so does a
full disk; any other exception prints its traceback and a line saying it is a bug in actlas.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from . import paths, settings
from .allocator import keep_freed_memory
from .cli_options import (
    Number,
    _locked_run,
    class_options,
    device_option,
    grid_option,
    hold_run_lock,
    layer_option,
    model_block_from,
    model_field_flags,
    model_flags,
    one_line_warnings,
    options_of,
    out_option,
    render_job_options,
    render_params,
    render_settings,
    run_argument,
    run_layer,
    seed_option,
    threads_option,
)
from .errors import UserError, no_space_message
from .models.builders import builtins_text

BUG = (
    "this is a bug in actlas, not something you did: please report it to the actlas maintainers "
    "with the command you ran and the traceback above"
)


class ActlasGroup(click.Group):
    """A ``UserError`` or a full disk -> one line; anything else -> its traceback and the bug line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except UserError as err:
            raise click.ClickException(str(err)) from err
        except Exception as err:
            message = no_space_message(err)
            if message is not None:
                raise click.ClickException(message) from err
            traceback.print_exception(err, file=sys.stderr)
            raise click.ClickException(BUG) from err


@click.group(cls=ActlasGroup)
@click.version_option(package_name="actlas")
def main() -> None:
    """Activation Atlases for any PyTorch image model.

    Example: actlas layers ../shared/assets/models/mobilenet_v2_imagenet.json
    """
    one_line_warnings()
    keep_freed_memory()  # glibc: a render step 4-12% faster, the same bytes (actlas.allocator)


# --------------------------------------------------------------------------- models and layers


@main.command(epilog=builtins_text())
@click.argument("source")
@click.option("--all", "show_all", is_flag=True, help="Also list modules whose output actlas cannot use.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@model_field_flags
def layers(source, show_all: bool, as_json: bool, **kw) -> None:
    """List a model's layers with output shape, kind (map, channels_last, tokens, cls, pooled) and grid.

    Example: actlas layers ../shared/assets/models/mobilenet_v2_imagenet.json
    """
    from .models.headhook import head_mode
    from .models.load import load_model
    from .nn.layers import list_layers

    kw["model_source"] = source
    net, spec = load_model(model_block_from(kw))
    with head_mode(net, "off"):  # listing layers needs no logits: an encoder has none
        rows = list_layers(net, spec.input_size, spec.layer_kinds)
    if not show_all:
        rows = [r for r in rows if r.get("kind") is not None]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else "-"
        grid = "x".join(map(str, r["grid"])) if r.get("grid") else "-"
        click.echo(f"{r['layer']:40s} {r['type']:24s} {shape:16s} {str(r.get('kind') or '-'):14s} {grid}")


# --------------------------------------------------------------------------- the stages


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--run", "run_dir", required=True, type=click.Path(), callback=_locked_run, help="Run directory.")
@model_flags(required=True)
@click.option("--shard-size", default=settings.Collect.shard_size, show_default=True, help="Images per shard.")
@click.option("--limit", type=int, default=settings.Run.limit, help="Use this many images (deterministic choice).")
@seed_option
def shards(images, run_dir, shard_size, limit, seed, **kw) -> None:
    """Split an image set into shard lists under RUN/shards (and RUN/shards/index.json).

    Example: actlas shards ../shared/assets/images/imagenet-val --run runs/x -m card.json --limit 200
    """
    from .stages.shards import shards as stage

    out = stage(list(images), run_dir, model_block_from(kw), shard_size=shard_size, limit=limit, seed=seed)
    click.echo(f"{len(out)} shards in {paths.shards_dir(run_dir)}")


@main.command()
@click.argument("shard", type=click.Path(exists=True))
@click.argument("out", type=click.Path())
@model_flags(required=True)
@click.option("--layer", "-l", "layers", multiple=True, required=True, help="Layer path; repeat for several.")
@options_of(settings.Collect, skip=("shard_size", "threads"))
@seed_option
@device_option
@threads_option
@click.option(
    "--probe",
    type=click.Path(),
    default=None,
    help="A head: probe model's probe.npz (default: the run's RUN/probe/probe.npz).",
)
def collect(shard, out, layers, **options) -> None:
    """Collect activations and attributions for one shard list into a Zarr store.

    Example: actlas collect runs/x/shards/shard-00000.txt runs/x/collect/shard-00000.zarr -m card.json -l features.13
    """
    from .stages.collect import collect as stage

    if Path(out).parent.name == paths.collect_dir("").name:  # a store of a run: its lock
        hold_run_lock(click.get_current_context(), str(Path(out).parent.parent))
    model = model_block_from(options)
    click.echo(json.dumps(stage(shard, out, model, list(layers), **options)))


@main.command()
@run_argument
@model_flags()
@options_of(settings.Probe)
@seed_option
@device_option
@threads_option
def probe(run_dir, **options) -> None:
    """Train the linear probe of a head: probe model on the run's labelled photos (RUN/probe/probe.npz).

    Example: actlas probe runs/x -m '{"source": "enc.json", "head": "probe"}' --evaluate photos/test
    """
    from .formats.probe import read_probe
    from .stages.probe import probe as stage

    model = model_block_from(options, run_dir)
    path = stage(run_dir, model, progress=True, **options)
    click.echo(json.dumps({k: v for k, v in read_probe(path).to_json().items() if k != "per_class"}))


@main.command()
@run_argument
@layer_option()
@options_of(settings.Layout, skip=("whitening_eps",))
@seed_option
def layout(run_dir, layer, seed, **options) -> None:
    """Lay out a layer's activations on the plane with UMAP.

    Example: actlas layout runs/x -l features.13
    """
    from .stages.layout import layout as stage

    click.echo(str(stage(run_dir, run_layer(run_dir, layer), seed=seed, **options)))


@main.command()
@run_argument
@layer_option()
@click.option(
    "--whitening-eps",
    type=Number(float, settings.Layout, "whitening_eps"),
    default=settings.Layout.whitening_eps,
    show_default=True,
    help="Ridge of the render whitening (a fraction of the mean variance).",
)
@click.option(
    "--model-name",
    default=None,
    help="A layer of another model of the run (an alignment's): its stores in RUN/models/NAME.",
)
def whitening(run_dir, layer, whitening_eps, model_name) -> None:
    """Compute the whitening that render and class atlases apply to a layer's directions.

    Example: actlas whitening runs/x -l features.13
    """
    from .stages.whitening import whitening as stage

    layer = layer if model_name else run_layer(run_dir, layer)
    click.echo(str(stage(run_dir, layer, whitening_eps=whitening_eps, model_name=model_name)))


@main.command()
@run_argument
@layer_option()
@grid_option
@click.option(
    "--min-count", default=settings.Grid.min_count, show_default=True, help="Cells with fewer samples stay empty."
)
def grid(run_dir, layer, n, min_count) -> None:
    """Bin a layer's layout into an N x N grid of cells.

    Example: actlas grid runs/x -l features.13 -n 20
    """
    from .stages.grid import grid as stage

    click.echo(str(stage(run_dir, run_layer(run_dir, layer), n, min_count=min_count)))


@main.command()
@run_argument
@layer_option()
@grid_option
@render_job_options
def render(run_dir, layer, n, batch, cells_per_job, device, threads, **params) -> None:
    """Render the icons of one batch of a grid's cells.

    Example: actlas render runs/x -l features.13 -n 20 --steps 128
    """
    from .stages.render import render as stage

    model = model_block_from(params, run_dir)
    layer = run_layer(run_dir, layer)
    options = {"batch": batch, "cells_per_job": cells_per_job, "device": device, "threads": threads}
    click.echo(str(stage(run_dir, layer, n, model, params=render_params(params), **options)))


@main.command()
@run_argument
@layer_option()
@grid_option
@model_flags()
@click.option(
    "--cells-per-job",
    default=settings.Render.cells_per_job,
    show_default=True,
    help="Cells per render batch (as rendered).",
)
@options_of(settings.Atlas)
def atlas(run_dir, layer, n, cells_per_job, **options) -> None:
    """Compose a grid's icons into the atlas PNGs, icons, examples and atlas.json.

    Example: actlas atlas runs/x -l features.13 -n 20
    """
    from .stages.atlas import atlas as stage

    model = model_block_from(options, run_dir)
    click.echo(str(stage(run_dir, run_layer(run_dir, layer), n, model, cells_per_job=cells_per_job, **options)))


@main.command("class-atlas")
@click.option("--class", "cls", required=True, help="Class name, synset id or index.")
@class_options(settings.ClassAtlas)
def class_atlas(cls, run_dir, layer, **options) -> None:
    """Build the class activation atlas of one class of a run.

    Example: actlas class-atlas runs/demo --class "red fox" --filter top
    """
    from .stages.class_atlas import class_atlas as stage

    model = model_block_from(options, run_dir)
    path = stage(run_dir, run_layer(run_dir, layer), cls, model, progress=True, **render_settings(options), **options)
    click.echo(str(paths.atlas_png(path.parent)))


@main.command()
@run_argument
@layer_option()
@model_flags()
@options_of(settings.Concepts, skip=("layer", "seed", "size"))
@click.option(
    "--dictionary-size", default=settings.Concepts.size, show_default=True, help="Atoms (concepts) of the dictionary."
)
@click.option("--dictionary-seed", type=int, default=None, help="The dictionary's seed (default: --seed).")
@click.option(
    "--grid", "grids", multiple=True, type=int, help="Main grid sizes whose cells are decomposed (default: all)."
)
@click.option("--example-extent", default=settings.Atlas.example_extent, show_default=True, help="Exemplar crop side.")
@options_of(settings.RenderParams, skip=("seed",))
@seed_option
@device_option
@click.option("--threads", "-t", type=int, default=settings.Render.threads, show_default=True, help="Torch threads.")
@out_option("Output folder (default RUN/LAYER/concepts).")
def concepts(run_dir, layer, dictionary_size, dictionary_seed, **options) -> None:
    """Learn (or --load) a layer's dictionary of concepts, render their icons and summarise them.

    Example: actlas concepts runs/demo -l features.13 --dictionary-size 512 --k 16
    """
    from .stages.concepts import concepts as stage

    model = model_block_from(options, run_dir)
    render = render_settings(options)  # --size and --seed are the icons'; the dictionary's have their own flags
    options["size"] = dictionary_size
    if dictionary_seed is not None:
        options["seed"] = dictionary_seed
    click.echo(str(stage(run_dir, run_layer(run_dir, layer), model, progress=True, **render, **options)))


@main.command()
@click.option("--classes", nargs=2, required=True, help="Classes A and B (x = attribution to A minus B).")
@class_options(settings.Comparison)
def compare(classes, run_dir, layer, **options) -> None:
    """Compare two classes of a run: x = attribution to A minus B, y = a 1-D layout.

    Example: actlas compare runs/demo --classes snorkel "scuba diver"
    """
    from .stages.compare import compare as stage

    model = model_block_from(options, run_dir)
    layer = run_layer(run_dir, layer)
    path = stage(run_dir, layer, tuple(classes), model, progress=True, **render_settings(options), **options)
    click.echo(str(paths.compare_png(path.parent)))


# --------------------------------------------------------------------------- aligned atlases

align_name_option = click.option("--name", required=True, help="The alignment: its folder RUN/aligned/NAME.")
map_option = click.option(
    "--map", "map_id", required=True, help="One map: LAYER, or LAYER@MODEL for a layer of another model of the run."
)


def map_model(run_dir, map_id: str, params: dict):
    """The model of an aligned map: ``--model``, else the run's (``LAYER``) or the one in RUN/models/MODEL."""
    from .alignments import parse_map
    from .runinfo import model_of

    _, name = parse_map(map_id)
    if name is not None and params.get("model_source") is None:
        params["model_source"] = model_of(run_dir, name)
    return model_block_from(params, run_dir)


@main.command()
@run_argument
@align_name_option
@click.option(
    "--map", "maps", multiple=True, required=True, help="A map (LAYER, or LAYER@MODEL); two or more, in order."
)
@click.option(
    "--alignment",
    default=settings.Alignment.alignment,
    show_default=True,
    help="Pull between a photo's points in the maps (0: each laid out alone).",
)
@options_of(settings.Layout, skip=("whitening_eps", "whiten"))
@seed_option
def align(run_dir, name, maps, alignment, seed, **options) -> None:
    """Lay two or more maps of a run out together: the same place in each holds the same photos.

    Example: actlas align runs/cifar10 --name layer2-layer3 --map layer2 --map layer3
    """
    from .stages.align import align as stage

    click.echo(str(stage(run_dir, name, list(maps), alignment=alignment, seed=seed, **options)))


@main.command("align-grid")
@run_argument
@align_name_option
@map_option
@grid_option
@click.option(
    "--min-count", default=settings.Grid.min_count, show_default=True, help="Cells with fewer photos stay empty."
)
def align_grid(run_dir, name, map_id, n, min_count) -> None:
    """Bin one map of an alignment into an N x N grid of cells.

    Example: actlas align-grid runs/cifar10 --name layer2-layer3 --map layer3 -n 20
    """
    from .stages.align_grid import align_grid as stage

    click.echo(str(stage(run_dir, name, map_id, n, min_count=min_count)))


@main.command("align-render")
@run_argument
@align_name_option
@map_option
@grid_option
@render_job_options
def align_render(run_dir, name, map_id, n, batch, cells_per_job, device, threads, **params) -> None:
    """Render the icons of one batch of an aligned map's cells, with that map's model and layer.

    Example: actlas align-render runs/cifar10 --name layer3-blocks-3-cifar10-vit --map blocks.3@cifar10-vit -n 20
    """
    from .stages.align_render import align_render as stage

    model = map_model(run_dir, map_id, params)
    options = {"batch": batch, "cells_per_job": cells_per_job, "device": device, "threads": threads}
    click.echo(str(stage(run_dir, name, map_id, n, model, params=render_params(params), **options)))


@main.command("align-atlas")
@run_argument
@align_name_option
@map_option
@grid_option
@model_flags()
@click.option(
    "--cells-per-job",
    default=settings.Render.cells_per_job,
    show_default=True,
    help="Cells per render batch (as rendered).",
)
@options_of(settings.Atlas, skip=("example_extent",))
@seed_option
def align_atlas(run_dir, name, map_id, n, cells_per_job, **options) -> None:
    """Compose an aligned map's icons into its atlas files; atlas.json carries the alignment's measures.

    Example: actlas align-atlas runs/cifar10 --name layer2-layer3 --map layer3 -n 20
    """
    from .stages.align_atlas import align_atlas as stage

    model = map_model(run_dir, map_id, options)
    click.echo(str(stage(run_dir, name, map_id, n, model, cells_per_job=cells_per_job, **options)))


@main.command()
@run_argument
@click.option("--target", required=True, help="Target class the patch should produce.")
@layer_option("Layer whose icons are pasted; default: the run's first layer.")
@model_flags()
@options_of(settings.Patch, skip=("target", "layer"), aliases={"patches": "--patch"})
@seed_option
@device_option
@threads_option
@out_option("Output folder (default RUN/patches/NAME).")
@click.option(
    "--icons",
    "icons_run",
    default=None,
    type=click.Path(exists=True),
    help="Run whose LAYER folder holds the icons (default: RUN_DIR).",
)
@click.option(
    "--probe",
    type=click.Path(),
    default=None,
    help="A head: probe model's probe.npz (default: the run's RUN/probe/probe.npz).",
)
def patch(run_dir, target, layer, **options) -> None:
    """Paste a patch into photos and measure flips to a target class, against controls.

    Example: actlas patch runs/demo --source "grey whale" --target "great white shark" --patch cell:grid-16:3,4
    """
    from .stages.patch import patch as stage

    model = model_block_from(options, run_dir)
    path = stage(run_dir, target, model, layer=run_layer(run_dir, layer), **options)
    click.echo(str(paths.report_md(path.parent)))


@main.command()
@run_argument
@click.option("--openseadragon", type=click.Path(), default=None, help="OpenSeadragon build folder (node_modules).")
@click.option("--layer", "-l", "layers", multiple=True, help="Layers to show, in order (default: all).")
@click.option(
    "--atlas",
    "atlases",
    multiple=True,
    type=click.Path(),
    help="atlas.json files to show (default: every one in the run).",
)
@click.option(
    "--patches",
    "patches",
    multiple=True,
    type=click.Path(),
    help="Patch experiments' report.json files linked from the cells they tested "
    "(default: every RUN/patches/*/report.json).",
)
@click.option("--no-patches", is_flag=True, help="Link no patch experiment.")
@click.option(
    "--concepts",
    "concepts",
    multiple=True,
    type=click.Path(),
    help="A layer's concepts.json to show; repeat (default: every one in the run).",
)
@click.option("--no-concepts", is_flag=True, help="Show no concepts.")
def viewer(run_dir, openseadragon, layers, atlases, patches, no_patches, concepts, no_concepts) -> None:
    """Build RUN/viewer/ (deep-zoom tiles, data.json, the static viewer) from a run's atlases.

    Example: actlas viewer runs/demo
    """
    from .stages.viewer import viewer as stage

    patches = [] if no_patches else (list(patches) or None)
    concepts = [] if no_concepts else (list(concepts) or None)
    index = stage(Path(run_dir), openseadragon, list(layers) or None, list(atlases) or None, patches, concepts)
    click.echo(str(index))


@main.command()
@run_argument
@click.option("--config", required=True, help="The run's config as a JSON string.")
def manifest(run_dir, config) -> None:
    """Gather every stage's record into RUN/manifest.json and say where the atlases are.

    Example: actlas manifest runs/demo --config '{"layers": ["features.13"], "grid": {"sizes": [8, 16]}}'
    """
    from .stages.manifest import info
    from .stages.manifest import manifest as stage

    path = stage(run_dir, json.loads(config))
    for layer, entry in info(run_dir)["layers"].items():
        for png in entry["atlases"]:
            click.echo(f"atlas {layer}: {png}", err=True)
    click.echo(str(path))


# --------------------------------------------------------------------------- reading a run


@main.command()
@run_argument
@click.option(
    "--seal/--no-seal",
    "use_seal",
    default=True,
    show_default=True,
    help="Compare files with the seal the finished workflow left (.actlas-seal.json).",
)
def verify(run_dir, use_seal) -> None:
    """Check every shard store (each chunk's checksum, row counts) and artifact of a run; one line per problem.

    Exits 1 when anything is damaged. Example: actlas verify runs/demo
    """
    from .verify import verify_run

    problems = verify_run(run_dir, use_seal=use_seal)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        raise SystemExit(1)
    click.echo(f"{run_dir}: sound")


@main.command()
@run_argument
def info(run_dir) -> None:
    """Print one JSON object describing a finished run.

    Example: actlas info runs/demo
    """
    from .stages.manifest import info as read_info

    click.echo(json.dumps(read_info(run_dir), indent=1))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind; any but loopback exposes the run."
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
def serve(run_dir: Path, host: str, port: int, verbose: bool) -> None:
    """Serve the run's atlas viewer on http://127.0.0.1:PORT/ until Ctrl-C.

    Example: actlas serve runs/demo
    """
    import warnings

    from .serve import _is_loopback
    from .serve import serve as serve_run

    if not _is_loopback(host):
        click.echo(f"warning: serving on {host} makes the run readable from the network", err=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serve_run(run_dir, host=host, port=port, verbose=verbose)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
def export(run_dir: Path, out_dir: Path) -> None:
    """Write the run's atlas viewer as a static site to OUT_DIR.

    Example: actlas export runs/demo site/ && python -m http.server -d site
    """
    from .serve import export as export_run

    click.echo(f"wrote {export_run(run_dir, out_dir)}")


if __name__ == "__main__":
    sys.exit(main())
