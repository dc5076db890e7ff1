"""train.fsdp: two gloo processes sharding the U-Net train like one process on the global batch.

The sharded runs go through torchrun with this file as the script (its ``__main__`` block:
one ``run_training`` per process, then that process's held bytes written beside the run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
    subprocess_env,
    write_toml,
)

from openimagen.errors import ConfigError
from openimagen.train import export_stage, load_config, run_training
from openimagen.train.logging import read_metrics

STEPS, LR = 4, 1e-3
FILES = ("model", "ema", "optimizer")


def config(fsdp: bool, **train) -> dict:
    # no U-Net dropout: its masks come from each process's global RNG, so they depend on
    # how the batch is split (every other draw is per sample). Sample grids at the end: a
    # sharded EMA samples on both processes
    return make_config(
        train={"steps": STEPS, "batch_size": 8, "checkpoint_every": 2, "fsdp": fsdp, **train},
        log={"sample_every": STEPS, "sample_steps": 4},
    )


def torchrun(tmp_path: Path, cfg: dict, out: Path, *resume: str) -> dict[int, dict]:
    """Train ``cfg`` in 2 gloo processes; each process's ``TrainResult.held_bytes``."""
    path = write_toml(cfg, tmp_path / f"{out.name}.toml")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", __file__, str(path), str(out), *resume]  # fmt: skip
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return {r: json.loads((out / f"held-{r}.json").read_text()) for r in (0, 1)}


def checkpoint(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step_{step:08d}"


def assert_weights_close(want: dict, got: dict) -> None:
    """Gradients agree to ~1e-7, but AdamW divides by sqrt(v): where a gradient is ~0 (a conv
    bias before a group norm) rounding noise becomes a step of up to lr either way. So:
    nearly every element equal, none further apart than a few steps (as for checkpointing)."""
    assert want.keys() == got.keys()
    diffs = torch.cat([(got[k].double() - t.double()).abs().flatten() for k, t in want.items()])
    assert float((diffs > 1e-5).double().mean()) < 0.01
    assert float(diffs.max()) <= 3 * LR * STEPS


def assert_moments_close(want: dict, got: dict) -> None:
    """AdamW's moments after the weights drifted as assert_weights_close allows, measured
    against the largest moment of their kind (a bias before a group norm has a gradient of
    rounding noise, ~1e-10, whose moments match nothing): nearly all within 1e-3 of it, none
    beyond 5%."""
    assert want.keys() == got.keys()
    for kind in ("exp_avg", "exp_avg_sq"):
        keys = [k for k in want if k.endswith(f".{kind}")]
        scale = max(float(want[k].abs().max()) for k in keys)
        rel = torch.cat([(got[k] - want[k]).abs().flatten() for k in keys]) / scale
        assert float((rel > 1e-3).double().mean()) < 0.01, kind
        assert float(rel.max()) < 0.05, kind


def assert_each_holds_half(held: dict[int, dict], total: dict) -> None:
    """Two processes' held bytes (TrainResult.held_bytes): each about half of the weights,
    optimizer state and EMA of the one-process run, all parameters between them."""
    assert held[0]["parameters"] + held[1]["parameters"] == total["parameters"]
    for kind in ("weights", "optimizer", "ema"):
        shares = [held[r][kind] / total[kind] for r in (0, 1)]
        assert all(0.4 < s < 0.6 for s in shares), (kind, shares)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run in one process, and sharded over two (with activation checkpointing,
    which changes no result, so the two options are checked together)."""
    tmp = tmp_path_factory.mktemp("fsdp")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child processes: the same float reductions
    try:
        single = run_training(config(False), tmp / "single")
    finally:
        torch.set_num_threads(before)
    sharded = tmp / "sharded"
    held = torchrun(tmp, config(True, activation_checkpointing=True), sharded)
    return single, sharded, held


def test_the_option_defaults_off_and_is_refused_where_it_cannot_work(tmp_path):
    assert load_config(make_config()).train.fsdp is False
    with pytest.raises(ConfigError, match="train.fsdp"):
        load_config(write_toml(make_config(train={"fsdp": 1}), tmp_path / "int.toml"))
    with pytest.raises(ConfigError, match='train.fsdp = true with train.mixed_precision = "fp16"'):
        load_config(make_config(train={"fsdp": True, "mixed_precision": "fp16"}))
    with pytest.raises(ConfigError, match='train.fsdp = true with optim.name = "adafactor"'):
        load_config(make_config(train={"fsdp": True}, optim={"name": "adafactor"}))
    # one process has nothing to shard over: refused before anything is built or written
    with pytest.raises(ConfigError, match="has 1 process; start it with torchrun"):
        run_training(config(True), tmp_path / "one", dry_run=True)
    with pytest.raises(ConfigError, match="has 1 process"):
        run_training(config(True), tmp_path / "one")
    assert not (tmp_path / "one").exists()


def test_two_sharded_processes_make_the_steps_of_one(runs):
    single, sharded, held = runs
    two = read_metrics(sharded / "metrics.jsonl")
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))
    for a, b in zip(two, single.losses, strict=True):
        # same samples, same per-sample noise: only float summation order differs
        assert a["loss"] == pytest.approx(b, rel=1e-5)
    one = read_metrics(single.output_dir / "metrics.jsonl")
    for a, b in zip(two, one, strict=True):  # the gradient of the global mean loss in both
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    assert_each_holds_half(held, single.held_bytes)
    # sampled from the sharded EMA on both processes, written once
    assert (sharded / "samples" / f"step_{STEPS:08d}.png").is_file()


def test_a_sharded_run_writes_the_checkpoint_an_unsharded_one_writes(runs):
    single, sharded, _ = runs
    a, b = checkpoint(single.output_dir, STEPS), checkpoint(sharded, STEPS)
    sa, sb = (json.loads((p / "state.json").read_text()) for p in (a, b))
    # the optimizer's structure (parameter ids, groups, hyper-parameters) and schedule
    assert sa["optimizer"] == sb["optimizer"] and sa["scheduler"] == sb["scheduler"]
    assert sb["world_size"] == 2 and len(sb["rng"]) == 2
    for name in FILES:
        want, got = (load_file(p / f"{name}.safetensors") for p in (a, b))
        assert {k: (v.shape, v.dtype) for k, v in want.items()} == {
            k: (v.shape, v.dtype) for k, v in got.items()
        }
        if name == "optimizer":  # the moments follow the gradients closely
            for k, v in want.items():
                torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-7)
        else:
            assert_weights_close(want, got)


def test_a_sharded_checkpoint_resumes_exactly_under_fsdp(runs, tmp_path):
    _, sharded, _ = runs
    resumed = tmp_path / "resumed"
    torchrun(tmp_path, config(True, activation_checkpointing=True), resumed,
             "--resume", str(checkpoint(sharded, 2)))  # fmt: skip
    want = read_metrics(sharded / "metrics.jsonl")[2:]
    got = read_metrics(resumed / "metrics.jsonl")
    assert [(r["step"], r["loss"], r["grad_norm"]) for r in got] == [
        (r["step"], r["loss"], r["grad_norm"]) for r in want
    ]  # bit-equal
    # and so is every tensor of the last checkpoint, every process's RNG states included
    files = [json.loads((checkpoint(o, STEPS) / "state.json").read_text())["files"]
             for o in (sharded, resumed)]  # fmt: skip
    assert files[0] == files[1]


def test_a_sharded_checkpoint_resumes_in_one_process_and_exports(runs, tmp_path):
    single, sharded, _ = runs
    rest = run_training(config(False), tmp_path / "rest", resume=checkpoint(sharded, 2))
    assert rest.losses == pytest.approx(single.losses[2:], rel=1e-5)
    a, b = tmp_path / "export-single", tmp_path / "export-sharded"
    export_stage(single.output_dir, a)
    export_stage(sharded, b)
    configs = sorted(p.relative_to(a) for p in a.rglob("config.json"))
    assert configs and configs == sorted(p.relative_to(b) for p in b.rglob("config.json"))
    for path in configs:
        assert json.loads((a / path).read_text()) == json.loads((b / path).read_text())
    weights = sorted(p.relative_to(a) for p in a.rglob("model.safetensors"))
    assert weights
    for path in weights:
        assert_weights_close(load_file(a / path), load_file(b / path))


def if_stage_config(model: Path, stage: str, resolution: int, lowres: int | None,
                    fsdp: bool) -> dict:  # fmt: skip
    """Fine-tune stage ``stage`` of the imported tiny IF model ``model`` for STEPS steps."""
    from if_testutil import if_train_config  # tests/: not on the path of a torchrun child

    return if_train_config(model, stage, resolution, lowres, lr=LR, steps=STEPS, batch_size=4,
                           checkpoint_every=STEPS, fsdp=fsdp, activation_checkpointing=fsdp)  # fmt: skip


@pytest.fixture(scope="module")
def if_model(tmp_path_factory):
    from if_testutil import tiny_if_checkpoints
    from openimagen.interop import import_deepfloyd_if

    root = tmp_path_factory.mktemp("if")
    stage1, stage2 = tiny_if_checkpoints(root)
    return import_deepfloyd_if(stage1, stage2, root / "model")


@pytest.mark.parametrize(("stage", "resolution", "lowres"),
                         [("stage0_base16", 16, None), ("stage1_sr32", 32, 16)])  # fmt: skip
def test_an_imported_if_stage_is_sharded_and_trains_as_in_one_process(if_model, tmp_path, stage,
                                                                       resolution, lowres):  # fmt: skip
    """diffusers' U-Net (stage I with its attention pooling, stage II with its noise-level
    class embedding) cut into diffusers' own blocks, with its gradient checkpointing on."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_training(if_stage_config(if_model, stage, resolution, lowres, False),
                              tmp_path / "single")  # fmt: skip
    finally:
        torch.set_num_threads(before)
    sharded = tmp_path / "sharded"
    held = torchrun(tmp_path, if_stage_config(if_model, stage, resolution, lowres, True), sharded)
    two = read_metrics(sharded / "metrics.jsonl")
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))
    # the first step's loss to float order; later ones drift a little more than openimagen's
    # U-Net does (AdamW's steps on near-zero gradients, assert_weights_close)
    assert two[0]["loss"] == pytest.approx(single.losses[0], rel=1e-5)
    for a, b in zip(two, single.losses, strict=True):
        assert a["loss"] == pytest.approx(b, rel=1e-4)
    assert_each_holds_half(held, single.held_bytes)
    for name in FILES:  # the checkpoint an unsharded run writes, as for openimagen's U-Net
        want, got = (load_file(checkpoint(o, STEPS) / f"{name}.safetensors")
                     for o in (single.output_dir, sharded))  # fmt: skip
        if name == "optimizer":
            assert_moments_close(want, got)
        else:
            assert_weights_close(want, got)


if __name__ == "__main__":  # one process of a torchrun launch (see torchrun above)
    torch.set_num_threads(1)
    config_path, output = sys.argv[1], Path(sys.argv[2])
    resume = sys.argv[4] if len(sys.argv) > 4 else None
    result = run_training(config_path, output, resume=resume)
    rank = os.environ["RANK"]
    (output / f"held-{rank}.json").write_text(json.dumps(result.held_bytes), encoding="utf-8")
