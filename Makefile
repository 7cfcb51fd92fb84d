# wiseft: `make demo` runs Figure 1 on the embedded default; `make test` runs the tests;
# `make reproduce` runs every notebook of a preset (PRESET=mini by default, PRESET=paper on a GPU machine;
# SMOKE=1 for smoke runs, PROGRESS=1 for the studies' progress bars in the notebooks) and writes outputs/PRESET/index.md and the offline gallery outputs/PRESET/site/index.html.
# All set up .venv (Python 3.10+; torch, open_clip, papermill, ...) and Fashion-MNIST first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check
OUT ?= outputs/mini/fig1_id_vs_ood
PRESET ?= mini

.PHONY: demo test test-fast setup data browser lab bench reproduce notebooks clean-outputs lock check

# requirements.lock: the exact versions the tests passed with (`make lock` regenerates it with pip-compile);
# LOCK= (empty) installs from pyproject.toml's ranges instead.
LOCK ?= $(wildcard requirements.lock)

$(VENV)/.installed: pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "== installing wiseft and its dependencies into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install $(PIP_FLAGS) --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
	@$(PY) -m pip install $(PIP_FLAGS) $(if $(LOCK),-c $(LOCK),) -e ".[dev,lab]" 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $@

lock: $(VENV)/.installed
	@$(PY) -m pip freeze --exclude-editable 2>/dev/null | grep -v "^#" > $(VENV)/installed.txt
	@$(VENV)/bin/pip-compile --quiet --extra dev --extra lab --strip-extras --no-emit-index-url --no-emit-find-links \
		-c $(VENV)/installed.txt -o requirements.lock pyproject.toml
	@sed -i '/^wiseft @ /,+1d' requirements.lock  # the extras name wiseft[studies]: not a pin of its own
	@echo "== requirements.lock: the versions installed in $(VENV), resolved from pyproject.toml by pip-compile"

# dependencies consistent, lint, and the layer contract (import-linter, [tool.importlinter] in pyproject.toml)
check: $(VENV)/.installed
	@$(PY) -m pip check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports --no-cache

setup: $(VENV)/.installed data

data: $(VENV)/.installed
	@echo "== Fashion-MNIST"
	@$(VENV)/bin/wiseft data --ensure

# headless Chromium for the browser test of the gallery (tests/test_site.py): Debian's chromium and chromium-driver,
# installed where root can (else that test skips, or fails under CI=1)
browser:
	@if [ -x /usr/bin/chromedriver ]; then echo "== chromium: /usr/bin/chromedriver is installed"; \
	elif [ "$$(id -u)" = 0 ]; then echo "== chromium and chromium-driver (apt-get, for the browser test)"; \
		export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium chromium-driver >/dev/null \
		|| { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } \
		|| echo "== apt-get could not install chromium: the browser test skips (fails under CI)"; \
	else echo "== no /usr/bin/chromedriver and not root: the browser test skips (sudo apt-get install chromium chromium-driver)"; fi

demo: setup
	@echo "== Figure 1 on the embedded default (its notebook through papermill; the notebook's output below)"
	@$(VENV)/bin/wiseft run fig1_id_vs_ood --params params/mini/fig1_id_vs_ood.yaml --set output_dir=$(OUT) --notebook
	@echo "== done: $(OUT)/fig1_id_vs_ood.ipynb, fig1_id_vs_ood.png, curve.csv, summary.md, results.sqlite"
	@cat $(OUT)/summary.md

# the tests in TEST_WORKERS processes (pytest-xdist; each gets its share of the cores, the slow ones start first)
TEST_WORKERS ?= 2

test: setup browser
	@WISEFT_REQUIRE_DATA=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=10

test-fast: setup
	@$(PY) -m pytest -q -m "not slow"

reproduce: setup
	@echo "== every notebook of the $(PRESET) preset (shared runs computed once) -> outputs/$(PRESET)/index.md"
	@$(PY) -m wiseft_lib.reproduce --preset $(PRESET) --profile $(if $(SMOKE),--smoke,) $(if $(PROGRESS),--progress,) $(if $(filter mini,$(PRESET)),--cell-timeout 3600,)

notebooks: $(VENV)/.installed
	@$(PY) -m wiseft_lib.studies --sync-notebooks

lab: setup
	@$(VENV)/bin/jupyter lab $(if $(shell [ "$$(id -u)" = 0 ] && echo root),--allow-root,) notebooks/

bench: setup
	@$(PY) bench/run_all.py $(BENCH_ARGS)

clean-outputs:
	rm -rf outputs/mini outputs/paper
