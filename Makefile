# actlas: `make demo` builds an atlas of the shared MobileNetV2; `make test` runs the test suite.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.actlas-installed
CORES ?= 2
export NUMBA_CACHE_DIR ?= $(HOME)/.cache/actlas/numba
# rules call the `actlas` command: the environment's bin comes first
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: env demo demo-cifar demo-aligned patches patches-cifar test test-fast lint clean-demo

env: $(STAMP)

# The environment: created when missing, refreshed when the dependency files change.
$(STAMP): pyproject.toml constraints.txt $(wildcard package.json package-lock.json)
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,slurm]'
	if [ -f package.json ]; then npm ci --no-audit --no-fund --loglevel=error; fi
	$(BIN)/python -m actlas.warm
	touch $(STAMP)

demo: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --rerun-incomplete --quiet rules
	@$(BIN)/actlas info runs/demo | $(BIN)/python -c 'import json,sys; d=json.load(sys.stdin); [print("atlas:", p) for l in d["layers"].values() for p in l["atlases"]]; [print(name + ":", p) for k, name in (("class_atlases", "class atlas"), ("comparisons", "comparison")) for p in d.get(k, [])]; print("viewer: .venv/bin/actlas serve runs/demo")'

# CIFAR-10 at real scale (config/cifar10.yaml): the built-in ResNet-20 over the 50,000 cifar10-train
# photos, atlases at layer2 and layer3, ten class atlases, two comparisons, the viewer (runs/cifar10)
demo-cifar: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/cifar10.yaml --rerun-incomplete --quiet rules
	@$(BIN)/actlas info runs/cifar10 | $(BIN)/python -c 'import json,sys; d=json.load(sys.stdin); [print("atlas:", p) for l in d["layers"].values() for p in l["atlases"]]; [print(name + ":", p) for k, name in (("class_atlases", "class atlas"), ("comparisons", "comparison")) for p in d.get(k, [])]; print("viewer: .venv/bin/actlas serve runs/cifar10")'

# Aligned atlases on the demo's photos (config/demo-aligned.yaml): MobileNetV2 features.13 beside features.16
demo-aligned: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml config/demo-aligned.yaml --rerun-incomplete --quiet rules
	@$(BIN)/actlas info runs/demo | $(BIN)/python -c 'import json,sys; d=json.load(sys.stdin); [print(k + ":", [(p["maps"], p["ratio"], p["near"]) for p in a["pairs"]]) for k, a in d.get("alignments", {}).items()]; print("viewer: .venv/bin/actlas serve runs/demo (atlas switch: aligned)")'

# Patch experiments on the finished demo (config/patches.yaml): RUN/patches/*/report.md
patches: demo
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml config/patches.yaml --rerun-incomplete --quiet rules
	@ls runs/demo/patches/*/report.md

# Patch experiments on the CIFAR-10 run, rated on held-out cifar10-test photos (config/cifar10-patches.yaml)
patches-cifar: env
	$(BIN)/snakemake --cores $(CORES) --configfile config/cifar10.yaml config/cifar10-patches.yaml --rerun-incomplete --quiet rules
	@ls runs/cifar10/patches/*/report.md

test: env
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m 'not slow'

# ruff (check and format, configured in pyproject.toml) on the whole tree, then Snakemake's own lint
lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint --configfile config/demo.yaml

clean-demo:
	rm -rf runs/demo
