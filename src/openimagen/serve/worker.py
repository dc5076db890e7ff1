"""One generation thread fed by a bounded queue; compatible requests are batched together.

The model runs on exactly one thread, so a GPU (or the CPU's cores) is never shared by two
forward passes at once. HTTP handlers :meth:`GenerationWorker.submit` a :class:`Job` and
await its ``future``; when the queue is full ``submit`` raises :class:`QueueFullError`
(the server answers 429). Jobs with the same sampling settings are sampled in one batch
(up to ``max_batch_images`` images): the cascade makes image i depend only on its own
prompt and seed, so batching never changes an image.

One request never fails another: when a batch fails, each of its jobs is sampled again on
its own, so only the jobs that fail alone get the error (and the others the very images
the batch would have given them).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from openimagen.errors import OpenImagenError

if TYPE_CHECKING:
    from openimagen.cascade import Cascade, SamplingConfig

logger = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The worker's queue holds ``max_queue`` jobs already."""


@dataclasses.dataclass(eq=False)
class Job:
    """One request: ``prompts[i]`` is drawn with ``seeds[i]``; the result is a list of bytes."""

    prompts: list[str]
    seeds: list[int]
    sampling: tuple[SamplingConfig, ...]  # one per stage
    metadata: list[dict[str, Any]]  # provenance for each image
    job_id: str | None = None
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
    state: str = "queued"  # queued | running | done | failed | cancelled
    done: int = 0
    total: int = 0

    @property
    def size(self) -> int:
        return len(self.prompts)


class GenerationWorker:
    """Runs ``cascade.generate`` on one thread for queued jobs; ``encode`` turns images to bytes."""

    def __init__(
        self,
        cascade: Cascade,
        encode: Callable[[torch.Tensor, dict[str, Any]], bytes],
        *,
        max_queue: int = 16,
        max_batch_images: int = 8,
        track_jobs: int = 1024,
    ):
        self.cascade = cascade
        self.encode = encode
        self.max_queue = max_queue
        self.max_batch_images = max_batch_images
        self._waiting: list[Job] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # recent jobs by client-chosen id, for progress polling (bounded)
        self._tracked: OrderedDict[str, Job] = OrderedDict()
        self._track_limit = track_jobs
        self.batches_run = 0
        self.images_made = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="openimagen-generate", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running batch, fail the waiting jobs, join the thread."""
        with self._cond:
            self._stopping = True
            waiting, self._waiting = self._waiting, []
            self._cond.notify_all()
        for job in waiting:
            job.state = "cancelled"
            job.future.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- submitting and observing ------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Queue ``job``; raises :class:`QueueFullError` when ``max_queue`` jobs are waiting."""
        with self._cond:
            if self._stopping:
                raise QueueFullError("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFullError(f"the generation queue is full ({self.max_queue} requests)")
            job.total = sum(s.steps for s in job.sampling)
            self._waiting.append(job)
            if job.job_id is not None:
                self._tracked[job.job_id] = job
                self._tracked.move_to_end(job.job_id)
                while len(self._tracked) > self._track_limit:
                    self._tracked.popitem(last=False)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> bool:
        """Drop a job that has not started (its client went away); False if already running."""
        with self._cond:
            if job not in self._waiting:
                return False
            self._waiting.remove(job)
            job.state = "cancelled"
            job.future.cancel()
            return True

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._waiting)

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """State of a tracked job: state, done/total steps, place in the queue; None if unknown."""
        with self._cond:
            job = self._tracked.get(job_id)
            if job is None:
                return None
            position = next((i for i, j in enumerate(self._waiting) if j is job), None)
            return {
                "id": job_id,
                "state": job.state,
                "done": job.done,
                "total": job.total,
                "queue_position": position,
            }

    # -- the thread ---------------------------------------------------------------------------
    def _next_batch(self) -> list[Job] | None:
        """Wait for work; take the oldest job and every later compatible one that fits."""
        with self._cond:
            while not self._waiting and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            first = self._waiting[0]
            batch, images = [], 0
            for job in list(self._waiting):
                fits = images + job.size <= self.max_batch_images or not batch
                if job.sampling == first.sampling and fits:
                    batch.append(job)
                    images += job.size
                    self._waiting.remove(job)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            # a job whose client went away before we started is dropped here
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: Sequence[Job]) -> None:
        for job in batch:
            job.state = "running"
        start = time.perf_counter()
        try:
            results = self._generate(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            # Which job is at fault is unknown: sample each alone, so only that one fails.
            logger.warning(
                "a batch of %d requests failed (%s: %s); sampling each request alone",
                len(batch),
                type(exc).__name__,
                exc,
            )
            for job in batch:
                try:
                    self._finish(job, self._generate([job])[0])
                except Exception as alone:
                    self._fail(job, alone)
            return
        self.batches_run += 1
        logger.info(
            "generated %d images in %d requests in %.2f s",
            sum(job.size for job in batch),
            len(batch),
            time.perf_counter() - start,
        )
        for job, result in zip(batch, results, strict=True):
            self._finish(job, result)

    def _generate(self, batch: Sequence[Job]) -> list[list[bytes]]:
        """Sample ``batch`` in one call to the cascade; each job's images as encoded bytes."""
        prompts = [p for job in batch for p in job.prompts]
        seeds = [s for job in batch for s in job.seeds]

        def progress(done: int, total: int) -> None:
            for job in batch:
                job.done, job.total = done, total

        images = self.cascade.generate(
            prompts, seeds, sampling=list(batch[0].sampling), progress=progress
        )  # [N, 3, R, R]
        offset = 0
        results = []
        for job in batch:
            chunk = images[offset : offset + job.size]
            offset += job.size
            results.append(
                [self.encode(img, meta) for img, meta in zip(chunk, job.metadata, strict=True)]
            )
        return results

    def _finish(self, job: Job, result: list[bytes]) -> None:
        self.images_made += job.size
        job.state = "done"
        job.done = job.total
        job.future.set_result(result)

    def _fail(self, job: Job, exc: Exception) -> None:
        if isinstance(exc, OpenImagenError) and isinstance(exc, (ValueError, TypeError)):
            logger.info("request refused by the model: %s", exc)  # the input, not a bug
        else:
            logger.error("generation failed for a request of %d images", job.size, exc_info=exc)
        job.state = "failed"
        job.future.set_exception(exc)


__all__ = ["GenerationWorker", "Job", "QueueFullError"]
