# Two entry points, both idempotent and self-installing on a fresh machine:
#   make demo   install, then run the main job
#   make test   install, then run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint install chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: it resolves to the CPU wheel; an unpinned torch pulls GBs of CUDA packages
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The web page test drives Debian's headless Chromium (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/openimagen generate "two red circles above a blue square" --num-images 4 --out openimagen.png --overwrite

# lint-imports checks the architecture contract in .importlinter (docs/ARCHITECTURE.md, "Layers")
test: $(VENV)/.installed chromium
	$(PY) -m ruff check src tests benchmarks tools
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks tools
	$(VENV)/bin/lint-imports
