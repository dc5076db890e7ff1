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


# -- Content Credentials (C2PA) on images made by `openimagen generate` ----------------------------
@pytest.fixture(scope="module")
def model64(minilm, tmp_path_factory):
    """A tiny random cascade drawing 64 px images: large enough to carry the watermark."""
    from cascade_testutil import tiny_cascade

    return tiny_cascade(minilm, base_res=16, sr_res=64).save(tmp_path_factory.mktemp("m") / "tiny")


def generate(model_dir, out, *extra: str) -> None:
    from openimagen.cli import main

    assert main(["generate", "a red circle", "--model", str(model_dir), "--out", str(out),
                 "--seed", "3", "-q", *extra]) == 0  # fmt: skip


def test_verify_a_generated_image_reports_a_valid_manifest(model64, tmp_path, capsys):
    from openimagen.provenance import model_version

    generate(model64, tmp_path / "gen.png")
    capsys.readouterr()
    assert run(["verify", str(tmp_path / "gen.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'gen.png'}: watermarked")
    assert lines[1] == "  content credentials: valid (signer not trusted)"
    assert lines[2].startswith("    signer: CN=openimagen local development signer, O=")
    assert lines[2].endswith(" (es256)")
    assert lines[3].startswith("    issuer: CN=openimagen local development CA, O=")
    assert lines[4].startswith("    claim generator: openimagen ")
    version = model_version(model64)
    assert lines[5] == f"    action: c2pa.created, trainedAlgorithmicMedia by tiny {version}"
    assert "  prompt: a red circle" in lines  # the text chunk, not the manifest


def test_verify_after_one_pixel_changed_reports_tampered(model64, tmp_path, capsys):
    from c2pa_testutil import change_one_pixel

    generate(model64, tmp_path / "gen.png")
    edited = tmp_path / "edited.png"
    edited.write_bytes(change_one_pixel((tmp_path / "gen.png").read_bytes(), 5, 5))
    capsys.readouterr()
    assert run(["verify", str(edited)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "  content credentials: TAMPERED"
    assert out[2].startswith("    failure: assertion.dataHash.mismatch: ")
    assert run(["verify", "--json", str(edited)]) == 1
    assert json.loads(capsys.readouterr().out)["c2pa"]["state"] == "tampered"


def test_verify_a_png_from_elsewhere_reports_no_manifest(files, capsys):
    assert run(["verify", str(files / "plain.png"), str(files / "marked.jpg")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out.count("  content credentials: none (no C2PA manifest)") == 2


def test_generate_with_prompt_opt_in_and_user_certificate(model64, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    from c2pa_testutil import write_credentials

    cert, key = write_credentials(tmp_path / "keys", "Example Studio signer", "Example CA")
    monkeypatch.setenv("OPENIMAGEN_C2PA_CERT", str(cert))
    monkeypatch.setenv("OPENIMAGEN_C2PA_KEY", str(key))
    generate(model64, tmp_path / "gen.png", "--c2pa-include-prompt")
    capsys.readouterr()
    assert run(["verify", "--json", str(tmp_path / "gen.png")]) == 0
    report = json.loads(capsys.readouterr().out)["c2pa"]
    assert report["state"] == "valid" and report["actions"][0]["description"] == "a red circle"
    assert report["signer"]["subject"].startswith("CN=Example Studio signer")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert.read_bytes().split(b"-----END CERTIFICATE-----\n", 1)[1])
    assert run(["verify", "--c2pa-trust", str(ca), str(tmp_path / "gen.png")]) == 0
    assert "  content credentials: valid (trusted signer)" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["missing", "garbage", "key only"])
def test_a_bad_certificate_is_one_line_exit_2_and_nothing_written(problem, model64,
                                                                  tmp_path, capsys):  # fmt: skip
    from cli_testutil import run as run_main

    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nxx\n")
    (tmp_path / "key.pem").write_text("")
    options = {
        "missing": ["--c2pa-cert", str(tmp_path / "absent.pem"), "--c2pa-key", str(tmp_path / "key.pem")],
        "garbage": ["--c2pa-cert", str(tmp_path / "garbage.pem"), "--c2pa-key", str(tmp_path / "key.pem")],
        "key only": ["--c2pa-key", str(tmp_path / "key.pem")],
    }[problem]  # fmt: skip
    out = tmp_path / "gen.png"
    code, stdout, stderr = run_main(["generate", "a red circle", "--model", str(model64),
                                     "--out", str(out), "-q", *options], capsys)  # fmt: skip
    assert code == 2 and stdout == "" and not out.exists()
    [line] = stderr.splitlines()
    assert line.startswith("openimagen generate: error: c2pa ") and "Traceback" not in stderr
