"""The stages: one module per Snakemake rule, each with a function of the module's name.

A stage reads the run directory (``actlas.paths`` names every file), calls the pure core
(``actlas.layout``, ``actlas.grid``, ``actlas.viz.render``, ``actlas.atlas``, ...) and writes the
run directory. The CLI's command of the same name calls it (``actlas layout`` ->
``actlas.stages.layout.layout``); the rules call the CLI. Table of stages, inputs, outputs and
parameters: ``docs/architecture.md``.

Nothing is imported here, so importing one stage never imports the others.
"""
