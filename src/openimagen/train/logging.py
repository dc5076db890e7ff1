"""What training writes while it runs: metrics.jsonl, TensorBoard, a progress bar, grids.

Only the main process logs. ``metrics.jsonl`` has one JSON object per logged step; when a
run resumes from step N, lines after N (written before the interruption) are dropped, so
the file always reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from openimagen.fileio import atomic_write

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLogger:
    """Appends metrics to ``OUTPUT/metrics.jsonl`` and, if available, to TensorBoard."""

    def __init__(self, output_dir: Path, *, resume_step: int, tensorboard: bool, enabled: bool):
        self.enabled = enabled
        self.path = output_dir / METRICS_FILE
        self.writer = None
        if not enabled:
            return
        truncate_metrics(self.path, resume_step)
        self._handle = self.path.open("a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info(
                    "TensorBoard logging skipped: the `tensorboard` package is not installed "
                    "(pip install tensorboard); metrics still go to %s",
                    self.path,
                )
            else:
                self.writer = SummaryWriter(str(output_dir / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        # the wall clock, so a run's training time can be read back across resumes
        record = {"step": step, "time": round(time.time(), 3), **metrics}
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, step)

    def log_image(self, step: int, tag: str, image: Any) -> None:
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, (image.clamp(-1, 1) + 1) / 2, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._handle.close()
        if self.writer is not None:
            self.writer.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines of ``path`` with ``"step" > step`` (atomically); keep everything else."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    with atomic_write(path, "w") as handle:
        handle.write("".join(line + "\n" for line in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (a truncated last line is ignored)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


__all__ = ["METRICS_FILE", "MetricsLogger", "read_metrics", "truncate_metrics"]
