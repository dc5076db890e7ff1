"""The command line as a program (cli/main.py): entry points, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_console_script_runs_in_a_fresh_process(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openimagen.cli",
            "generate",
            "a",
            "--model",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"openimagen generate: error: model directory {tmp_path / 'none'} does not exist or is not a directory"
    ]


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    # `openimagen info | head -1`: the reader closes early; no traceback on stderr
    code = (
        "import sys; from openimagen.cli import main\n"
        "sys.stdout.write = lambda *_: (_ for _ in ()).throw(BrokenPipeError(32, 'Broken pipe'))\n"
        "sys.exit(main(['info']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 141 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("module", "args", "usage"),
    [("openimagen", ["generate", "--help"], "usage: openimagen generate"),
     ("openimagen.train", ["--help"], "usage: openimagen train"),
     ("openimagen.serve", ["--help"], "usage: openimagen serve")],
)  # fmt: skip
def test_every_module_entry_point_runs_the_one_command_line(module, args, usage):
    done = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.startswith(usage), done.stderr


def test_building_the_parser_loads_neither_torch_nor_fastapi():
    # --help, --version and every refused option answer without loading the heavy libraries
    code = (
        "import sys; from openimagen.cli import build_parser; build_parser()\n"
        "print(sorted(m for m in ('torch', 'fastapi', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
