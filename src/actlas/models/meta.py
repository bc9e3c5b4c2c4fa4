"""A model's layers checked before any job runs: the architecture built without weights on torch's meta device.

``check_layers(model, layers)`` (the Snakefile calls it at parse time) builds the architecture on the meta
device (no memory, no weights read, nothing downloaded), lists its ``named_modules()`` and runs one forward
of the configured input size, recording which modules run, how often, and which ones the logits depend on.
Each configured layer must exist (the CLI's line, "did you mean"), run exactly once in the forward, and reach
the logits; the model must take RGB input and its output must give the logits. Each problem is the one line
the first job would print.

What one forward tells (``Architecture``) is cached per user (``cache_dir``), keyed by a digest of the model
block, the small files it names, the libraries' versions and actlas' model code: a repeated parse reads one
JSON file and imports no torch.

Only what runs no user code is built: torchvision, timm and actlas builders, cards naming them, and
transformers from a local folder. A factory, a card naming other code, an exported program, or an
architecture the meta device cannot build is left to the first job, which checks the same in one line each.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import LayerError, ModelError, UserError

RECORD_VERSION = 2
LIBRARIES = ("torch", "torchvision", "timm", "transformers")
BATCH = 2  # images in the meta forward: a layer whose first dimension is not the batch shows
SMALL_FILE = 1 << 20  # files hashed by content below this size; by size and time above (weights)


@dataclass
class Architecture:
    """What one meta forward of a model tells, as JSON-able data.

    ``layers``: every ``named_modules()`` path; ``calls``: layer -> times it ran in the forward (None: the
    forward could not run on the meta device); ``reaching``: the layers the logits depend on (None: not known,
    e.g. a model with a declared ``head``); ``problem``: the one line a model fails with whatever its layers
    (RGB input it cannot take, an output that gives no logits), or None; ``unbatched``: layer -> its output shape
    for a batch of two, for the layers whose first dimension is not the batch (sequence-first).
    """

    layers: list[str]
    calls: dict[str, int] | None = None
    reaching: list[str] | None = None
    problem: str | None = None
    problem_type: str = "ModelError"
    unbatched: dict[str, list[int]] = field(default_factory=dict)


def cache_dir() -> Path:
    """The per-user folder of cached architectures: ``$XDG_CACHE_HOME/actlas/architectures`` (``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "actlas" / "architectures"


def _file_digest(path: Path) -> str:
    try:
        stat = path.stat()
        if stat.st_size < SMALL_FILE and path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return "missing"


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _code_digest() -> str:
    """A digest of actlas' model and layer code (what builds a model and runs its forward)."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent / "nn"):
        for file in sorted(folder.glob("*.py")):
            h.update(file.name.encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def cache_key(block: Mapping) -> str:
    """The digest an architecture is cached under: the block, the files it names, library versions, actlas' code."""
    from .sources import model_files

    files = {f: _file_digest(Path(f)) for f in model_files(dict(block))}
    source = str(block.get("source", ""))
    if source.startswith("transformers:"):
        config = Path(source.split(":", 1)[1]) / "config.json"
        files[str(config)] = _file_digest(config)
    text = json.dumps(
        {"v": RECORD_VERSION, "block": block, "files": files, "versions": _versions(), "code": _code_digest()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def buildable(block: Mapping) -> bool:
    """Whether the architecture of ``block`` can be built offline without running user code: torchvision, timm
    and actlas builders, cards naming one, transformers from a local folder (never a factory or exported file)."""
    from .builders import BUILDER_PREFIXES
    from .card import read_card
    from .sources import source_of

    source = str(block.get("source", ""))
    try:
        kind = source_of(source).kind
    except ModelError:
        return False
    if kind == "card":
        try:
            architecture = str(read_card(Path(source))["architecture"])
        except (UserError, OSError):
            return False  # the first job names what is wrong with the card
        # a known builder's spelling (torch-free: a name no library has fails the build in the job's own line)
        return any(architecture.startswith(prefix) for prefix, _ in BUILDER_PREFIXES)
    if kind == "transformers":
        return (Path(source.split(":", 1)[1]) / "config.json").is_file()
    return kind in ("torchvision", "timm", "actlas")


def _offline(block: Mapping) -> dict:
    """The block with every way of downloading weights turned off (a card's own ``pretrained`` or ``weights``
    kwargs too): the meta build needs the architecture only."""
    out = dict(block)
    source = str(out.get("source", ""))
    kwargs = dict(out.get("kwargs") or {})
    if source.endswith(".json"):
        from .card import read_card

        card_kwargs = read_card(Path(source)).get("kwargs") or {}
        if card_kwargs.get("pretrained"):
            kwargs["pretrained"] = False
        if card_kwargs.get("weights"):
            kwargs["weights"] = None
    else:
        kwargs.pop("pretrained", None)
    if kwargs or "kwargs" in out:
        out["kwargs"] = kwargs
    return out


def _preimport(source: str) -> None:
    """Import the source's library outside the meta device: an import that makes tensors must make real ones."""
    import importlib

    names = ["torchvision"]
    if source.endswith(".json"):
        from .card import read_card

        source = str(read_card(Path(source)).get("architecture", ""))
    if "timm" in source:
        names += ["timm", "huggingface_hub.hf_api"]
    if source.startswith("transformers:"):
        names += ["transformers"]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _graph(root) -> set[int]:
    """ids of every autograd node ``root`` (a grad_fn) depends on, itself included."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))
    return seen


def describe(block: Mapping) -> Architecture | None:
    """Build ``block``'s architecture on the meta device and run one forward -> ``Architecture``; None when it
    cannot be built that way (see ``buildable``; or the meta device cannot run its builder). A ``UserError``
    of the build itself (a bad card, kwargs its builder does not take) propagates."""
    import warnings

    import torch

    from .block import model_block
    from .load import _load

    if not buildable(block):
        return None
    _preimport(str(block.get("source", "")))
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            net, spec = _load(model_block(_offline(block)), with_weights=False)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a builder the meta device cannot run: the first job checks instead
        return None
    from .heads import parse_head

    return inspect_model(net, tuple(spec.input_size), head=parse_head(block.get("head")).kind)


def inspect_model(net, input_size: tuple[int, int], head: str = "logits") -> Architecture:
    """One forward of a (2, 3, H, W) input on ``net``'s device (the meta device: no memory, no compute) ->
    ``Architecture``: its modules, how often each runs, which ones its logits depend on. ``head``: the kind of the
    model's declared head (``actlas.models.heads``): a probe's or text head's logits are linear in the head's
    features, so the layers must reach those; ``none`` has no logits (the forward runs with the head off)."""
    import torch

    from ..nn.kinds import output_tensor
    from ..nn.layers import forward_checked
    from .headhook import head_mode

    names = [n for n, _ in net.named_modules() if n]
    calls: dict[str, int] = {}
    grad_fns: dict[str, list] = {}
    unbatched: dict[str, list[int]] = {}

    def hook(_m, inputs, out, name):
        calls[name] = calls.get(name, 0) + 1
        if isinstance(out, torch.Tensor) and out.requires_grad and any(out is i for i in inputs):
            out = out.view_as(out)  # a node of its own: a module that returns its input (Identity) is told apart
        tensor = output_tensor(out)
        grad_fns.setdefault(name, []).append(getattr(tensor, "grad_fn", None))
        if isinstance(tensor, torch.Tensor) and (tensor.ndim == 0 or tensor.shape[0] != BATCH):
            unbatched[name] = list(tensor.shape)
        return out

    modules = dict(net.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: hook(m, i, o, n)) for n in names]
    device = next((p.device for p in net.parameters()), torch.device("meta"))
    x = torch.zeros(BATCH, 3, *input_size, device=device, requires_grad=head != "none")
    try:
        if head == "none":  # no class head: no logits to reach, nothing attributed
            with torch.no_grad(), head_mode(net, "off"):
                forward_checked(net, x)
            return Architecture(names, calls, None, None, unbatched=unbatched)
        if head == "logits":
            logits = forward_checked(net, x)
        else:  # a probe (not trained yet) or text embeddings: their logits are linear in the head's features
            with head_mode(net, "features"):
                logits = forward_checked(net, x)
    except UserError as err:  # RGB input it cannot take; an output that holds no logits (model.output)
        return Architecture(names, None, None, str(err), type(err).__name__)
    except Exception:  # noqa: BLE001 - an op the meta device cannot run: layers are checked by name only
        return Architecture(names, None, None, None)
    finally:
        for h in handles:
            h.remove()
    if logits.ndim != 2:
        return Architecture(
            names,
            calls,
            None,
            f"the model's output has shape {list(logits.shape)} per batch, not (batch, classes): set model.output to "
            "the logits of a classifier (or give the encoder a head: model.head)",
        )
    graph = _graph(logits.grad_fn)
    reaching = [n for n, fns in grad_fns.items() if any(f is not None and id(f) in graph for f in fns)]
    unknown = [n for n, fns in grad_fns.items() if all(f is None for f in fns)]  # no graph: cannot tell
    return Architecture(names, calls, reaching + unknown, None, unbatched=unbatched)


def _read(key: str) -> Architecture | None:
    try:
        data = json.loads((cache_dir() / f"{key}.json").read_text())
        return Architecture(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write(key: str, found: Architecture) -> None:
    """Cache ``found`` under ``key`` atomically; a cache that cannot be written is only slower, never an error."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(found), f)
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass


def architecture(model, cache: bool = True) -> Architecture | None:
    """``describe`` of a model (a source string or block), read from the per-user cache when it is there."""
    from .block import model_block

    block = model_block(model) if not isinstance(model, Mapping) else dict(model)
    if not buildable(block):
        return None
    key = cache_key(block)
    found = _read(key) if cache else None
    if found is None:
        found = describe(block)
        if found is not None and cache:
            _write(key, found)
    return found


def _raise_problem(found: Architecture) -> None:
    if found.problem:
        raise (LayerError if found.problem_type == "LayerError" else ModelError)(found.problem)


def check_layers(model, layers: list[str], cache: bool = True) -> Architecture | None:
    """Refuse, before any job runs, layers the model cannot give (``LayerError``, one line each: unknown with
    the closest, never run by the forward, run more than once, the logits do not depend on them) and a model
    whose forward fails on RGB input or gives no logits (``LayerError``/``ModelError``). Returns what was
    checked, or None when the model cannot be built without running user code (its first job checks)."""
    found = architecture(model, cache)
    if found is None:
        return None
    _raise_problem(found)
    known = set(found.layers)
    for layer in layers:
        if layer not in known:
            from ..nn.problems import unknown_layer

            raise unknown_layer(layer, found.layers)
    if found.calls is None:
        return found
    from ..nn.problems import not_run_layer, shared_layer, unbatched_layer, unreached_layer

    for layer in layers:
        calls = found.calls.get(layer, 0)
        if calls == 0:
            raise not_run_layer(layer)
        if calls > 1:
            raise shared_layer(layer, calls)
        if layer in found.unbatched:
            raise unbatched_layer(layer, found.unbatched[layer], BATCH)
        if found.reaching is not None and layer not in found.reaching:
            raise unreached_layer(layer)
    return found
