"""``openimagen verify`` (cli/verify.py): the mark, the chunks (escaped), grep-like exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_testutil import call as run
from openimagen.errors import InvalidArgumentError
from openimagen.images import save_png


def textured(size: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture
def files(tmp_path):
    marked = save_png(textured(), tmp_path / "marked.png", {"prompt": "a red circle", "seed": 4})
    with Image.open(marked) as image:  # the mark survives a JPEG q90 copy; the chunks do not
        image.convert("RGB").save(tmp_path / "marked.jpg", quality=90)
    textured().save(tmp_path / "plain.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    return tmp_path


def test_verify_marked_image_prints_the_chunks_and_exits_0(files, capsys):
    assert run(["verify", str(files / "marked.png"), str(files / "marked.jpg")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{files / 'marked.png'}: watermarked (score ")
    assert "  ai_generated: true" in out and "  prompt: a red circle" in out
    assert "  seed: 4" in out and "  watermark: openimagen-dct8-v1" in out
    jpeg_line = next(line for line in out if line.startswith(str(files / "marked.jpg")))
    assert ": watermarked" in jpeg_line and out[-1] == "  no provenance text chunks"


def test_verify_unmarked_image_exits_1(files, capsys):
    assert run(["verify", str(files / "marked.png"), str(files / "plain.png")]) == 1
    out = capsys.readouterr().out
    assert f"{files / 'plain.png'}: no openimagen watermark found" in out


def test_verify_json_output(files, capsys):
    assert run(["verify", "--json", str(files / "marked.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["marked"] is True and result["metadata"]["seed"] == "4"
    assert result["score"] >= result["threshold"]


def test_verify_unreadable_image_raises_after_reporting_the_others(files, capsys):
    with pytest.raises(InvalidArgumentError, match="broken.png") as error:
        run(["verify", str(files / "marked.png"), str(files / "broken.png")])
    assert "\n" not in str(error.value)  # printed by the CLI as one line
    assert ": watermarked" in capsys.readouterr().out
    with pytest.raises(InvalidArgumentError, match="missing.png"):
        run(["verify", str(files / "missing.png")])


def test_verify_shows_control_characters_in_chunks_escaped(tmp_path, capsys):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "a red circle\x1b]0;owned\x07\x1b[2J\r\nseed: 99")
    info.add_text("evil\x1b[31m", "\x9b6n")
    path = tmp_path / "crafted\x1b[1m.png"
    textured().save(path, pnginfo=info)
    assert run(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r\x9b")
    lines = out.splitlines()
    assert lines[0].startswith(str(tmp_path / "crafted\\x1b[1m.png") + ": no openimagen")
    assert r"  prompt: a red circle\x1b]0;owned\x07\x1b[2J\r\nseed: 99" in lines
    assert r"  evil\x1b[31m: \x9b6n" in lines


def test_verify_error_for_an_unreadable_crafted_name_is_escaped(tmp_path):
    path = tmp_path / "bad\x1b[2J.png"
    path.write_bytes(b"not an image")
    with pytest.raises(InvalidArgumentError) as info:
        run(["verify", str(path)])
    assert "\x1b" not in str(info.value) and r"bad\x1b[2J.png" in str(info.value)
