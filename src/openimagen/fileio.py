"""Crash-safe file writing: write to a temporary file beside the target, fsync, rename.

A reader (or a process restarted after ``kill -9``) sees either the old file or the new
one, never a half-written one, because ``os.replace`` is atomic on POSIX and Windows.
Whole directories (model directories, exported stages, training checkpoints) are built in
:func:`staged_directory` and renamed into place the same way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    # Reading the umask means setting it; doing that once at import keeps it out of the
    # window where another thread (the server's) could create a file.
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None
_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            # mkstemp makes the file 0600; give it the mode a plain open() would (umask)
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)


def atomic_write_files(
    files: Mapping[str | os.PathLike, bytes], *, overwrite: bool = False
) -> list[Path]:
    """Write several files all or nothing; returns their paths in order.

    Every file is first written to a temporary file beside its target and fsynced; only then
    are they renamed into place. If any write or rename fails, the files already placed are
    removed (or, with ``overwrite``, the files they replaced are put back) and the temporary
    files deleted, so the targets are as they were. Without ``overwrite`` an existing target
    raises :class:`FileExistsError` before anything is written; with it, a replaced file
    exists throughout (``os.replace``), never missing or half-written.
    """
    targets = [Path(p) for p in files]
    if not overwrite:
        for target in targets:
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    temps: list[Path] = []
    placed: list[tuple[Path, Path | None]] = []  # (target, backup of the file it replaced)
    try:
        for target, data in zip(targets, files.values(), strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temps.append(Path(name))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
                os.fsync(handle.fileno())
        for tmp, target in zip(temps, targets, strict=True):
            if not overwrite:
                _link_new(tmp, target)
                placed.append((target, None))
                continue
            backup = _backup(target)
            try:
                os.replace(tmp, target)
            except BaseException:
                if backup is not None:
                    backup.unlink()
                raise
            placed.append((target, backup))
    except BaseException:
        for target, backup in reversed(placed):
            with contextlib.suppress(OSError):
                if backup is None:
                    os.unlink(target)
                else:
                    os.replace(backup, target)
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for _, backup in placed:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()
    for directory in dict.fromkeys(t.parent for t in targets):
        _fsync_directory(directory)
    return targets


def _link_new(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``, failing with FileExistsError if ``target`` appeared meanwhile."""
    try:
        os.link(tmp, target)  # atomic and never replaces an existing file
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _backup(target: Path) -> Path | None:
    """A hidden copy of an existing ``target`` (a hard link where possible), or None."""
    if not os.path.lexists(target):
        return None
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
    os.close(fd)
    backup = Path(name)
    try:
        os.unlink(backup)
        os.link(target, backup)
    except OSError:
        shutil.copy2(target, backup)
    return backup


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write("\n")


def atomic_save_file(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """``safetensors.torch.save_file`` made atomic (temp file, fsync, rename)."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    with atomic_write(path, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, *, prefix: str | None = None) -> Iterator[Path]:
    """Build a whole directory out of sight, then put it at ``target`` in one rename.

    Yields a new empty directory beside ``target`` (same filesystem; its name starts with
    ``prefix``, by default ``.<name>.``). When the block finishes, the directory is fsynced
    and swapped into place by :func:`replace_directory` (an existing ``target`` is moved
    aside, then deleted), and the parent is fsynced so the rename is durable. When the block
    raises, the staged directory is removed and ``target`` is left as it was. A process
    killed inside the block leaves only the hidden staged directory behind, never a
    half-written ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=prefix or f".{target.name}.", dir=target.parent))
    try:
        # mkdtemp makes the directory 0700; give it the mode a plain mkdir would (umask)
        os.chmod(staged, 0o777 & ~_umask())
        yield staged
        _fsync_directory(staged)
        replace_directory(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _fsync_directory(target.parent)


def replace_directory(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move directory ``new`` to ``target``; an existing target is swapped out, then deleted.

    If the second rename fails, the old target is put back.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not supported on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_directory(directory: str | os.PathLike) -> None:
    """fsync a directory, making a file created or renamed in it durable (where supported)."""
    _fsync_directory(Path(directory))
