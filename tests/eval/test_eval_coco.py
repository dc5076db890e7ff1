"""``openimagen eval coco``: the captions file, the draw, the image protocol, errors, resume.

Tests marked ``coco`` run the whole command and need the evaluation environment
(``make test`` runs them in .venv-eval with ``-m coco``); the others run in the default one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cli_testutil import run
from openimagen.errors import InvalidArgumentError
from openimagen.eval.coco import (
    CAPTIONS_FILE,
    GENERATED_DIR,
    REFERENCE_DIR,
    RESULTS_FILE,
    prepare_folder,
    prepare_image,
    run_coco,
)
from openimagen.eval.coco_captions import draw_captions, read_coco_captions
from openimagen.eval.drawbench import ModelSpec

# (width, height, mode) of the tiny COCO's images: landscape, portrait, square, grey, RGBA
SIZES = [(48, 36, "RGB"), (30, 44, "RGB"), (40, 40, "L"), (64, 48, "RGB"), (36, 36, "RGBA"),
         (34, 50, "RGB"), (60, 40, "L")]  # fmt: skip
NUM = 4
# 12 steps per stage and batches of one make the run slow enough that the kill lands mid-run
COMMON = {"--num": str(NUM), "--batch-size": "1", "--steps": "12", "--metric-batch-size": "8",
          "--device": "cpu"}  # fmt: skip


def tiny_coco(root):
    """A COCO-format captions file and its JPEG folder: 10 images, 2-3 captions each."""
    rng = np.random.default_rng(0)
    folder = root / "val2014"
    folder.mkdir(parents=True)
    images, notes = [], []
    for k, (w, h, mode) in enumerate(SIZES):
        image_id = 1000 - 37 * k  # ids out of file order: the draw sorts them
        name = f"COCO_val2014_{image_id:012d}.jpg"
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        picture = Image.fromarray(pixels).convert(mode)
        (picture.convert("RGB") if mode == "RGBA" else picture).save(folder / name, quality=95)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for j in range(2 + k % 2):
            text = f"A  photo of thing {k},\n variant {j}. " if j == 0 else f"thing {k} take {j}"
            notes.append({"image_id": image_id, "id": 10 * image_id + j, "caption": text})
    captions = root / "captions_val2014.json"
    captions.write_text(json.dumps({"info": {}, "images": images, "annotations": notes}))
    return captions, folder


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return tiny_coco(tmp_path_factory.mktemp("coco"))


def fake_inception_weights(path):
    """A file with the keys torch-fidelity's InceptionV3 state dict has (enough for the checks)."""
    keys = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")
    torch.save({k: torch.zeros(1) for k in keys}, path)
    return path


def test_captions_file_is_read_in_image_id_order_with_white_space_collapsed(coco):
    captions = read_coco_captions(coco[0])
    ids = [image.image_id for image in captions.images]
    assert ids == sorted(ids) and len(ids) == len(SIZES)
    first = captions.images[-1]  # image_id 1000, the file's first image
    assert first.captions[0] == (10000, "A photo of thing 0, variant 0.")
    assert all(len(image.captions) in (2, 3) for image in captions.images)


def test_the_draw_is_seeded_one_caption_per_image_and_a_smaller_draw_is_a_prefix(coco):
    captions = read_coco_captions(coco[0])
    drawn = draw_captions(captions, 6, seed=3)
    assert [d.index for d in drawn] == list(range(6))
    assert len({d.image_id for d in drawn}) == 6  # one caption per drawn image
    by_id = {image.image_id: dict(image.captions) for image in captions.images}
    assert all(by_id[d.image_id][d.annotation_id] == d.caption for d in drawn)
    assert draw_captions(captions, 6, seed=3) == drawn
    assert draw_captions(captions, 4, seed=3) == drawn[:4]
    assert draw_captions(captions, 6, seed=4) != drawn
    # over many seeds every caption of an image is chosen
    chosen = {
        d.annotation_id for s in range(40) for d in draw_captions(captions, len(SIZES), seed=s)
    }
    assert chosen == {a for image in captions.images for a, _ in image.captions}
    with pytest.raises(InvalidArgumentError, match="--num"):
        draw_captions(captions, len(SIZES) + 1, seed=0)


def test_prepare_image_is_the_largest_centred_square_resized_bicubic():
    rng = np.random.default_rng(1)
    wide = Image.fromarray(rng.integers(0, 256, size=(30, 51, 3), dtype=np.uint8))  # 51 x 30
    got = np.asarray(prepare_image(wide))
    crop = wide.crop((10, 0, 40, 30))  # (51 - 30) // 2 = 10
    expected = np.asarray(crop.resize((256, 256), Image.Resampling.BICUBIC))
    assert got.shape == (256, 256, 3) and np.array_equal(got, expected)
    big = Image.fromarray(rng.integers(0, 256, size=(600, 400), dtype=np.uint8))  # grey, tall
    got = np.asarray(prepare_image(big))
    expected = (
        big.convert("RGB").crop((0, 100, 400, 500)).resize((256, 256), Image.Resampling.BICUBIC)
    )
    assert got.shape == (256, 256, 3) and np.array_equal(got, np.asarray(expected))


def test_prepare_folder_writes_only_what_is_missing_and_clears_stale_temporary_files(
    coco, tmp_path
):
    sources = sorted(coco[1].glob("*.jpg"))[:3]
    targets = [tmp_path / "prepared" / f"{i}.png" for i in range(3)]
    pairs = list(zip(sources, targets, strict=True))
    assert prepare_folder(pairs, desc="", progress=False) == 3
    for source, target in pairs:
        with Image.open(source) as image, Image.open(target) as written:
            assert np.array_equal(np.asarray(written), np.asarray(prepare_image(image)))
    stamps = {t: (t.stat().st_ino, t.stat().st_mtime_ns) for t in targets}
    targets[1].unlink()
    stale = tmp_path / "prepared" / ".0.png.abc123.tmp"  # what a killed run leaves
    stale.write_bytes(b"half a png")
    assert prepare_folder(pairs, desc="", progress=False) == 1
    assert targets[1].is_file() and not stale.exists()
    for target in (targets[0], targets[2]):  # kept, not rewritten
        assert (target.stat().st_ino, target.stat().st_mtime_ns) == stamps[target]


def _args(model, coco, out, **options):
    """The argv of ``eval coco`` on the tiny COCO; ``options`` replace or add options."""
    captions, images = coco
    args = {"--model": str(model), "--captions": str(captions), "--images": str(images),
            "--out": str(out), "--inception-weights": "missing.pth",
            "--clip-checkpoint": "missing.safetensors", **COMMON, **options}  # fmt: skip
    return ["eval", "coco", *[x for kv in args.items() for x in kv], "-q"]


def test_mistakes_are_one_line_before_anything_is_written(tiny_model_dir, coco, tmp_path, capsys):
    out = tmp_path / "run"
    weights = str(fake_inception_weights(tmp_path / "inception.pth"))
    checkpoint = tmp_path / "clip.safetensors"
    checkpoint.write_bytes(b"x")
    ok = {"--inception-weights": weights, "--clip-checkpoint": str(checkpoint)}
    not_json = tmp_path / "not.json"
    not_json.write_text("{images: []")
    instances = tmp_path / "instances_val2014.json"  # COCO's detection file: no captions
    instances.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                     "annotations": [{"id": 5, "image_id": 1, "bbox": [0, 0, 1, 1]}]}))  # fmt: skip
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    short = tmp_path / "val-short"
    short.mkdir()
    cases = [
        ({"--captions": str(tmp_path / "nope.json")}, "--captions"),
        ({"--captions": str(not_json)}, "It is not JSON"),
        ({"--captions": str(instances)}, "annotations[0]"),
        ({"--captions": str(listed)}, '"images" and "annotations" lists'),
        ({"--num": str(len(SIZES) + 1)}, f"--num={len(SIZES) + 1}"),
        ({"--images": str(short)}, f"{len(SIZES)} are missing"),
        ({"--images": str(tmp_path / "nowhere")}, "--images"),
        ({"--inception-weights": str(tmp_path / "w.pth")}, "--inception-weights"),
        ({"--clip-checkpoint": str(tmp_path / "c.pt")}, "--clip-checkpoint"),
        ({"--model": str(tmp_path)}, "not an openimagen model directory"),
    ]
    for change, expected in cases:
        code, _, err = run(_args(tiny_model_dir, coco, out, **{**ok, **change}), capsys)
        assert code == 2 and err.count("\n") == 1 and expected in err, (change, err)
        assert not out.exists(), change
    # FID needs two images a side: the parser refuses --num 1, and so does the library call
    with pytest.raises(SystemExit) as stopped:
        run(_args(tiny_model_dir, coco, out, **{**ok, "--num": "1"}), capsys)
    assert stopped.value.code == 2
    assert "argument --num: 1 is out of range" in capsys.readouterr().err
    with pytest.raises(InvalidArgumentError, match="--num=1 .* FID needs the covariance"):
        run_coco(ModelSpec.parse(str(tiny_model_dir)), coco[0], coco[1], out,
                 inception_weights=weights, clip_checkpoint=checkpoint, num=1)  # fmt: skip
    assert not out.exists()


def test_without_the_libraries_the_command_says_how_to_make_the_eval_env(
    tiny_model_dir, coco, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # the default environment's state
    checkpoint = tmp_path / "clip.safetensors"
    checkpoint.write_bytes(b"x")
    argv = _args(tiny_model_dir, coco, tmp_path / "run",
                 **{"--inception-weights": str(fake_inception_weights(tmp_path / "w.pth")),
                    "--clip-checkpoint": str(checkpoint)})  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert "make eval-env" in err and "torch-fidelity" in err
    assert not (tmp_path / "run").exists()


def test_every_coco_test_is_in_a_file_make_test_runs_in_the_eval_env():
    """The default run leaves `coco` tests out; `make test` must run each in .venv-eval."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    line = next(
        x for x in (root / "Makefile").read_text().splitlines() if x.startswith("COCO_TESTS")
    )
    listed = set(line.split(":=")[1].split())
    marked = {str(p.relative_to(root)) for p in (root / "tests").rglob("test_*.py")
              if "mark.coco" in p.read_text(encoding="utf-8")}  # fmt: skip
    assert marked and marked <= listed, marked - listed


# -- the whole command, in the evaluation environment ---------------------------------------------
def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")


@pytest.fixture
def one_thread():
    """In-process runs on one thread, as the killed subprocess: the same bytes in every image."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.coco
# torch-fidelity's own call, at its defaults, feeds its network from 4 worker processes
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_coco_scores_are_the_libraries_own_on_the_prepared_folders_and_a_killed_run_resumes(
    tiny_model_dir, coco, inception_weights, tiny_clip_files, tmp_path, capsys, monkeypatch,
    one_thread,
):  # fmt: skip
    from metrics_testutil import open_clip_cosines, torch_fidelity_fid

    # were the weights path ignored anywhere, torch-fidelity would fetch its own weights
    monkeypatch.setattr(
        "torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
        lambda *a, **k: pytest.fail("torch-fidelity tried to download weights"),
    )
    config, checkpoint = tiny_clip_files
    weights = {"--inception-weights": str(inception_weights), "--clip-checkpoint": str(checkpoint),
               "--clip-model": str(config)}  # fmt: skip
    full = tmp_path / "full"
    code, out, err = run(_args(tiny_model_dir, coco, full, **weights), capsys)
    assert code == 0, err
    assert "COCO FID:" in out and "CLIP score:" in out
    results = json.loads((full / RESULTS_FILE).read_text())
    assert results["num_generated"] == NUM and results["num_reference"] == len(SIZES)
    assert results["protocol"]["image_size"] == 256 and results["reference"] == "all"
    drawn = draw_captions(read_coco_captions(coco[0]), NUM, seed=0)
    manifest = [json.loads(line) for line in (full / "manifest.jsonl").read_text().splitlines()]
    assert [m["prompt"] for m in manifest] == [d.caption for d in drawn]

    # the prepared files are the protocol applied to the generated and the reference images
    generated = sorted((full / GENERATED_DIR).glob("*.png"))
    assert [p.name for p in generated] == [f"{i:06d}.png" for i in range(NUM)]
    with Image.open(full / manifest[2]["path"]) as image:
        assert np.array_equal(
            np.asarray(Image.open(generated[2])), np.asarray(prepare_image(image))
        )
    references = sorted((full / REFERENCE_DIR).glob("*.png"))
    assert len(references) == len(SIZES)
    with Image.open(coco[1] / drawn[0].file_name) as image:
        prepared = Image.open(full / REFERENCE_DIR / drawn[0].file_name.replace(".jpg", ".png"))
        assert np.array_equal(np.asarray(prepared), np.asarray(prepare_image(image)))

    # FID: torch-fidelity's own call on the same two folders with the same weights file
    library_fid = torch_fidelity_fid(full / GENERATED_DIR, full / REFERENCE_DIR, inception_weights)
    with capsys.disabled():  # shown with -s (capsys holds the command's own output)
        print(f"\nFID ours {results['fid']!r} torch-fidelity {library_fid!r}")
    assert np.isfinite(library_fid) and library_fid > 0
    assert results["fid"] == pytest.approx(library_fid, rel=1e-6)
    # CLIP score: open_clip's model on the same prepared images and the drawn captions
    cosine = open_clip_cosines(config, checkpoint, generated, [d.caption for d in drawn])
    direct = float(100 * cosine.clamp(min=0).mean())
    with capsys.disabled():
        print(f"CLIP score ours {results['clip_score']!r} open_clip direct {direct!r}")
    assert direct > 0 and results["clip_score"] == pytest.approx(direct, rel=1e-5)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(_args(tiny_model_dir, coco, killed, **weights)), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while len(list(killed.glob("images/*/*.png"))) < 1:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in killed.glob("images/*/*.png")}
    assert 1 <= len(before) < NUM and not (killed / "manifest.jsonl").exists()
    stale = next(iter(before)).parent / ".000-00.png.abc123.tmp"
    stale.write_bytes(b"half a png")

    code, _, err = run(_args(tiny_model_dir, coco, killed, **weights), capsys)
    assert code == 0, err
    for name in ("manifest.jsonl", CAPTIONS_FILE, "coco.json"):
        assert (killed / name).read_text() == (full / name).read_text(), name
    resumed = json.loads((killed / RESULTS_FILE).read_text())
    assert (resumed["fid"], resumed["clip_score"]) == (results["fid"], results["clip_score"])
    for path, stamp in before.items():  # nothing written before the kill was rewritten
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp, path
    assert not stale.exists()


def command(argv):
    return [sys.executable, "-m", "openimagen.cli", *argv]
