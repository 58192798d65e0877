# flashinfer-sm12x: the SM12x patch series on a pinned upstream FlashInfer.
# `make wheel` and `make test` are the two commands users run; see README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
FISERIES := $(PY) -m fiseries
ARCHS ?= 12.1a
AOT_MANIFEST ?=
HOST_ARCH ?=
DIST ?= dist
TRACE ?= aot_build/traces/sm121.json
PYTEST_ARGS ?=
CARRIER ?=
GPU_TEST_BUDGET ?=
GPU_TEST_ONLY ?=
# the bf16 SM90 fused-MoE module's wheel, for the MoE steps on an H200 (README, "GPU suite")
MOE90_WHEEL ?=

.PHONY: venv upstream apply export check pins rebase rebase-continue pr wheel engines coverage test test-fast gpu-test gpu-carrier clean

$(VENV)/.stamp: ci/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r ci/requirements.txt
	touch $@

venv: $(VENV)/.stamp

upstream: venv          ## pristine pinned upstream in build/upstream/<version>
	$(FISERIES) upstream

apply: venv             ## build/tree = pristine + one commit per patch + csrc_overrides/
	$(FISERIES) apply

export: venv            ## regenerate patches/ (and csrc_overrides/) from build/tree
	$(FISERIES) export

check: venv             ## re-apply + re-export, fail on any byte of drift; lock + tracking refs
	$(FISERIES) check

pins: venv              ## rewrite the pinned-upstream blocks of tracking.md / README.md from the lock
	$(FISERIES) pins

rebase: venv            ## make rebase UPSTREAM=<version> [UPSTREAM_SDIST=<file>]
	@test -n "$(UPSTREAM)" || { echo "usage: make rebase UPSTREAM=<version>"; exit 2; }
	$(FISERIES) rebase $(UPSTREAM) $(if $(UPSTREAM_SDIST),--sdist $(UPSTREAM_SDIST))

rebase-continue: venv   ## after resolving a rebase conflict in build/rebase
	$(FISERIES) rebase-continue

pr: venv                ## make pr PATCH=<n | target/n | name>: build/pr/<name>, branch pr/<name>
	@test -n "$(PATCH)" || { echo "usage: make pr PATCH=<number or name>"; exit 2; }
	$(FISERIES) pr $(PATCH)

wheel: venv             ## dist/: patched flashinfer-python + AOT wheel for ARCHS (default 12.1a) [HOST_ARCH=aarch64: cross build, DSL_PYTHON=<aarch64 python>]
	$(FISERIES) wheel --archs "$(ARCHS)" --dist $(DIST) $(if $(AOT_MANIFEST),--manifest $(AOT_MANIFEST)) \
	  $(if $(HOST_ARCH),--host-arch $(HOST_ARCH)) $(if $(DSL_PYTHON),--dsl-python "$(DSL_PYTHON)")

engines: venv           ## do the wheels in dist/ satisfy the engine pins engines.json gives this series?
	$(FISERIES) engines --dist $(DIST)

coverage: venv          ## make coverage WHEEL=<jit-cache wheel> [TRACE=...] [ARCHS=...]: traced modules all in it?
	@test -n "$(WHEEL)" || { echo "usage: make coverage WHEEL=<flashinfer_jit_cache wheel>"; exit 2; }
	$(FISERIES) coverage $(WHEEL) --trace $(TRACE) --archs "$(ARCHS)"

test: venv              ## the whole CPU suite (GPU tests skip with a reason)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv         ## the edit loop: tests that neither apply the series to the real upstream nor compile
	$(PY) -m pytest -m "not upstream and not compile" $(PYTEST_ARGS)

gpu-test: $(if $(CARRIER),,venv)  ## the GPU suite on this machine's GPU -> build/gpu-test/gpu-report.{md,json} [CARRIER=.devcarry GPU_TEST_BUDGET=s GPU_TEST_ONLY="step ..." MOE90_WHEEL=whl]
	$(if $(CARRIER),$(PYTHON) -m fiseries,$(FISERIES)) gpu-test --dist $(DIST) $(if $(CARRIER),--carrier $(CARRIER)) \
	  $(if $(GPU_TEST_BUDGET),--budget-s $(GPU_TEST_BUDGET)) $(if $(GPU_TEST_ONLY),--only $(GPU_TEST_ONLY)) \
	  $(if $(MOE90_WHEEL),--moe90-wheel $(MOE90_WHEEL))

gpu-carrier: apply      ## .devcarry/{1,2}: what gpu-test downloads, for a GPU machine without network (README)
	@test -n "$(AOT_WHEEL)" || { echo "usage: make gpu-carrier AOT_WHEEL=<jit-cache wheel for the GPU's arch>"; exit 2; }
	$(FISERIES) gpu-carrier --aot-wheel $(AOT_WHEEL) $(if $(MOE90_WHEEL),--moe90-wheel $(MOE90_WHEEL))

clean:
	rm -rf build dist
