"""``python -m openimagen.train CONFIG.toml [--output DIR] [--resume auto|PATH] [--dry-run]``.

The same as ``openimagen train`` (it is that command); handy under ``torchrun`` /
``accelerate launch``, which start a Python module or script per process.
"""

from __future__ import annotations

import sys

from openimagen.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
