"""Atomic writes: the target is either the old file or the complete new one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from openimagen.fileio import atomic_save_file, atomic_write, atomic_write_json


def test_success_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    with atomic_write(path) as handle:
        handle.write(b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_failure_keeps_the_old_content_and_removes_the_temp(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path, "w") as handle:
        handle.write("half of the new")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_json_and_safetensors_forms(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1, 2], "b": 1}
    tensors = {"w": torch.arange(6.0).view(2, 3).t()}  # non-contiguous on purpose
    atomic_save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "x"})
    assert torch.equal(load_file(tmp_path / "m.safetensors")["w"], tensors["w"])


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    from openimagen import fileio

    atomic_write_json(tmp_path / "a.json", {"x": 1})
    # what open() would give under this process's umask, not mkstemp's 0600
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~fileio._umask()


# -- several files, all or nothing -----------------------------------------------------------
def _names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_write_files_writes_every_file_and_leaves_no_temp(tmp_path):
    from openimagen.fileio import atomic_write_files

    files = {tmp_path / "a.png": b"A", tmp_path / "sub" / "b.png": b"B"}
    assert atomic_write_files(files) == list(files)
    assert (tmp_path / "a.png").read_bytes() == b"A"
    assert (tmp_path / "sub" / "b.png").read_bytes() == b"B"
    assert _names(tmp_path) == ["a.png", "sub"] and _names(tmp_path / "sub") == ["b.png"]


def test_write_files_refuses_an_existing_target_before_writing_anything(tmp_path):
    from openimagen.fileio import atomic_write_files

    (tmp_path / "b.png").write_bytes(b"keep me")
    with pytest.raises(FileExistsError) as info:
        atomic_write_files({tmp_path / "a.png": b"A", tmp_path / "b.png": b"B"})
    assert info.value.filename == str(tmp_path / "b.png")
    assert _names(tmp_path) == ["b.png"] and (tmp_path / "b.png").read_bytes() == b"keep me"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failing_later_file_leaves_no_part_of_the_output(tmp_path, overwrite):
    from openimagen.fileio import atomic_write_files

    if overwrite:
        (tmp_path / "a.png").write_bytes(b"old a")
    (tmp_path / "blocker").write_text("a file, so nothing can be written under it")
    files = {
        tmp_path / "a.png": b"A",
        tmp_path / "b.png": b"B",
        tmp_path / "blocker" / "c.png": b"C",
    }
    with pytest.raises(OSError):
        atomic_write_files(files, overwrite=overwrite)
    assert _names(tmp_path) == (["a.png", "blocker"] if overwrite else ["blocker"])
    if overwrite:
        assert (tmp_path / "a.png").read_bytes() == b"old a"


def test_a_failing_rename_puts_the_replaced_files_back(tmp_path, monkeypatch):
    import os

    from openimagen.fileio import atomic_write_files

    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"old " + name[0].encode())
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk gone")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_files({tmp_path / "a.png": b"new a", tmp_path / "b.png": b"new b"},
                           overwrite=True)  # fmt: skip
    monkeypatch.undo()
    assert _names(tmp_path) == ["a.png", "b.png"]
    assert (tmp_path / "a.png").read_bytes() == b"old a"
    assert (tmp_path / "b.png").read_bytes() == b"old b"


# -- staged_directory: every atomic directory write (model dirs, exports, checkpoints) --------
def test_staged_directory_appears_whole_at_the_end_of_the_block(tmp_path):
    from openimagen.fileio import staged_directory

    target = tmp_path / "model"
    with staged_directory(target) as staged:
        (staged / "a.json").write_text("1")
        (staged / "sub").mkdir()
        (staged / "sub" / "b.bin").write_bytes(b"2")
        assert not target.exists()  # nothing at the target while it is being built
        assert staged.parent == tmp_path and staged.name.startswith(".model.")
    assert (target / "a.json").read_text() == "1"
    assert (target / "sub" / "b.bin").read_bytes() == b"2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staged or old dir left


def test_staged_directory_replaces_an_existing_directory_whole(tmp_path):
    from openimagen.fileio import staged_directory

    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_directory(target) as staged:
        (staged / "new.txt").write_text("new")
        assert (target / "old.txt").read_text() == "old"  # the old one stays until the swap
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failing_staged_directory_leaves_the_target_and_no_trace(tmp_path):
    from openimagen.fileio import staged_directory

    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), staged_directory(target) as staged:
        (staged / "half.txt").write_text("half")
        raise RuntimeError("disk full")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_staged_directory_names_and_permissions(tmp_path):
    from openimagen import fileio

    with fileio.staged_directory(tmp_path / "step_1", prefix=".tmp-step_1-") as staged:
        assert staged.name.startswith(".tmp-step_1-")
    mode = (tmp_path / "step_1").stat().st_mode & 0o777
    assert mode == 0o777 & ~fileio._umask()  # as a plain mkdir, not mkdtemp's 0700
