"""The architecture contract (.importlinter): it holds, and a wrong-way import breaks it.

``lint-imports`` runs on a copy of the package (and of tools/ and benchmarks/) into which
each test writes one import that the contract forbids; the check must fail and name it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the dev extra (make test)")

ROOT = Path(__file__).resolve().parents[1]
RUN = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


@pytest.fixture
def tree(tmp_path):
    """A copy of what the contract reads: src/openimagen, tools/, benchmarks/, .importlinter."""
    for name in ("src", "tools", "benchmarks"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns(
            "__pycache__", ".venv*", "*.safetensors"))  # fmt: skip
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def lint(tree: Path) -> subprocess.CompletedProcess:
    # the copy first on the path, so the contract reads it and not the installed package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), *sys.path])}
    return subprocess.run([sys.executable, "-c", RUN, "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_contract_holds_for_the_code_as_it_is(tree):
    done = lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("file", "line", "reported"),
    [("src/openimagen/diffusion/schedule.py", "import openimagen.cli",
      "openimagen.diffusion is not allowed to import openimagen.cli"),
     ("src/openimagen/cascade/schema.py", "from openimagen.train import config",
      "openimagen.cascade is not allowed to import openimagen.train"),
     ("src/openimagen/eval/prompts.py", "from openimagen.serve import http",
      "openimagen.eval is not allowed to import openimagen.serve"),
     ("src/openimagen/models/layers.py", "from openimagen.text import cache",
      "openimagen.models is not allowed to import openimagen.text"),  # siblings: independent
     ("src/openimagen/text/encoder.py", "from openimagen.text import huggingface",
      "No cycles are allowed in openimagen.text"),
     ("src/openimagen/eval/report.py", "from openimagen.fileio import _fsync_directory",
      "openimagen.eval.report:"),
     ("benchmarks/serve_load.py", "from openimagen.cascade.modeldir import STAGE_FORMAT_NAME",
      "which its __all__ does not list"),
     ("src/openimagen/eval/coco.py", "import open_clip",
      "openimagen.eval.coco -> open_clip")],
    ids=["diffusion->cli", "cascade->train", "eval->serve", "models->text", "cycle",
         "private name", "benchmark off the public API", "eval library outside eval.metrics"],
)  # fmt: skip
def test_a_forbidden_import_fails_the_check_and_is_named(tree, file, line, reported):
    add_line(tree / file, line)
    done = lint(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    assert reported in " ".join(done.stdout.split())  # rich wraps long lines
