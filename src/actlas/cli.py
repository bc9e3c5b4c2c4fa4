"""The ``actlas`` command: a thin click group, one command per library function."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import run as run_mod
from .render import RenderParams


class ActlasGroup(click.Group):
    """Turns library errors into one clear line (no traceback) at the CLI boundary."""

    def invoke(self, ctx):
        from .layers import LayerError
        from .models import ModelError
        from .store import StoreError

        try:
            return super().invoke(ctx)
        except (LayerError, ModelError, StoreError, FileNotFoundError, ValueError) as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=ActlasGroup)
@click.version_option(package_name="actlas")
def main() -> None:
    """Activation Atlases for any PyTorch image model.

    Example: actlas layers ../shared/assets/models/mobilenet_v2_imagenet.json
    """


model_option = click.option("--model", "-m", required=True, help="Card .json, torchvision:NAME, torchscript:PATH or pkg.mod:fn.")
threads_option = click.option("--threads", type=int, default=None, help="Torch CPU threads.")
device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")


@main.command()
@click.argument("model")
@click.option("--all", "show_all", is_flag=True, help="Also list modules whose output is not a 4-D map.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
def layers(model: str, show_all: bool, as_json: bool) -> None:
    """List a model's layers with output shape and channels.

    Example: actlas layers ../shared/assets/models/mobilenet_v2_imagenet.json
    """
    from .layers import list_layers
    from .models import load_model

    net, spec = load_model(model)
    rows = list_layers(net, spec.input_size)
    if not show_all:
        rows = [r for r in rows if r["shape"] and len(r["shape"]) == 3]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else "-"
        click.echo(f"{r['layer']:40s} {r['type']:24s} {shape}")


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Run directory.")
@model_option
@click.option("--shard-size", default=1000, show_default=True)
@click.option("--limit", type=int, default=None, help="Use this many images (deterministic choice).")
@click.option("--seed", default=0, show_default=True)
def shards(images, run_dir, model, shard_size, limit, seed) -> None:
    """Split an image set into shard lists under RUN/shards.

    Example: actlas shards ../shared/assets/images/imagenet-val --run runs/x -m card.json --limit 200
    """
    paths = run_mod.shards(list(images), run_dir, model, shard_size=shard_size, limit=limit, seed=seed)
    click.echo(f"{len(paths)} shards in {Path(run_dir) / 'shards'}")


@main.command()
@click.argument("shard", type=click.Path(exists=True))
@click.argument("out", type=click.Path())
@model_option
@click.option("--layer", "-l", "layers", multiple=True, required=True, help="Layer path; repeat for several.")
@click.option("--positions", default=1, show_default=True, help="Positions per image (0 = all).")
@click.option("--attr-top", default=5, show_default=True, help="Top classes whose attribution is stored.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--chunk", default=256, show_default=True, help="Images per committed chunk.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Image decoding processes.")
@device_option
@threads_option
@click.option("--amp/--no-amp", default=False, show_default=True, help="bf16 autocast for the forward pass.")
def collect(shard, out, model, layers, positions, attr_top, batch_size, chunk, seed, workers, device, threads,
            amp) -> None:
    """Collect activations and attributions for one shard list into a Zarr store.

    Example: actlas collect runs/x/shards/shard-00000.txt runs/x/collect/shard-00000.zarr -m card.json -l features.13
    """
    from .collect import collect as collect_fn

    summary = collect_fn(shard, out, model, list(layers), positions=positions, attr_top=attr_top,
                         batch_size=batch_size, chunk=chunk, seed=seed, workers=workers, device=device, threads=threads,
                         amp=amp)
    click.echo(json.dumps(summary))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--layer", "-l", required=True)
@click.option("--n-neighbors", default=20, show_default=True)
@click.option("--min-dist", default=0.01, show_default=True)
@click.option("--metric", default="cosine", show_default=True)
@click.option("--pca", default=0, show_default=True, help="PCA components before UMAP (0 = off).")
@click.option("--whiten/--no-whiten", default=False, show_default=True, help="Whiten before UMAP.")
@click.option("--whitening-eps", default=1.0, show_default=True, help="Ridge of the render whitening.")
@click.option("--seed", default=0, show_default=True)
@click.option("--backend", type=click.Choice(["auto", "cuml", "umap-learn"]), default="auto", show_default=True)
def layout(run_dir, layer, n_neighbors, min_dist, metric, pca, whiten, whitening_eps, seed, backend) -> None:
    """Lay out a layer's activations on the plane with UMAP.

    Example: actlas layout runs/x -l features.13
    """
    path = run_mod.layout(run_dir, layer, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, pca=pca,
                          whiten=whiten, whitening_eps=whitening_eps, seed=seed, backend=backend)
    click.echo(str(path))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--layer", "-l", required=True)
@click.option("--n", "n", default=20, show_default=True, help="Cells per side.")
@click.option("--min-count", default=3, show_default=True)
def grid(run_dir, layer, n, min_count) -> None:
    """Bin a layer's layout into an N x N grid of cells.

    Example: actlas grid runs/x -l features.13 --n 20
    """
    click.echo(str(run_mod.grid(run_dir, layer, n, min_count=min_count)))


def _render_options(f):
    defaults = RenderParams()
    for name in reversed(list(defaults.to_json())):
        f = click.option(f"--{name.replace('_', '-')}", default=getattr(defaults, name), show_default=True,
                         type=type(getattr(defaults, name)))(f)
    return f


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--layer", "-l", required=True)
@click.option("--n", "n", default=20, show_default=True)
@model_option
@click.option("--batch", default=0, show_default=True, help="Which batch of cells.")
@click.option("--cells-per-job", default=0, show_default=True, help="Cells per batch (0 = all).")
@click.option("--out-dir", type=click.Path(), default=None, help="Folder holding cells.npz (default RUN/LAYER/grid-N).")
@_render_options
@device_option
@threads_option
def render(run_dir, layer, n, model, batch, cells_per_job, out_dir, device, threads, **render_params) -> None:
    """Render the icons of a grid's cells (one batch, or all).

    Example: actlas render runs/x -l features.13 --n 20 -m card.json --steps 128
    """
    path = run_mod.render(run_dir, layer, n, model, batch=batch, cells_per_job=cells_per_job,
                          params=RenderParams(**render_params), device=device, threads=threads, out_dir=out_dir)
    click.echo(str(path))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--layer", "-l", required=True)
@click.option("--n", "n", default=20, show_default=True)
@model_option
@click.option("--density/--no-density", default=True, show_default=True, help="Size icons by sample count.")
@click.option("--n-examples", default=6, show_default=True)
@click.option("--example-extent", default=0.3, show_default=True, help="Example crop side, fraction of the input.")
@click.option("--out-dir", type=click.Path(), default=None, help="Folder holding cells.npz (default RUN/LAYER/grid-N).")
def atlas(run_dir, layer, n, model, density, n_examples, example_extent, out_dir) -> None:
    """Compose a grid's icons into the atlas PNGs, icons, examples and atlas.json.

    Example: actlas atlas runs/x -l features.13 --n 20 -m card.json
    """
    click.echo(str(run_mod.atlas(run_dir, layer, n, model, density=density, n_examples=n_examples,
                                 example_extent=example_extent, out_dir=out_dir)))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--config-json", required=True, help="The run's config as a JSON string.")
def manifest(run_dir, config_json) -> None:
    """Gather every stage's record into RUN/manifest.json and say where the atlases are.

    Example: actlas manifest runs/demo --config-json '{"layers": ["features.13"], "grid": {"sizes": [8, 16]}}'
    """
    path = run_mod.manifest(run_dir, json.loads(config_json))
    for layer, entry in run_mod.info(run_dir)["layers"].items():
        for png in entry["atlases"]:
            click.echo(f"atlas {layer}: {png}", err=True)
    click.echo(str(path))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
def info(run_dir) -> None:
    """Print one JSON object describing a finished run.

    Example: actlas info runs/demo
    """
    click.echo(json.dumps(run_mod.info(run_dir), indent=1))


@main.command("build-viewer")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--openseadragon", type=click.Path(), default=None, help="OpenSeadragon build folder (node_modules).")
@click.option("--layer", "-l", "layers", multiple=True, help="Layers to show, in order (default: all).")
def build_viewer(run_dir, openseadragon, layers) -> None:
    """Build RUN/viewer/ (deep-zoom tiles, data.json, the static viewer) from a run's atlases.

    Example: actlas build-viewer runs/demo
    """
    from .serve import build_viewer as build

    click.echo(str(build(Path(run_dir), Path(openseadragon) if openseadragon else None, list(layers) or None)))


from .serve import export_command, serve_command  # noqa: E402

from .classes import class_atlas_command, compare_command  # noqa: E402
from .patches import patch_command  # noqa: E402

main.add_command(serve_command)
main.add_command(export_command)
main.add_command(class_atlas_command)
main.add_command(compare_command)
main.add_command(patch_command)


if __name__ == "__main__":
    sys.exit(main())
