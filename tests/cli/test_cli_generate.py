"""``openimagen generate`` (cli/generate.py): files, provenance, refusals before sampling."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from cli_testutil import run
from openimagen.cli import main
from openimagen.images import read_png_metadata


def test_generate_writes_a_png_with_provenance(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "img.png"
    code, stdout, _ = run(
        [
            "generate",
            "a red circle",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--seed",
            "5",
            "-q",
        ],
        capsys,
    )
    assert code == 0 and stdout.strip() == str(out)
    with Image.open(out) as image:
        assert image.size == (32, 32) and image.mode == "RGB"
    meta = read_png_metadata(out)
    assert meta["prompt"] == "a red circle" and meta["seed"] == "5"
    assert meta["ai_generated"] == "true" and meta["model_id"] == "tiny"
    assert json.loads(meta["sampling"])[0]["sampler"] == "ddim"


def test_generate_several_images_and_a_grid_with_overrides(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "many.png"
    code, stdout, _ = run(
        [
            "generate",
            "a blue square",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "-n",
            "3",
            "--steps",
            "2",
            "--sampler",
            "ddpm",
            "--guidance",
            "1",
            "--precision",
            "bf16",
            "-q",
        ],
        capsys,
    )
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["many-0.png", "many-1.png", "many-2.png", "many-grid.png"]
    seeds = [read_png_metadata(tmp_path / f"many-{i}.png")["seed"] for i in range(3)]
    assert seeds == ["0", "1", "2"]
    settings = json.loads(read_png_metadata(tmp_path / "many-0.png")["sampling"])
    assert {s["sampler"] for s in settings} == {"ddpm"} and {s["steps"] for s in settings} == {2}
    assert {s["precision"] for s in settings} == {"bf16"}
    with Image.open(tmp_path / "many-grid.png") as grid:
        assert grid.size[0] > 32 * 2


def test_same_seed_same_file_content(tiny_model_dir, tmp_path, capsys):
    for name in ("a.png", "b.png"):
        assert (
            run(
                [
                    "generate",
                    "a red circle",
                    "--model",
                    str(tiny_model_dir),
                    "--out",
                    str(tmp_path / name),
                    "-q",
                ],
                capsys,
            )[0]
            == 0
        )
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert a.tobytes() == b.tobytes()


def test_dry_run_prints_resolved_settings_and_writes_nothing(tiny_model_dir, tmp_path, capsys):
    code, stdout, _ = run(
        [
            "generate",
            "x",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "o.png"),
            "--steps",
            "7",
            "--dry-run",
        ],
        capsys,
    )
    assert code == 0
    resolved = json.loads(stdout)
    assert [s["steps"] for s in resolved["stages"]] == [7, 7]
    assert resolved["stages"][1]["noise_aug_level"] == 0.2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "   "], "PROMPT='   ' is not valid"),
        (
            ["generate", "a", "--out", "x.jpg"],
            "--out='x.jpg' is not valid: expected a file name ending in .png",
        ),
        (
            ["generate", "a", "--model", "/no/such/dir"],
            "model directory /no/such/dir does not exist",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err and err.startswith("openimagen generate: error:")
    assert list(tmp_path.iterdir()) == []


def test_mismatched_model_directory_is_one_line(tiny_model_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    cfg = broken / "stage1_sr32" / "config.json"
    data = json.loads(cfg.read_text())
    data["lowres_resolution"] = 8
    cfg.write_text(json.dumps(data))
    code, _, err = run(
        ["generate", "a", "--model", str(broken), "--out", str(tmp_path / "o.png")], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "stage 1 expects 8x8 input" in err
    assert not (tmp_path / "o.png").exists()


def test_out_of_range_option_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "a", "-n", "0"])
    assert info.value.code == 2
    assert "expected an integer in [1, 64]" in capsys.readouterr().err


def test_eta_reaches_the_ddim_sampler_and_is_range_checked(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eta.png"
    argv = ["generate", "a red circle", "--model", str(tiny_model_dir), "--out", str(out)]
    code, _, _ = run([*argv, "--sampler", "ddim", "--steps", "2", "--eta", "0.7", "-q"], capsys)
    assert code == 0
    settings = json.loads(read_png_metadata(out)["sampling"])
    assert {s["eta"] for s in settings} == {0.7} and {s["sampler"] for s in settings} == {"ddim"}
    # eta changes the draw (stochastic DDIM), so the flag is not just recorded
    deterministic = tmp_path / "eta0.png"
    argv[-1] = str(deterministic)
    code, _, _ = run([*argv, "--sampler", "ddim", "--steps", "2", "--eta", "0", "-q"], capsys)
    assert code == 0
    with Image.open(out) as a, Image.open(deterministic) as b:
        assert a.tobytes() != b.tobytes()  # pixels, not just the recorded settings
    with pytest.raises(SystemExit) as info:
        main([*argv, "--eta", "1.5"])
    assert info.value.code == 2
    assert "expected a number in [0, 1]" in capsys.readouterr().err


def test_generate_refuses_a_blocked_prompt_and_writes_nothing(tiny_model_dir, tmp_path, capsys):
    policy = tmp_path / "block.txt"
    policy.write_text("# house rules\npurple dragon\n")
    out = tmp_path / "img.png"
    argv = ["generate", "a Purple  Dragon over a square", "--model", str(tiny_model_dir),
            "--out", str(out), "--policy", str(policy), "-q"]  # fmt: skip
    code, stdout, err = run(argv, capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "purple dragon" in err.lower() and not out.exists()
    # the same policy lets other prompts through
    argv[1] = "a purple square"
    code, _, _ = run(argv, capsys)
    assert code == 0 and out.is_file()


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail the test if anything is sampled: refusals must come before the model runs."""

    def refuse(*args, **kwargs):
        raise AssertionError("sampled although the command should have refused first")

    monkeypatch.setattr("openimagen.cascade.Cascade.generate", refuse)


def test_an_unwritable_output_is_refused_before_sampling(tiny_model_dir, tmp_path, capsys,
                                                         no_sampling):  # fmt: skip
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    code, _, err = run(
        ["generate", "a red circle", "--model", str(tiny_model_dir), "--out",
         str(blocker / "img.png"), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("openimagen generate: error: --out=") and "file.txt" in err
    assert ".tmp" not in err  # names the user's path, not a temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def _generate(model, out, *extra):
    return ["generate", "a red circle", "--model", str(model), "--out", str(out), "-q", *extra]


def test_generate_never_replaces_an_existing_file_unless_asked(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "img.png"
    out.write_bytes(b"someone's picture")
    code, stdout, err = run(_generate(tiny_model_dir, out), capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert str(out) in err and "--overwrite" in err
    assert out.read_bytes() == b"someone's picture"
    code, stdout, _ = run(_generate(tiny_model_dir, out, "--overwrite"), capsys)
    assert code == 0 and stdout.strip() == str(out)
    assert read_png_metadata(out)["prompt"] == "a red circle"


def test_a_multi_image_run_writes_all_of_its_files_or_none(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "many.png"
    (tmp_path / "many-grid.png").mkdir()  # the last file cannot be written
    code, _, err = run(_generate(tiny_model_dir, out, "-n", "2"), capsys)
    assert code == 2 and err.count("\n") == 1 and "many-grid.png" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many-grid.png"]
    # even with --overwrite a directory is not replaced, and nothing else is written
    code, _, err = run(_generate(tiny_model_dir, out, "-n", "2", "--overwrite"), capsys)
    assert code == 2 and "directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many-grid.png"]


def test_a_write_that_fails_after_sampling_leaves_nothing(tiny_model_dir, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    import os

    real_replace = os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_second)
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError(1, "no links")))
    code, _, err = run(_generate(tiny_model_dir, tmp_path / "m.png", "-n", "2"), capsys)
    assert code == 1 and err.count("\n") == 1 and "No space left" in err
    assert "m.png" in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []


def test_more_stages_than_the_model_has_is_refused(tiny_model_dir, tmp_path, capsys, no_sampling):
    code, _, err = run(_generate(tiny_model_dir, tmp_path / "o.png", "--stages", "5"), capsys)
    assert code == 2 and err.count("\n") == 1
    assert "--stages=5" in err and "1 to 2" in err
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_nan_weights_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, capsys):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "nan-model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "stage0_base16" / "model.safetensors"
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, weights)
    out = tmp_path / "o.png"
    code, _, err = run(_generate(broken, out), capsys)
    assert code == 2 and err.count("\n") == 1 and "not finite" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "prompt", ["a red\x00circle", "a \x1b]0;owned\x07 circle"], ids=["NUL", "escape"]
)
def test_control_characters_in_the_prompt_are_refused(prompt, tiny_model_dir, tmp_path, capsys,
                                                      no_sampling):  # fmt: skip
    argv = _generate(tiny_model_dir, tmp_path / "o.png")
    argv[1] = prompt
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "PROMPT=" in err and "control" in err
    assert "\x1b" not in err and "\x00" not in err  # shown escaped
    assert list(tmp_path.iterdir()) == []


def test_a_prompt_that_is_not_utf8_is_one_line_not_a_traceback(tiny_model_dir, tmp_path):
    out = tmp_path / "o.png"
    command = [sys.executable.encode(), b"-m", b"openimagen.cli", b"generate", b"\xff\xfe",
               b"--model", str(tiny_model_dir).encode(), b"--out", str(out).encode(), b"-q"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=120)
    err = done.stderr.decode("utf-8")
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("openimagen generate: error: PROMPT=") and "UTF-8" in err
    assert not out.exists()
