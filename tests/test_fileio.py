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
