# Two entry points, both idempotent and self-installing on a fresh machine:
#   make demo   install, then run the main job
#   make test   install, then run the test suite (what .ci/run calls)
# and the evaluation environment (docs/evaluation.md, "The evaluation environment"):
#   make eval-env   .venv-eval: torch + torchvision from PyPI, torch-fidelity, open_clip
#   make test-coco  the tests marked `coco`, in .venv-eval (make test runs them too)
PYTHON    ?= python3
VENV      ?= .venv
PY        := $(VENV)/bin/python
EVAL_VENV ?= .venv-eval
EVAL_PY   := $(EVAL_VENV)/bin/python
# the tests marked `coco` (they need .venv-eval); the default run leaves them out (pyproject)
COCO_TESTS := tests/eval/test_eval_coco.py tests/eval/test_eval_metrics.py
# a torch / torchvision pair PyPI has for this machine (on x86_64 a CUDA build, 5.5 GB, that
# also runs on the CPU; on aarch64 a CPU build); docs/evaluation.md
ifneq ($(filter aarch64 arm64,$(shell uname -m)),)
EVAL_TORCH := torch==2.9.1 torchvision==0.24.1
else
EVAL_TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: demo test test-coco lint install chromium eval-env

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: it resolves to the CPU wheel; an unpinned torch pulls GBs of CUDA packages
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# FID (torch-fidelity) and CLIP score (open_clip) need torchvision, and PyPI's torchvision
# cannot be imported beside the CPU torch 2.13.0 of .venv ("operator torchvision::nms does
# not exist"). PyPI's own pair ($(EVAL_TORCH)) is installed first and pinned, so the
# project's `torch>=2.5` installs nothing more.
$(EVAL_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EVAL_VENV)
	$(EVAL_PY) -m pip install --quiet --upgrade pip
	$(EVAL_PY) -m pip install --quiet $(EVAL_TORCH)
	$(EVAL_PY) -m pip install --quiet -e '.[eval]' 'pytest>=8'
	touch $@

eval-env: $(EVAL_VENV)/.installed

# The web page test drives Debian's headless Chromium (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/openimagen generate "two red circles above a blue square" --num-images 4 --out openimagen.png --overwrite

# lint-imports checks the architecture contract in .importlinter (docs/ARCHITECTURE.md, "Layers")
# The coco tests run in .venv-eval, the only environment that can import torch-fidelity and
# open_clip; `-m coco` there overrides the `-m 'not coco'` of the default run.
test: $(VENV)/.installed $(EVAL_VENV)/.installed chromium
	$(PY) -m ruff check src tests benchmarks tools
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
	$(EVAL_PY) -m pytest -q -m coco $(COCO_TESTS)

test-coco: $(EVAL_VENV)/.installed
	$(EVAL_PY) -m pytest -q -m coco $(COCO_TESTS)

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks tools
	$(VENV)/bin/lint-imports
