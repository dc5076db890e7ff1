"""``python -m openimagen.train CONFIG.toml [--output DIR] [--resume auto|PATH] [--dry-run]``.

The same as ``openimagen train`` (handy under ``torchrun`` / ``accelerate launch``, which
start a Python module per process): it runs ``python -m openimagen train ...`` in this
process. It runs that module (:mod:`runpy`) instead of importing the command line, because
the training package sits below the command line in the layers (docs/ARCHITECTURE.md) and
imports nothing from it.
"""

import runpy
import sys

if __name__ == "__main__":
    sys.argv[1:1] = ["train"]
    runpy.run_module("openimagen", run_name="__main__", alter_sys=True)
