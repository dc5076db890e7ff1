"""Two gloo processes on the CPU train exactly like one process with the same global batch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from train_testutil import (
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
    subprocess_env,
    write_toml,
)

from openimagen.train import run_training
from openimagen.train.logging import read_metrics


def test_two_processes_give_the_loss_and_gradient_of_one(tmp_path):
    config = make_config(train={"steps": 4, "batch_size": 8, "checkpoint_every": 4})
    path = write_toml(config, tmp_path / "config.toml")
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "openimagen.train", str(path), "--output", str(out)]  # fmt: skip
    done = subprocess.run(
        command, env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True, timeout=180
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    # the main process alone reports the run, naming the checkpoint it wrote
    checkpoint = out / "checkpoints" / "step_00000004"
    assert done.stdout.decode().splitlines() == [f"trained to step 4; checkpoint: {checkpoint}"]
    two = read_metrics(out / "metrics.jsonl")

    single = tmp_path / "single"
    run_training(config, single)
    one = read_metrics(single / "metrics.jsonl")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4]
    for a, b in zip(two, one, strict=True):
        # same samples, same per-sample noise: only float summation order differs
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        # the gradient (before clipping) is that of the global mean loss in both runs
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    # the checkpoint of the 2-process run records both processes' RNG states
    import json

    state = json.loads((out / "checkpoints" / "step_00000004" / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2


def test_accelerate_launch_runs_the_same_training(tmp_path):
    # `accelerate launch` as the launcher (one CPU process: its multi-CPU mode needs MPI;
    # several processes on CPUs go through torchrun, above; on GPUs `--multi_gpu` uses it too)
    config = make_config(train={"steps": 3, "batch_size": 4, "checkpoint_every": 3})
    path = write_toml(config, tmp_path / "config.toml")
    out = tmp_path / "launched"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes",
               "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "openimagen.train", str(path), "--output", str(out)]  # fmt: skip
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    launched = read_metrics(out / "metrics.jsonl")
    direct = read_metrics(run_training(config, tmp_path / "direct").output_dir / "metrics.jsonl")
    assert [r["step"] for r in launched] == [1, 2, 3]
    for a, b in zip(launched, direct, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
