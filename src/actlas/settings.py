"""Every setting of actlas with its default: the one home of defaults.

Each section of ``config/config.yaml`` is a frozen dataclass here (``collect``, ``layout``,
``grid``, ``render``, ``atlas``), and so is each item of the config's lists (``class_atlases``,
``comparisons``, ``patches``). The workflow fills a config from these, the CLI takes its option
defaults from them, and the stage functions take them as keyword defaults; ``tests/test_settings.py``
holds ``config/config.yaml`` and ``config/schema.yaml`` equal to them.

Pure data: no torch, no file access (the Snakefile imports this at parse time).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError
from .text import did_you_mean

__all__ = [
    "SECTIONS",
    "Alignment",
    "Atlas",
    "ClassAtlas",
    "Collect",
    "Comparison",
    "Concepts",
    "Grid",
    "Layout",
    "Patch",
    "Probe",
    "Render",
    "RenderParams",
    "Run",
    "choices",
    "fill",
    "from_mapping",
]

# The values a setting with a fixed set of them may take (the schema's enums, the CLI's choices).
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "cuml", "umap-learn")
SCHEDULES = ("constant", "cosine")
PARAMETERISATIONS = ("fft", "maco")
FILTERS = ("winner", "top", "both")
METHODS = ("tsne", "umap")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
# how a concept dictionary is learned (actlas.concepts.train.METHODS; auto: NMF for a non-negative layer,
# else an archetypal TopK autoencoder)
CONCEPT_METHODS = ("auto", "topk", "batchtopk", "archetypal", "dl", "nmf")


def _choice(default: str, values: tuple[str, ...]):
    """A field whose value is one of ``values`` (``choices`` reads them back)."""
    return field(default=default, metadata={"choices": values})


def choices(cls, name: str) -> tuple[str, ...] | None:
    """The values field ``name`` of settings class ``cls`` may take, or None when it is free."""
    return {f.name: f.metadata.get("choices") for f in fields(cls)}[name]


@dataclass(frozen=True)
class Collect:
    """collect: activations and attributions of one shard of images."""

    shard_size: int = 1000  # images per shard (one collect job each)
    positions: int = 1  # random positions per image, edges avoided (0 = every position)
    attr_top: int = 5  # top predicted classes whose attribution is stored
    batch_size: int = 32  # images per forward/backward pass
    chunk: int = 256  # images per committed chunk (resume granularity)
    workers: int = 1  # image decoding processes per job
    amp: bool = False  # bf16 autocast of the forward pass (a GPU speed-up; see BENCHMARKS.md)
    threads: int = 2  # torch threads per job


@dataclass(frozen=True)
class Layout:
    """layout: UMAP of one layer's activations, and the whitening used for rendering."""

    n_neighbors: int = 20  # UMAP neighbours
    min_dist: float = 0.01  # UMAP minimum distance
    metric: str = "cosine"  # UMAP metric (cosine, euclidean, ...)
    pca: int = 0  # PCA components before UMAP (0 = off)
    whiten: bool = False  # whiten activations before UMAP
    # ridge of the render whitening, a fraction of the mean variance: 10 tempers only the dominant
    # directions (1.0 gave lower faithfulness on every bench_icons row, most on a ViT; BENCHMARKS.md)
    whitening_eps: float = 10.0
    backend: str = _choice("auto", BACKENDS)  # auto (cuML when a GPU and cuML are present), cuml, umap-learn


@dataclass(frozen=True)
class Grid:
    """grid: bin the layout into N x N cells."""

    sizes: tuple[int, ...] = (10, 20)  # one atlas per size (cells per side)
    min_count: int = 3  # cells with fewer samples stay empty


@dataclass(frozen=True)
class RenderParams:
    """The icon optimisation: everything an icon depends on besides its direction, whitening, model and layer."""

    size: int = 96  # icon side in pixels (at least min_positions of the layer's positions; never over the input)
    min_positions: int = 4  # an icon spans at least this many layer positions a side (0 = off; BENCHMARKS.md)
    steps: int = 128  # optimisation steps
    lr: float = 0.025  # Adam learning rate (decay_power 1.5; fit_to_input lowers it for a smaller input)
    warmup: int = 0  # steps over which the learning rate ramps linearly up to lr (0 = none)
    # learning rate after the warm-up: constant, or cosine (a half cosine down towards lr_end)
    schedule: str = _choice("constant", SCHEDULES)
    lr_end: float = 0.0  # cosine: the learning rate it falls to, one step after the last
    # first steps that move only the low frequencies (4 cycles an icon), then all (0 = none; BENCHMARKS.md)
    coarse: int = 0
    # score each icon every N steps and at the end, keep its best image (0 = the last; BENCHMARKS.md)
    check_every: int = 16
    power: float = 4.0  # n in dot(h, v) * cos(h, v)^n
    tries: int = 1  # best of N by objective (each try's best-scoring image, check_every)
    # icons optimised together; a short batch is padded to it (an icon never depends on its batch), so it stays
    # small: on 2 CPU cores 8 is as fast an icon as 16 or 32 (BENCHMARKS.md); a GPU fills better at 64
    batch_size: int = 8
    pad: int = 0  # padding of the robustness transforms (0: half the cost, more faithful; BENCHMARKS.md)
    jitter: int = 4  # jitter of the robustness transforms, pixels (BENCHMARKS.md)
    scale: float = 0.1  # random scale of the robustness transforms: within 1 - scale .. 1 + scale
    rotate: int = 10  # random rotation of the robustness transforms: within +- rotate degrees
    decay_power: float = 1.5  # spectrum decay of the FFT parameterisation (fit_to_input steepens it; BENCHMARKS.md)
    param: str = _choice("fft", PARAMETERISATIONS)  # parameterisation: fft (optimise the spectrum) or maco (its phase)
    seed: int = 0  # render seed (the workflow passes the run's seed)
    amp: bool = False  # bf16 autocast while optimising icons (scores stay float32)
    # first steps whose ReLUs pass the gradient that would wake a dead unit (Lucid's redirected ReLU; 0 = none)
    redirect: int = 0

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if not out["redirect"]:
            del out["redirect"]  # only a redirected icon names it: the keys of the others stay
        return out


@dataclass(frozen=True)
class Render(RenderParams):
    """render: the icon optimisation (RenderParams) and how its jobs are cut."""

    cells_per_job: int = 64  # cells per render job
    threads: int = 2  # torch threads per job

    def params(self) -> RenderParams:
        """The optimisation settings alone (what an icon depends on)."""
        return RenderParams(**{f.name: getattr(self, f.name) for f in fields(RenderParams)})


@dataclass(frozen=True)
class Atlas:
    """atlas: tiling icons into the atlas images."""

    density: bool = True  # size icons by sample count
    n_examples: int = 6  # dataset examples per cell
    example_extent: float = 0.3  # example crop side, as a fraction of the network input
    min_cell: int = 96  # smaller icons are shown enlarged by a whole factor, nearest neighbour (pixels)


@dataclass(frozen=True)
class ClassAtlas:
    """An item of ``class_atlases``: the class atlas of one class."""

    cls: str | int = ""  # class name, synset id or index (config key: class)
    layer: str | None = None  # default: the run's first layer; one not in layers is collected and laid out too
    filter: str = _choice("winner", FILTERS)  # winner, top or both
    top: int = 2000  # at most this many samples per class
    grid: int = 8  # cells per side
    method: str = _choice("tsne", METHODS)  # tsne or umap
    min_count: int = 1  # cells with fewer samples stay empty
    n_examples: int = 4  # dataset examples per cell


@dataclass(frozen=True)
class Comparison:
    """An item of ``comparisons``: two classes side by side (x = attribution to A minus B)."""

    classes: tuple[str | int, ...] = ()  # [A, B]
    layer: str | None = None  # default: the run's first layer; one not in layers is collected and laid out too
    filter: str = _choice("top", FILTERS)  # winner, top or both
    top: int = 2000  # at most this many samples per class
    grid: int = 10  # cells per side
    method: str = _choice("tsne", METHODS)  # tsne or umap (the 1-D layout on y)
    min_count: int = 1  # cells with fewer samples stay empty
    n_examples: int = 4  # dataset examples per cell


@dataclass(frozen=True)
class Patch:
    """An item of ``patches``: a patch experiment."""

    target: str | int = ""  # the class the patch should produce
    name: str | None = None  # folder name under RUN/patches (default SOURCE-to-TARGET)
    source: str | int | None = None  # source class, reported on its own
    layer: str | None = None  # layer whose icons are pasted (default: the run's first)
    # cell:I,J, cell:DIR:I,J, example:DIR:I,J,E, image:PATH[:X0,Y0,X1,Y1], direction:PATH.npy (actlas.patches.spec)
    patches: tuple[str, ...] = ()
    discover: bool = False  # search the target's icons on half the photos, report on the other half
    candidates: int = 12  # icons searched by discover
    crops: int = 1  # per searched cell, its nearest dataset-patch crops added to discover's candidates
    # atlas folders under RUN/LAYER that discover searches (default: class-TARGET, grid-*, compare-*)
    search: tuple[str, ...] = ()
    sizes: tuple[float, ...] = (0.3, 0.45)  # patch sides, fractions of the input side
    static: str = _choice("bottom-right", CORNERS)  # the corner of the static protocol
    max_images: int = 96  # photos sampled from those not of the target (with evaluate: run photos searched)
    evaluate: tuple[str, ...] = ()  # held-out photo folders: rates on their source photos, search on the run's
    max_evaluate: int = 1000  # held-out source photos classified correctly, at most (a seeded choice)
    photo: str | None = None  # one photo: every candidate on it, p(source) and p(target) before and after the best
    batch_size: int = 64  # photos per forward pass


@dataclass(frozen=True)
class Alignment:
    """An item of ``alignments``: two or more atlases laid out so that the same region of each holds what the
    same photos activate (``actlas.alignments`` reads it; each map is one point a photo: its mean activation)."""

    # two or more: a layer of the run's model, or {layer: LAYER, model: SOURCE or block} of another model run
    # over the same photos (its folder RUN/models/NAME; name: to tell two blocks of one source apart)
    atlases: tuple = ()
    name: str | None = None  # folder under RUN/aligned (default: the maps' names joined by -)
    # pull between a photo's points in the maps (umap-learn's alignment_regularisation; 0: each map laid out
    # alone): 0.1 keeps each map's trustworthiness within 0.01 of its layout alone (BENCHMARKS.md, bench_align)
    alignment: float = 0.1
    sizes: tuple[int, ...] = ()  # grid sizes of the aligned atlases (default: grid.sizes)


@dataclass(frozen=True)
class Probe:
    """probe: the linear probe a ``head: probe`` model gets, trained on the run's labelled photos."""

    max_images: int = 5000  # labelled photos of the run it learns from, at most (a seeded choice)
    holdout: float = 0.2  # fraction of each class's photos held out to measure its accuracy
    c: float = 1.0  # inverse L2 strength of the logistic regression (on standardised features)
    evaluate: tuple[str, ...] = ()  # more labelled photo folders its accuracy is measured on
    batch_size: int = 64  # photos per forward pass


# steps of redirected ReLU gradient (RenderParams.redirect) for concept icons when render.redirect is 0: an atom
# of a post-ReLU layer leans on a few channels, 0 at the start image's centre, whose icon otherwise never moves
# (CIFAR-10 ResNet-20 layer3, 128 atoms: faithfulness p10 0.28 -> 0.93; BENCHMARKS.md)
CONCEPT_REDIRECT = 16


@dataclass(frozen=True)
class Concepts:
    """An item of ``concepts``: a dictionary of concepts of one layer, its icons and summaries."""

    layer: str | None = None  # a layer of layers (laid out; default: the run's first)
    method: str = _choice("auto", CONCEPT_METHODS)  # auto (nmf for a non-negative layer, else archetypal), ...
    size: int = 512  # atoms (concepts) of the dictionary
    k: int = 16  # active concepts per sample
    seed: int | None = None  # the dictionary's seed (default: the run's)
    load: str | None = None  # a .safetensors dictionary to use instead of learning one (W_dec (K, C), ...)
    heldout: float = 0.1  # share of the samples held out of training, on which the figures are measured
    stability: bool = False  # learn a second dictionary with another seed and match atoms (twice the cost)
    terms: int = 5  # concepts listed per atlas cell (its direction decomposed)
    n_examples: int = 8  # exemplar crops per concept (its highest codes, one per photo)
    # n in the concept icons' objective dot(h, v) * cos(h, v)^n, in place of render.power (the cells'): an atom is
    # one part of activations that hold several, and a lower n lets its icon keep the context its exemplars have
    # (CIFAR-10 ResNet-20 layer3, 512 concepts: icons classified as their concept's label 0.36 at 4 -> 0.48 at 2,
    # faithfulness median 0.95 -> 0.93; BENCHMARKS.md)
    icon_power: float = 2.0

    def __post_init__(self) -> None:
        if self.size < 1 or not 1 <= self.k <= self.size:
            raise ConfigError(f"concepts need size >= 1 and 1 <= k <= size, got size {self.size} and k {self.k}")
        if not 0 < self.heldout < 1:
            raise ConfigError(f"concepts.heldout must be between 0 and 1 (a share of the samples), got {self.heldout}")
        if self.load is not None and not str(self.load).endswith(".safetensors"):
            raise ConfigError(
                f"concepts.load must name a .safetensors file (no pickles: they run code), got {self.load}"
            )
        if self.terms < 1 or self.n_examples < 0:
            raise ConfigError("concepts.terms must be at least 1 and concepts.n_examples at least 0")
        if not self.icon_power >= 0:
            raise ConfigError(f"concepts.icon_power must be at least 0 (the cosine's power), got {self.icon_power}")


@dataclass(frozen=True)
class Run:
    """The top level of a config."""

    run_dir: str = "runs/default"
    model: Any = "../shared/assets/models/mobilenet_v2_imagenet.json"  # a source string or a model block
    images: tuple[str, ...] = ("../shared/assets/images/imagenet-val",)
    limit: int | None = None  # use this many images (deterministic choice under seed); null = all
    seed: int = 0
    device: str = _choice("auto", DEVICES)  # auto, cpu or cuda
    layers: tuple[str, ...] = ("features.13",)


# config section -> its dataclass
SECTIONS = {"collect": Collect, "layout": Layout, "grid": Grid, "render": Render, "atlas": Atlas, "probe": Probe}
# config list -> the dataclass of its items
ITEMS = {
    "class_atlases": ClassAtlas,
    "comparisons": Comparison,
    "patches": Patch,
    "concepts": Concepts,
    "alignments": Alignment,
}
# config key -> dataclass field, where a key is a Python keyword
ALIASES = {"class": "cls"}


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# fields a config section does not hold (the workflow renders with the run's seed)
NOT_IN_CONFIG = {Render: ("seed",)}


def as_config(obj) -> dict:
    """A settings dataclass as config data (tuples as lists, aliased keys as written in configs)."""
    back = {v: k for k, v in ALIASES.items()}
    skip = NOT_IN_CONFIG.get(type(obj), ())
    return {back.get(f.name, f.name): _plain(getattr(obj, f.name)) for f in fields(obj) if f.name not in skip}


def from_mapping(cls, data: dict | None, where: str = ""):
    """A settings dataclass from config data; unknown keys fail naming the closest valid one."""
    names = {f.name for f in fields(cls)} - set(NOT_IN_CONFIG.get(cls, ()))
    kw = {}
    for key, value in (data or {}).items():
        name = ALIASES.get(key, key)
        if name not in names:
            valid = sorted(ALIASES.get(n, n) for n in names)
            hint = did_you_mean(key, valid) or f"; valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown setting {where + '.' if where else ''}{key}{hint}")
        kw[name] = tuple(value) if isinstance(value, list) else value
        check_setting(cls, name, value, where)
    return cls(**kw)


def check_setting(cls, name: str, value, where: str = "") -> None:
    """A setting's value within its limits (``actlas.limits``): ``ConfigError`` in one line otherwise."""
    from .limits import check_known, check_number

    check_number(cls, name, value, where)
    check_known(cls, name, value, where)


def fill(config: dict) -> dict:
    """A config with every default filled in: sections, list items and the top level."""
    out = dict(config)
    for key, value in as_config(Run()).items():
        out.setdefault(key, value)
        check_setting(Run, key, out[key])
    for section, cls in SECTIONS.items():
        out[section] = as_config(from_mapping(cls, config.get(section), section))
    for name, cls in ITEMS.items():
        out[name] = [as_config(from_mapping(cls, e, name)) for e in config.get(name, [])]
    return out


def defaults() -> dict:
    """Every default as config data (what ``config/config.yaml`` holds)."""
    return fill({})


def replace(obj, **changes):
    """``dataclasses.replace`` ignoring ``None`` values (CLI options left unset)."""
    return dataclasses.replace(obj, **{k: v for k, v in changes.items() if v is not None})
