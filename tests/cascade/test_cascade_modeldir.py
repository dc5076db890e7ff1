"""Model directories (cascade/modeldir.py): plain files, save -> load, and validation."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from cascade_testutil import poisoned
from openimagen.cascade import Cascade
from openimagen.errors import InvalidArgumentError, ModelDirectoryError


@pytest.fixture()
def copy_of(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_model_directory_is_plain_files(saved):
    names = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert names == [
        "cascade.json",
        "stage0_base16/config.json",
        "stage0_base16/model.safetensors",
        "stage1_sr32/config.json",
        "stage1_sr32/model.safetensors",
    ]
    meta = json.loads((saved / "cascade.json").read_text())
    assert meta["format"] == "openimagen-cascade" and meta["version"] == 1
    assert meta["stages"][1]["sampling"]["noise_aug_level"] == 0.2


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelDirectoryError, match="does not exist"):
        Cascade.load(tmp_path / "nope")


def test_directory_without_cascade_json(tmp_path):
    with pytest.raises(ModelDirectoryError, match="cascade.json is missing"):
        Cascade.load(tmp_path)


def test_malformed_cascade_json(copy_of):
    (copy_of / "cascade.json").write_text("{not json")
    with pytest.raises(ModelDirectoryError, match="invalid JSON at line 1"):
        Cascade.load(copy_of)


def test_foreign_format(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(format="something-else"))
    with pytest.raises(ModelDirectoryError, match="not an openimagen model directory"):
        Cascade.load(copy_of)


def test_newer_version_is_refused(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(version=99))
    with pytest.raises(ModelDirectoryError, match="newer openimagen"):
        Cascade.load(copy_of)


def test_unknown_key_is_named(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(colour="red"))
    with pytest.raises(ModelDirectoryError, match="unknown key 'colour'"):
        Cascade.load(copy_of)


def test_missing_weights(copy_of):
    (copy_of / "stage1_sr32" / "model.safetensors").unlink()
    with pytest.raises(ModelDirectoryError, match="model.safetensors is missing"):
        Cascade.load(copy_of)


def test_corrupt_weights(copy_of):
    (copy_of / "stage0_base16" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelDirectoryError, match="not a readable safetensors file"):
        Cascade.load(copy_of)


def test_weights_that_do_not_match_the_config(copy_of):
    _edit_json(
        copy_of / "stage0_base16" / "config.json",
        lambda d: d["unet"].update(base_channels=d["unet"]["base_channels"] * 2),
    )
    with pytest.raises(ModelDirectoryError, match="has shape|missing tensors"):
        Cascade.load(copy_of)


def test_wrong_stage_resolutions(copy_of):
    _edit_json(copy_of / "stage1_sr32" / "config.json", lambda d: d.update(lowres_resolution=8))
    with pytest.raises(
        ModelDirectoryError, match="stage 1 expects 8x8 input but stage 0 makes 16x16"
    ):
        Cascade.load(copy_of)


def test_unknown_text_encoder(copy_of):
    _edit_json(copy_of / "cascade.json", lambda d: d.update(text_encoder="/no/such/encoder"))
    with pytest.raises(Exception, match="/no/such/encoder") as info:
        Cascade.load(copy_of)
    assert isinstance(info.value, (ModelDirectoryError, InvalidArgumentError))


def test_text_width_mismatch(copy_of):
    class Narrow:
        name, dim, max_length, cache_id = "narrow", 8, 16, "narrow"

    with pytest.raises(ModelDirectoryError, match="width 384, but the text encoder gives 8"):
        Cascade.load(copy_of, text_encoder=Narrow())


def test_save_refuses_to_overwrite_and_failed_save_leaves_nothing(
    cascade, saved, tmp_path, monkeypatch
):
    with pytest.raises(ModelDirectoryError, match="already exists"):
        cascade.save(saved)
    before = sorted(p.name for p in saved.parent.iterdir())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("openimagen.cascade.modeldir.atomic_save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        cascade.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".new")] == []
    with pytest.raises(OSError, match="disk full"):
        cascade.save(saved, overwrite=True)
    assert sorted(p.name for p in saved.parent.iterdir()) == before
    assert Cascade.load(saved).model_id == "tiny"


def test_fp16_weights_load_back_close(cascade, tmp_path):
    path = cascade.save(tmp_path / "half", dtype=torch.float16)
    loaded = Cascade.load(path)
    for a, b in zip(cascade.stages, loaded.stages, strict=True):
        for (name, p), q in zip(
            a.unet.state_dict().items(), b.unet.state_dict().values(), strict=True
        ):
            assert q.dtype == p.dtype, name
            torch.testing.assert_close(q, p.half().float(), rtol=0, atol=0)


def test_a_model_directory_with_nan_weights_is_refused_at_load(minilm, tmp_path):
    saved = poisoned(minilm, 1, float("nan")).save(tmp_path / "nan")
    with pytest.raises(ModelDirectoryError, match="stage1_sr32.*not finite"):
        Cascade.load(saved)


# -- writing without a text encoder (what export uses) ---------------------------------------
def test_a_model_directory_is_written_from_stages_alone(cascade, tmp_path, minilm):
    from openimagen.cascade import read_cascade_config, write_model_directory

    out = write_model_directory(
        tmp_path / "m", cascade.stages, cascade.sampling, text_encoder="minilm",
        text_max_length=minilm.max_length, records=[{"training.json": {"step": 3}}, None],
    )  # fmt: skip
    config = read_cascade_config(out)
    assert config.text_encoder == "minilm" and config.model_id == "m"
    assert [e.path for e in config.stages] == ["stage0_base16", "stage1_sr32"]
    assert json.loads((out / "stage0_base16" / "training.json").read_text()) == {"step": 3}
    assert not (out / "stage1_sr32" / "training.json").exists()
    loaded = Cascade.load(out, text_encoder=minilm)
    assert torch.equal(
        loaded.generate(["a red circle"], [5]), cascade.generate(["a red circle"], [5])
    )


def test_put_stage_appends_then_replaces_and_refuses_a_broken_chain(cascade, tmp_path):
    from openimagen.cascade import Stage, put_stage, read_cascade_config, write_model_directory

    out = write_model_directory(
        tmp_path / "m", cascade.stages[:1], cascade.sampling[:1], text_encoder="minilm",
        text_max_length=32,
    )  # fmt: skip
    sr = cascade.stages[1]
    assert put_stage(out, sr, cascade.sampling[1]) == "stage1_sr32"  # appended
    assert [e.path for e in read_cascade_config(out).stages] == ["stage0_base16", "stage1_sr32"]
    again = Stage(sr.config)  # another SR stage for the same input size replaces it
    assert put_stage(out, again, cascade.sampling[1].replace(steps=9)) == "stage1_sr32"
    entries = read_cascade_config(out).stages
    assert len(entries) == 2 and entries[1].sampling.steps == 9
    before = sorted(p.name for p in out.iterdir())
    bad = Stage(sr.config.replace(lowres_resolution=8))  # would be stage 2, fed 32x32
    with pytest.raises(ModelDirectoryError, match="stage 2 expects 8x8 input but stage 1 makes"):
        put_stage(out, bad, cascade.sampling[1])
    assert sorted(p.name for p in out.iterdir()) == before  # refused before writing anything
