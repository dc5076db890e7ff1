"""Training checkpoints: crash-safe step directories, no pickle.

Layout, under ``OUTPUT/checkpoints/``::

    step_00001000/model.safetensors       the trained weights
    step_00001000/ema.safetensors         the EMA weights (AveragedModel state)
    step_00001000/optimizer.safetensors   every tensor of the optimizer state
    step_00001000/rng.safetensors         torch CPU (and CUDA) generator states, per process
    step_00001000/state.json              format, step, data position, config, optimizer and
                                          scheduler structure, Python and NumPy RNG states,
                                          and the size + sha256 of every file above
    latest                                name of the newest complete step directory

A checkpoint is written into a hidden temporary directory, every file fsynced, then the
directory is renamed to ``step_N`` and only then is ``latest`` updated (atomically). A
process killed at any point leaves either a complete ``step_N`` or a ``.tmp-*`` directory
that is never read; resuming checks every file's sha256, so a damaged checkpoint is
skipped (``auto``) or refused (an explicit path), never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openimagen.errors import ModelDirectoryError
from openimagen.fileio import atomic_write, staged_directory

logger = logging.getLogger(__name__)

FORMAT_NAME = "openimagen-train-checkpoint"
FORMAT_VERSION = 1
STATE_FILE = "state.json"
# The files and state.json keys every checkpoint has (the layout above); one without them is
# damaged, so ``auto`` skips it instead of failing on it.
CHECKPOINT_FILES = ("model", "ema", "optimizer", "rng")
STATE_KEYS = ("step", "samples_seen", "config", "stage_config", "optimizer", "scheduler", "rng")
LATEST_FILE = "latest"
_STEP_RE = re.compile(r"^step_(\d{8,})$")
# Test hook: "STEP" makes the process SIGKILL itself halfway through writing checkpoint STEP,
# so tests can show that an interrupted write is never used.
KILL_ENV = "OPENIMAGEN_TEST_KILL_IN_CHECKPOINT"


# -- (de)serialising state -----------------------------------------------------------------
def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` -> (tensors for safetensors, JSON structure)."""
    tensors: dict[str, torch.Tensor] = {}
    structure: dict[str, Any] = {"param_groups": _jsonable(state["param_groups"]), "state": {}}
    for param_id, entries in state["state"].items():
        entry = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                name = f"state.{param_id}.{key}"
                tensors[name] = value.detach().cpu().clone().contiguous()
                entry[key] = {"tensor": name}
            else:
                entry[key] = {"value": _jsonable(value)}
        structure["state"][str(param_id)] = entry
    return tensors, structure


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], structure: dict) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state = {}
    for param_id, entries in structure["state"].items():
        state[int(param_id)] = {
            key: tensors[spec["tensor"]] if "tensor" in spec else spec["value"]
            for key, spec in entries.items()
        }
    return {"state": state, "param_groups": structure["param_groups"]}


def scheduler_state(scheduler: Any) -> dict:
    """A LambdaLR state without its (unserialisable, rebuilt from the config) lambdas."""
    return _jsonable({k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"})


def load_scheduler_state(scheduler: Any, state: dict) -> None:
    scheduler.load_state_dict({**state, "lr_lambdas": [None] * len(scheduler.lr_lambdas)})


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's Python, NumPy and torch RNG states as (tensors, JSON)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    json_state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, json_state


def set_rng_state(tensors: dict[str, torch.Tensor], json_state: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = json_state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = json_state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (np.generic,)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON")


# -- writing --------------------------------------------------------------------------------
def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(
    root: Path,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    *,
    keep_last: int,
) -> Path:
    """Write ``tensors`` (file stem -> tensors) and ``state`` as checkpoint ``step``.

    Built in ``root/.tmp-step_N-PID-*`` (:func:`openimagen.fileio.staged_directory`), every
    file fsynced, renamed to ``root/step_N``; then ``root/latest`` is updated and all but
    the newest ``keep_last`` checkpoints deleted.
    """
    from safetensors.torch import save

    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    kill_at = os.environ.get(KILL_ENV)
    # an existing step_N (re-written after resuming from an earlier step) is swapped out
    with staged_directory(final, prefix=f".tmp-{final.name}-{os.getpid()}-") as tmp:
        files = {}
        for index, (stem, group) in enumerate(tensors.items()):
            data = save({k: v.detach().cpu().contiguous() for k, v in group.items()})
            _write_synced(tmp / f"{stem}.safetensors", data)
            files[f"{stem}.safetensors"] = {"size": len(data), "sha256": _sha256(data)}
            if kill_at is not None and int(kill_at) == step and index == 0:
                logger.warning("%s=%s: killing this process mid-checkpoint", KILL_ENV, kill_at)
                os.kill(os.getpid(), signal.SIGKILL)
        body = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "step": step, "files": files}
        body.update(state)
        _write_synced(tmp / STATE_FILE, json.dumps(body, indent=1, sort_keys=True).encode())
    with atomic_write(root / LATEST_FILE, "w") as handle:
        handle.write(final.name + "\n")
    prune_checkpoints(root, keep_last)
    return final


def prune_checkpoints(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step directories and any leftover temp dirs."""
    steps = list_checkpoints(root)
    for path in steps[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)
    # what a killed process left: staged (.tmp-step_*) or swapped-out (.step_*.old) step
    # directories, and .old-step_* from openimagen versions before fileio.staged_directory
    for pattern in (".tmp-step_*", ".step_*.old", ".old-step_*"):
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- reading --------------------------------------------------------------------------------
def list_checkpoints(root: Path) -> list[Path]:
    """Step directories under ``root``, oldest first (temporary directories excluded)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Validate and read a checkpoint directory: (state.json contents, stem -> tensors).

    Raises :class:`ModelDirectoryError` for a missing, foreign or damaged checkpoint (any
    file whose size or sha256 differs from what ``state.json`` recorded).
    """
    from safetensors.torch import load

    path = Path(path)
    state_path = path / STATE_FILE
    if not state_path.is_file():
        what = "does not exist" if not path.exists() else f"has no {STATE_FILE}"
        raise ModelDirectoryError(
            f"{path} {what}: expected a training checkpoint, a step_N directory under a run's "
            "checkpoints/ (train --resume auto picks the newest)"
        )
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirectoryError(f"{state_path} is damaged: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ModelDirectoryError(
            f"{path} is not an openimagen training checkpoint (format={found!r}, expected "
            f"{FORMAT_NAME!r})"
        )
    if state.get("version", 0) > FORMAT_VERSION:
        raise ModelDirectoryError(
            f"{path}: checkpoint version {state['version']} is newer than this openimagen "
            f"reads ({FORMAT_VERSION}); upgrade openimagen"
        )
    _check_state(path, state)
    tensors = {}
    for name, meta in state["files"].items():
        file = path / name
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ModelDirectoryError(f"{path} is incomplete: cannot read {name}: {exc}") from exc
        if len(data) != meta["size"] or _sha256(data) != meta["sha256"]:
            raise ModelDirectoryError(
                f"{file} is damaged (size or sha256 differs from {STATE_FILE}); resume from an "
                "earlier checkpoint"
            )
        tensors[name.removesuffix(".safetensors")] = load(data)
    return state, tensors


def _check_state(path: Path, state: dict[str, Any]) -> None:
    """Refuse a state.json that does not describe a whole checkpoint (see the layout)."""

    def damaged(what: str) -> ModelDirectoryError:
        return ModelDirectoryError(
            f"{path / STATE_FILE} is damaged ({what}); resume from an earlier checkpoint"
        )

    missing = [key for key in ("files", *STATE_KEYS) if key not in state]
    if missing:
        raise damaged(f"it lacks {', '.join(repr(k) for k in missing)}")
    if not isinstance(state["step"], int) or isinstance(state["step"], bool):
        raise damaged(f"step={state['step']!r} is not an integer")
    files = state["files"]
    if not isinstance(files, dict):
        raise damaged("'files' is not an object")
    unlisted = [f"{stem}.safetensors" for stem in CHECKPOINT_FILES]
    unlisted = [name for name in unlisted if name not in files]
    if unlisted:
        raise damaged(f"'files' does not list {', '.join(unlisted)}")
    for name, meta in files.items():
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise damaged(f"'files' names {name!r}, which is not a file of this directory")
        if not (
            isinstance(meta, dict)
            and isinstance(meta.get("size"), int)
            and isinstance(meta.get("sha256"), str)
        ):
            raise damaged(f"'files' has no size and sha256 for {name}")


def find_resumable(root: Path) -> Path | None:
    """The newest checkpoint under ``root`` that reads back intact (damaged ones skipped)."""
    for path in reversed(list_checkpoints(root)):
        try:
            read_checkpoint(path)
        except ModelDirectoryError as exc:
            logger.warning("skipping checkpoint %s: %s", path, exc)
            continue
        return path
    return None


def latest_pointer(root: Path) -> Path | None:
    """The directory named by ``root/latest`` (None if there is no pointer)."""
    with contextlib.suppress(OSError):
        name = (root / LATEST_FILE).read_text(encoding="utf-8").strip()
        if _STEP_RE.match(name):
            return root / name
    return None


__all__ = [
    "FORMAT_NAME",
    "KILL_ENV",
    "find_resumable",
    "flatten_optimizer_state",
    "latest_pointer",
    "list_checkpoints",
    "load_scheduler_state",
    "read_checkpoint",
    "rng_state",
    "save_checkpoint",
    "scheduler_state",
    "set_rng_state",
    "unflatten_optimizer_state",
]
