"""``openimagen import-if``: what the model directory holds, and each refusal (one line, exit 2).

The checkpoints are the tiny random IF ones of tests/if_testutil.py, in the diffusers layout.
Refusals are run through the command line (``main``) so the test sees what a user sees: the
exit status, one line on stderr, and no OUT_DIR left behind.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cli_testutil import run
from if_testutil import LICENSE_TEXT, save_if_stage


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


# -- what an import writes --------------------------------------------------------------------
def test_import_writes_the_unets_unchanged_and_ifs_settings(if_checkpoints):
    stage1, stage2, model = if_checkpoints
    cascade = read_json(model / "cascade.json")
    assert cascade["text_conditioning"] == "deepfloyd-if" and cascade["text_max_length"] == 77
    assert cascade["text_encoder"] == "text_encoder" and cascade["version"] == 2
    first, second = (e["sampling"] for e in cascade["stages"])
    # IFPipeline / IFSuperResolutionPipeline defaults and their schedulers' thresholding
    assert (first["sampler"], first["steps"], first["guidance_weight"]) == ("ddpm", 100, 7.0)
    assert (second["sampler"], second["steps"], second["guidance_weight"]) == ("ddpm", 50, 4.0)
    assert second["noise_aug_level"] == pytest.approx(0.251)  # IF's noise_level=250
    assert first["threshold"] == second["threshold"] == "dynamic"
    assert first["dynamic_threshold_percentile"] == second["dynamic_threshold_percentile"] == 95.0
    for entry, source, top in zip(cascade["stages"], (stage1, stage2), (1.5, 1.0), strict=True):
        config = read_json(model / entry["path"] / "config.json")
        assert config["format"] == "openimagen-diffusers-stage"
        assert config["dynamic_threshold_max"] == top
        assert config["beta_schedule"] == "squaredcos_cap_v2"
        assert config["unet"]["prediction"] == "eps" and config["unet"]["learned_variance"]
        ours = load_file(model / entry["path"] / "model.safetensors")
        theirs = load_file(source / "unet" / "diffusion_pytorch_model.safetensors")
        assert set(ours) == {f"unet.{k}" for k in theirs}
        assert all(torch.equal(ours[f"unet.{k}"], v) for k, v in theirs.items())
        # the checkpoint's licence and model card travel with the stage, byte for byte
        upstream = model / entry["path"] / "upstream"
        assert (upstream / "LICENSE").read_text(encoding="utf-8") == LICENSE_TEXT
        assert (upstream / "README.md").read_bytes() == (source / "README.md").read_bytes()
    card = (model / "README.md").read_text(encoding="utf-8")
    assert "license: other" in card and "stage0_base16/upstream/LICENSE" in card


def test_import_cli_stage_one_only_in_fp16(if_checkpoints, tmp_path, capsys):
    out = tmp_path / "if-one"
    code, printed, err = run(["import-if", str(if_checkpoints[0]), str(out), "--dtype", "fp16"],
                             capsys)  # fmt: skip
    assert code == 0, err
    assert printed.strip() == str(out)
    cascade = read_json(out / "cascade.json")
    assert [e["path"] for e in cascade["stages"]] == ["stage0_base16"]
    weights = load_file(out / "stage0_base16" / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float16}
    assert (out / "text_encoder" / "tokenizer.json").is_file()


def test_generate_and_verify_work_on_an_imported_model(if_checkpoints, tmp_path, capsys):
    png = tmp_path / "if.png"
    code, _, err = run(["generate", "a red circle", "--model", str(if_checkpoints[2]), "--out",
                        str(png), "--steps", "2", "--quiet", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (32, 32)  # stage II's resolution: both stages ran
    code, printed, _ = run(["verify", str(png)], capsys)
    # the provenance chunks name the imported model and IF's sampling. The mark itself is not
    # asserted: a random 32x32 image, a quarter of it clipped to black or white, is too small
    # and too saturated for the DCT mark to be detected (exit 1), whatever made it.
    assert code in (0, 1) and "  prompt: a red circle" in printed and "  model_id: model" in printed
    assert '"guidance_weight": 7.0' in printed and '"noise_aug_level": 0.251' in printed


# -- refusals ---------------------------------------------------------------------------------
def refused(argv, capsys, out):
    """Run ``import-if ARGV OUT``; it must fail with exit 2, one line, and write nothing."""
    capsys.readouterr()  # drop what making the test's checkpoints printed
    code, printed, err = run(["import-if", *map(str, argv), str(out)], capsys)
    assert code == 2 and printed == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("openimagen import-if: error: "), err
    assert not out.exists()
    return lines[0]


def test_refuses_a_directory_that_is_not_an_if_checkpoint(if_checkpoints, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = refused([empty], capsys, tmp_path / "out")
    assert "not a DeepFloyd IF checkpoint" in line and "model_index.json" in line
    other = shutil.copytree(if_checkpoints[0], tmp_path / "sd")
    index = read_json(other / "model_index.json")
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name":
                                                        "StableDiffusionPipeline"}))  # fmt: skip
    line = refused([other], capsys, tmp_path / "out")
    assert "'StableDiffusionPipeline'" in line and "IFPipeline" in line
    line = refused([tmp_path / "missing"], capsys, tmp_path / "out")
    assert "STAGE1_DIR does not exist" in line


def test_refuses_stages_given_in_the_wrong_places(if_checkpoints, tmp_path, capsys):
    stage1, stage2, _ = if_checkpoints
    line = refused([stage1, stage1], capsys, tmp_path / "out")
    assert "is an IF stage I (IFPipeline" in line and "given as STAGE2_DIR" in line
    line = refused([stage2, stage2], capsys, tmp_path / "out")
    assert "is an IF stage II (IFSuperResolutionPipeline" in line and "STAGE1_DIR" in line


def test_refuses_a_checkpoint_without_its_tokenizer(if_checkpoints, tmp_path, capsys):
    stage1 = shutil.copytree(if_checkpoints[0], tmp_path / "IF-I-no-tokenizer")
    shutil.rmtree(stage1 / "tokenizer")
    line = refused([stage1, if_checkpoints[1]], capsys, tmp_path / "out")
    assert "no tokenizer" in line and "tokenizer/" in line


def test_refuses_stages_with_different_text_encoders(if_checkpoints, tmp_path, capsys):
    other = save_if_stage(tmp_path / "IF-II-other-t5", 2, seed=2, text_seed=5)
    line = refused([if_checkpoints[0], other], capsys, tmp_path / "out")
    assert "text encoder differs from stage I's" in line and "holds other values" in line
    wider = save_if_stage(tmp_path / "IF-II-wider-t5", 2, seed=2, text_dim=48)
    line = refused([if_checkpoints[0], wider], capsys, tmp_path / "out2")
    assert "text encoder differs from stage I's" in line and "d_model" in line


def test_refuses_bad_arguments_and_an_existing_out_dir(if_checkpoints, tmp_path, capsys):
    line = refused([], capsys, tmp_path / "out")  # OUT_DIR alone
    assert "two or three directories" in line
    existing = tmp_path / "exists"
    existing.mkdir()
    code, _, err = run(["import-if", str(if_checkpoints[0]), str(existing)], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert list(existing.iterdir()) == []  # left as it was


def test_eval_shapebench_runs_on_an_imported_model_in_bf16_offloaded(if_checkpoints, tmp_path,
                                                                     capsys):  # fmt: skip
    out = tmp_path / "sb"
    code, printed, err = run(["eval", "shapebench", "--model", str(if_checkpoints[2]),
                              "--num-prompts", "2", "--steps", "2", "--out", str(out), "--quiet",
                              "--device", "cpu", "--dtype", "bf16", "--offload"], capsys)  # fmt: skip
    assert code == 0, err
    report = read_json(out / "report.json")
    assert report["settings"]["resolution"] == [32, 32] and report["settings"]["stages"] == 2
    assert report["summary"]["all_correct"]["total"] == 2 * report["settings"]["num_per_prompt"]


def test_offload_keeps_unets_and_t5_on_the_cpu_and_changes_no_image(if_checkpoints):
    from openimagen import load

    model = if_checkpoints[2]
    plain = load(model, device="cpu")
    offloaded = load(model, device="cpu", offload=True)
    assert offloaded.offload_device == torch.device("cpu") and plain.offload_device is None
    assert offloaded.text_encoder.device == torch.device("cpu")
    sampling = [s.replace(steps=3) for s in plain.sampling]
    torch.testing.assert_close(offloaded.generate(["a red circle"], [4], sampling=sampling),
                               plain.generate(["a red circle"], [4], sampling=sampling),
                               rtol=0, atol=0)  # fmt: skip
    half = load(model, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for s in half.stages for p in s.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.text_encoder.model.parameters()} == {torch.bfloat16}


def test_import_reads_fp16_variants_and_sharded_t5(if_checkpoints, tmp_path, capsys):
    """The layout of the published IF-I repos' fp16 files: unet/...fp16.safetensors and a T5
    in fp16 shards with model.safetensors.index.fp16.json (and no plain files)."""
    from diffusers import UNet2DConditionModel
    from transformers import T5EncoderModel

    stage1 = shutil.copytree(if_checkpoints[0], tmp_path / "IF-I-fp16")
    unet = UNet2DConditionModel.from_pretrained(stage1 / "unet")
    t5 = T5EncoderModel.from_pretrained(stage1 / "text_encoder")
    shutil.rmtree(stage1 / "unet")
    shutil.rmtree(stage1 / "text_encoder")
    unet.half().save_pretrained(stage1 / "unet", variant="fp16")
    t5.half().save_pretrained(stage1 / "text_encoder", variant="fp16", max_shard_size="20KB")
    assert (stage1 / "text_encoder" / "model.safetensors.index.fp16.json").is_file()
    out = tmp_path / "model"
    code, _, err = run(["import-if", str(stage1), str(out)], capsys)
    assert code == 0, err
    weights = load_file(out / "stage0_base16" / "model.safetensors")
    assert all(torch.equal(weights[f"unet.{k}"], v) for k, v in unet.state_dict().items())
    from openimagen.text import load_text_encoder

    encoder = load_text_encoder(str(out / "text_encoder"), max_length=77)
    loaded = encoder.model.state_dict()
    assert all(torch.equal(loaded[k].half(), v) for k, v in t5.state_dict().items())


def test_refuses_a_sentencepiece_tokenizer_it_cannot_load(if_checkpoints, tmp_path, capsys):
    stage1 = shutil.copytree(if_checkpoints[0], tmp_path / "IF-I-spiece")
    shutil.rmtree(stage1 / "tokenizer")
    (stage1 / "tokenizer").mkdir()
    (stage1 / "tokenizer" / "spiece.model").write_bytes(b"not a sentencepiece model")
    (stage1 / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "T5Tokenizer"}), encoding="utf-8"
    )
    line = refused([stage1], capsys, tmp_path / "out")
    assert "its tokenizer cannot be loaded" in line and "sentencepiece" in line


def test_serve_answers_with_an_imported_model(if_checkpoints):
    """The OpenAI-shaped API on an imported model: the image is what generate draws."""
    import base64
    import io

    import httpx
    from PIL import Image

    from openimagen import load
    from openimagen.images import to_pil
    from openimagen.serve import ServerThread, ServeSettings, create_app
    from openimagen.watermark import embed_watermark

    cascade = load(if_checkpoints[2], device="cpu")
    app = create_app(cascade, ServeSettings(max_steps=4))
    body = {"prompt": "a red circle", "seed": 9, "steps": 3, "response_format": "b64_json"}
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        response = http.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    data = response.json()["data"][0]
    image = Image.open(io.BytesIO(base64.b64decode(data["b64_json"])))
    assert image.size == (32, 32) and image.text["model_id"] == "model"
    sampling = [s.replace(steps=3) for s in cascade.sampling]
    # exactly the library's image for that prompt and seed, plus the invisible mark
    expected = embed_watermark(to_pil(cascade.generate(["a red circle"], [9], sampling=sampling)))
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(expected))
