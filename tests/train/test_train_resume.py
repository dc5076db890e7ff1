"""Exact resume after kill -9, crash-safe checkpoint writes, damaged and foreign checkpoints."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from train_testutil import (
    losses_by_step,
    make_config,
    one_thread,  # noqa: F401  (autouse fixture)
    start_training,
    write_toml,
)

from openimagen.errors import ModelDirectoryError
from openimagen.train import run_training
from openimagen.train.checkpoint import KILL_ENV, latest_pointer, list_checkpoints

STEPS = 24


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted in-process run: its loss at every step, and its output directory."""
    out = tmp_path_factory.mktemp("reference")
    # module-scoped, so it runs before the function-scoped one_thread fixture: set the thread
    # count here too, as the child processes it is compared with run on one thread
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_training(make_config(), out)
    finally:
        torch.set_num_threads(before)
    assert result.step == STEPS and len(result.losses) == STEPS
    return result.losses, out


def assert_same_losses(output: Path, expected: list[float]) -> None:
    got = losses_by_step(output)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step, loss in enumerate(expected, 1):
        assert got[step] == pytest.approx(loss, abs=1e-6, rel=0), f"step {step}"


def test_kill_9_at_a_random_step_then_resume_repeats_the_uninterrupted_run(reference, tmp_path):
    expected, _ = reference
    config = write_toml(make_config(), tmp_path / "config.toml")
    out = tmp_path / "run"
    kill_after = random.Random().randint(5, 18)
    proc = start_training(config, out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").is_file() and max(losses_by_step(out), default=0) >= kill_after:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    killed_at = max(losses_by_step(out))
    assert killed_at < STEPS, "the run finished before it could be killed"

    result = run_training(config, out, resume="auto")
    assert result.resumed_from is not None
    resumed_step = int(result.resumed_from.name.split("_")[1])
    assert resumed_step <= killed_at and resumed_step % 4 == 0
    assert result.step == STEPS and len(result.losses) == STEPS - resumed_step
    assert_same_losses(out, expected)


def test_a_kill_during_a_checkpoint_write_is_never_used(reference, tmp_path):
    expected, _ = reference
    config = write_toml(make_config(), tmp_path / "config.toml")
    out = tmp_path / "run"
    proc = start_training(config, out, **{KILL_ENV: "12"})
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    root = out / "checkpoints"
    # the half-written step 12 exists only as a temporary directory; step 8 is the latest
    assert [p.name for p in list_checkpoints(root)] == ["step_00000004", "step_00000008"]
    assert list(root.glob(".tmp-step_00000012-*"))
    assert latest_pointer(root) == root / "step_00000008"

    result = run_training(config, out, resume="auto")
    assert result.resumed_from == root / "step_00000008"
    assert_same_losses(out, expected)
    assert not list(root.glob(".tmp-*"))  # cleaned up by the next checkpoint


def _digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def test_a_damaged_checkpoint_is_refused_or_skipped_and_left_untouched(reference, tmp_path):
    expected, ref_out = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    root = out / "checkpoints"
    newest = list_checkpoints(root)[-1]  # step 24
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    before = _digest(newest)

    with pytest.raises(ModelDirectoryError, match="damaged"):
        run_training(make_config(train={"steps": 28}), out, resume=newest)
    assert _digest(newest) == before

    # "auto" skips it and continues from the previous intact checkpoint (step 20)
    result = run_training(make_config(train={"steps": 22}), out, resume="auto")
    assert result.resumed_from == root / "step_00000020"
    assert result.losses[0] == pytest.approx(expected[20], abs=1e-6)


def test_foreign_checkpoints_and_reused_output_directories_are_refused(reference, tmp_path):
    _, ref_out = reference
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "state.json").write_text(json.dumps({"format": "some-other-trainer"}))
    with pytest.raises(ModelDirectoryError, match="not an openimagen training checkpoint"):
        run_training(make_config(), tmp_path / "a", resume=foreign)
    with pytest.raises(ModelDirectoryError, match="has no state.json"):
        run_training(make_config(), tmp_path / "b", resume=tmp_path)
    with pytest.raises(ModelDirectoryError, match="step_00000009 does not exist"):
        run_training(make_config(), tmp_path / "c", resume=tmp_path / "step_00000009")

    checkpoint = list_checkpoints(ref_out / "checkpoints")[-1]
    before = _digest(checkpoint)
    other_stage = make_config(stage={"schedule": "linear"})
    with pytest.raises(ModelDirectoryError, match="different stage"):
        run_training(other_stage, tmp_path / "c", resume=checkpoint)
    # a fresh run pointed at an output directory that already has checkpoints
    with pytest.raises(ModelDirectoryError, match="--resume auto"):
        run_training(make_config(), ref_out)
    assert _digest(checkpoint) == before


def test_a_checkpoint_from_before_a_defaulted_field_was_added_still_resumes(reference, tmp_path):
    """state.json written without unet.downsample_first (added later, default false)."""
    _, ref_out = reference
    pristine = list_checkpoints(ref_out / "checkpoints")[-1]
    old = tmp_path / "old" / pristine.name
    shutil.copytree(pristine, old)
    state = json.loads((old / "state.json").read_text())
    del state["stage_config"]["unet"]["downsample_first"]
    (old / "state.json").write_text(json.dumps(state))

    more = make_config(train={"steps": STEPS + 2})
    from_old = run_training(more, tmp_path / "a", resume=old)
    from_pristine = run_training(more, tmp_path / "b", resume=pristine)
    assert from_old.resumed_from == old
    assert from_old.losses == pytest.approx(from_pristine.losses, abs=0, rel=0)
    assert len(from_old.losses) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda state: state.pop("files"),
        lambda state: state["files"].pop("model.safetensors"),
        lambda state: state["files"]["ema.safetensors"].pop("sha256"),
        lambda state: state.update(files={"../model.safetensors": {"size": 1, "sha256": "0"}}),
        lambda state: state.pop("scheduler"),
        lambda state: state.update(step="24"),
    ],
    ids=["no files", "a file unlisted", "no sha256", "path outside", "no scheduler", "step text"],
)
def test_a_state_json_that_does_not_describe_the_checkpoint_is_damaged(reference, tmp_path,
                                                                         damage):  # fmt: skip
    expected, ref_out = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    root = out / "checkpoints"
    newest = list_checkpoints(root)[-1]  # step 24
    state = json.loads((newest / "state.json").read_text())
    damage(state)
    (newest / "state.json").write_text(json.dumps(state))

    with pytest.raises(ModelDirectoryError, match="damaged"):
        run_training(make_config(train={"steps": 28}), out, resume=newest)
    # "auto" falls back to the previous intact checkpoint (step 20)
    result = run_training(make_config(train={"steps": 22}), out, resume="auto")
    assert result.resumed_from == root / "step_00000020"
    assert result.losses[0] == pytest.approx(expected[20], abs=1e-6)
