"""``openimagen eval drawbench``: shared seeds, resume after a kill, two processes, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from cascade_testutil import tiny_cascade
from cli_testutil import run
from openimagen.eval.drawbench import ModelSpec, batches, plan, read_manifest, run_drawbench
from openimagen.eval.prompts import load_prompt_suite

PROMPTS = "Prompt,Category\nA red colored car.,Colors \nOne cat on a mat.,Counting\n\"A cat, a dog.\",Counting\n"  # fmt: skip
PER_PROMPT = 4
TOTAL = 2 * 3 * PER_PROMPT  # models x prompts x images
# 12 steps per stage make a batch slow enough that the kill lands mid-run
COMMON = ["--num-per-prompt", str(PER_PROMPT), "--batch-size", "2", "--steps", "12", "-q"]


def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def setup(tiny_model_dir, minilm, tmp_path_factory):
    root = tmp_path_factory.mktemp("drawbench")
    other = tiny_cascade(minilm, seed=1).save(root / "other")
    prompts = root / "prompts.csv"
    prompts.write_text(PROMPTS, encoding="utf-8")
    args = ["--model", f"a={tiny_model_dir}", "--model", f"b={other}", "--prompts", str(prompts)]
    return root, args + COMMON, {"a": tiny_model_dir, "b": other}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "openimagen.cli", "eval", "drawbench", *args]


@pytest.fixture(scope="module")
def uninterrupted(setup):
    root, args, _ = setup
    out = root / "full"
    done = subprocess.run(command(*args, "--out", str(out)), env=env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return out


def pngs(out) -> list:
    return sorted((out / "images").glob("*/*.png"))


def test_every_model_draws_the_same_seeds_and_seeds_do_not_depend_on_the_set_size():
    suite = load_prompt_suite("drawbench")
    prompts = suite.select(5)
    jobs = plan(["a", "b"], prompts, 4, seed=10)
    seeds = {m: [(j.prompt.index, j.sample, j.seed) for j in jobs if j.model == m] for m in "ab"}
    assert seeds["a"] == seeds["b"]
    assert len({j.seed for j in jobs if j.model == "a"}) == 20  # no two images share noise
    small = plan(["a"], prompts, 2, seed=10)
    assert [j.seed for j in small] == [j.seed for j in jobs if j.model == "a" and j.sample < 2]
    # batches never mix models, and cover every job once
    cut = batches(jobs, 3)
    assert all(len({j.model for j in b}) == 1 for b in cut)
    assert [j for b in cut for j in b] == jobs


def test_images_are_the_cascades_images_for_that_prompt_and_seed(setup, uninterrupted, minilm):
    from openimagen.cascade import Cascade
    from openimagen.images import to_pil
    from openimagen.watermark import embed_watermark

    rows = read_manifest(uninterrupted)
    assert len(rows) == TOTAL
    assert {r["category"] for r in rows} == {"Colors", "Counting"}  # trailing space stripped
    model_dirs = setup[2]
    for label in ("a", "b"):
        cascade = Cascade.load(model_dirs[label], text_encoder=minilm)
        sampling = [s.replace(steps=12) for s in cascade.sampling]
        mine = [r for r in rows if r["model"] == label][:3]
        images = cascade.generate(
            [r["prompt"] for r in mine], [r["seed"] for r in mine], sampling=sampling
        )
        for row, image in zip(mine, images, strict=True):
            expected = np.asarray(embed_watermark(to_pil(image)), dtype=int)
            with Image.open(uninterrupted / row["path"]) as written:
                got = np.asarray(written.convert("RGB"), dtype=int)
                assert written.text["seed"] == str(row["seed"])
                assert written.text["prompt"] == row["prompt"]
            assert np.abs(got - expected).max() <= 1, row  # one level: float round-off
    # same noise, different models: different images
    a0, b0 = (uninterrupted / f"images/{m}/000-00.png" for m in "ab")
    assert a0.read_bytes() != b0.read_bytes()


def test_a_killed_run_resumes_to_the_manifest_of_an_uninterrupted_run(setup, uninterrupted):
    root, args, _ = setup
    out = root / "killed"
    proc = subprocess.Popen(
        command(*args, "--out", str(out)),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while len(pngs(out)) < 4:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in pngs(out)}
    assert 4 <= len(before) < TOTAL, len(before)
    assert not (out / "manifest.jsonl").exists()
    stale = out / "images" / "a" / ".000-00.png.abc123.tmp"  # what a kill during a write leaves
    stale.write_bytes(b"half a png")

    done = subprocess.run(command(*args, "--out", str(out)), env=env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert (out / "manifest.jsonl").read_text() == (uninterrupted / "manifest.jsonl").read_text()
    for path, (inode, mtime) in before.items():  # nothing written before the kill was rewritten
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime), path
    assert not stale.exists()
    assert len(pngs(out)) == TOTAL

    again = subprocess.run(command(*args, "--out", str(out)), env=env(), capture_output=True)
    assert again.returncode == 0 and b"0 drawn by this process" in again.stdout


def test_two_processes_take_disjoint_shares_and_match_one_process(setup, uninterrupted):
    root, args, _ = setup
    out = root / "two"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    done = subprocess.run(
        [*torchrun, "-m", "openimagen.cli", "eval", "drawbench", *args, "--out", str(out)],
        env=env(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert (out / "manifest.jsonl").read_text() == (uninterrupted / "manifest.jsonl").read_text()
    shares = []
    for rank in (0, 1):
        lines = (out / "logs" / f"process-{rank}.jsonl").read_text().splitlines()
        shares.append({json.loads(line)["path"] for line in lines})
        assert all('"of": 2' in line for line in lines)
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == {r["path"] for r in read_manifest(out)}


def test_resuming_with_other_settings_is_refused_in_one_line(setup, uninterrupted, capsys):
    _, args, _ = setup
    out = str(uninterrupted)
    before = (uninterrupted / "manifest.jsonl").read_text()
    changed_seed = [*args, "--seed", "5", "--out", out]
    code, _, err = run(["eval", "drawbench", *changed_seed], capsys)
    assert code == 2 and err.count("\n") == 1 and "--seed" in err
    steps = [a if a != "12" else "13" for a in args]  # --steps 13
    code, _, err = run(["eval", "drawbench", *steps, "--out", out], capsys)
    assert code == 2 and err.count("\n") == 1 and "'a'" in err and "sampling" in err
    assert (uninterrupted / "manifest.jsonl").read_text() == before


def test_bad_model_names_and_prompt_files_are_refused_before_anything_is_written(
    setup, tmp_path, capsys
):
    _, args, dirs = setup
    model_a = str(dirs["a"])
    code, _, err = run(["eval", "drawbench", "--model", model_a, "--model", model_a,
                        "--out", str(tmp_path / "r")], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "distinct names" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("Prompt,Category\nA red car.,\n")
    code, _, err = run(["eval", "drawbench", "--model", model_a, "--prompts", str(bad),
                        "--out", str(tmp_path / "r")], capsys)  # fmt: skip
    assert code == 2 and "line 2" in err and "category" in err
    code, _, err = run(["eval", "drawbench", "--model", "my model=" + model_a,
                        "--out", str(tmp_path / "r")], capsys)  # fmt: skip
    assert code == 2 and "NAME=DIR" in err
    assert not (tmp_path / "r").exists()


def test_library_run_grows_a_run_with_a_new_model_without_touching_the_old(setup, tmp_path, minilm):
    _, args, dirs = setup
    suite = load_prompt_suite(args[args.index("--prompts") + 1])
    first = ModelSpec("a", dirs["a"])
    common = {"num_per_prompt": 1, "sampling_overrides": {"steps": 2}, "progress": False}
    run_drawbench([first], suite, tmp_path / "r", **common)
    path = tmp_path / "r" / "images" / "a" / "000-00.png"
    stamp = path.stat().st_mtime_ns
    extra = ModelSpec("c", tiny_cascade(minilm, seed=2).save(tmp_path / "c"))
    result = run_drawbench([first, extra], suite, tmp_path / "r", **common)
    assert result["written"] == 3 and path.stat().st_mtime_ns == stamp
    assert [r["model"] for r in read_manifest(tmp_path / "r")] == ["a"] * 3 + ["c"] * 3
