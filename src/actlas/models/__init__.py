"""Models and their preprocessing: the model block, ``ModelSpec``, ``load_model`` and ``load_spec``.

A model is declared by one block (``model:`` in a config, the ``--model`` flags of the CLI, or
the keys of a card), or by its ``source`` string alone. Every field is optional and defaults to
what the source provides (``actlas.models.block.MODEL_FIELDS`` lists them):

- ``source``: one of the kinds in ``actlas.models.sources.SOURCES``: a card ``path/to/model.json``;
  ``torchvision:NAME[:WEIGHTS]``; ``timm:NAME`` (optional extra ``actlas[timm]``; timm's
  pretrained config gives the preprocessing); ``export:PATH.pt2`` (a ``torch.export`` program,
  unflattened so layers keep their module paths); ``pkg.mod:fn``, a factory returning an
  ``nn.Module`` (needs ``trust_code``); ``torchscript:PATH`` is refused (ScriptModules take no
  forward hooks: export with torch.export).
- ``kwargs``, ``weights`` (safetensors or a state dict; wrapper prefixes such as ``module.`` are
  stripped), ``input_size``, ``resize``, ``crop``, ``mean``, ``std``, ``labels``, ``synsets``,
  ``output`` (key or index of the logits when forward returns a dict, tuple or ModelOutput),
  ``padding``, ``layer_kinds``, ``trust_code``, ``allow_pickle``.

No code is run from data: a card's ``architecture`` may name a torchvision or timm builder or a
built-in actlas architecture (``actlas:cifar10_resnet20``, see ``actlas.models.archs``); anything
else, and any ``pkg.mod:fn`` source, needs ``trust_code: true`` (``--trust-code``, or the
environment variable ``ACTLAS_TRUST_CODE=1``), which a card cannot grant itself.

Preprocessing travels with the model, split in two as rendering needs it: ``spec.transform``
(PIL image -> float tensor [3, H, W] in [0, 1]: resize, centre crop) and ``spec.normalize``
(differentiable mean/std normalisation): the network sees ``model(spec.normalize(x))``.

Modules: ``spec`` (ModelSpec), ``block`` (the fields and flags), ``sources`` (the registry of
source kinds: how each builds, its label space and its files), ``card``, ``weights``, ``logits``,
``classes`` (the one class-name matcher), ``archs`` (built-in architectures), ``load``. The names
below are imported on first use, so importing one of these modules imports no other.
"""

_LAZY = {
    "ModelSpec": "actlas.models.spec",
    "load_model": "actlas.models.load",
    "load_spec": "actlas.models.load",
    "ModelDefaultWarning": "actlas.models.block",
    "resolve_class": "actlas.models.classes",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actlas.models' has no attribute {name!r}")
