"""Request batcher: one inference worker per pipeline answers concurrent requests from micro-batches.

Request threads (HTTP, UI) decode their own image, then ``submit`` it and wait. The worker takes the
first waiting request, gathers more for at most ``max_wait_ms`` (or until ``max_batch``), runs them
through ``FacePipeline.analyze_batch`` in one go, and hands each request its own result. Only the
worker runs the models, so 40 request threads no longer fight over the cores with 40 × torch threads.
A full queue is refused at once with :class:`QueueFullError` (HTTP 503 with ``Retry-After``) instead
of piling up timeouts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from errors import FroodError

log = logging.getLogger("frood.batcher")


class QueueFullError(FroodError):
    """Too many requests are waiting for the models: come back after ``retry_after_s`` seconds."""

    status = 503
    code = "busy"

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}


class BatcherStoppedError(FroodError):
    status = 503
    code = "stopped"


@dataclass
class _Job:
    image: Any
    name: str
    thorough: bool
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)


class RequestBatcher:
    """Owns one pipeline's inference: ``analyze(image)`` from any thread, micro-batched on one worker."""

    def __init__(self, pipeline: Any, max_batch: int = 16, max_wait_ms: float = 5.0, queue_length: int = 64, retry_after_s: int = 1):
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.retry_after_s = retry_after_s
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_length)
        self._stopped = threading.Event()
        self.batches = 0
        self.requests = 0
        self._worker = threading.Thread(target=self._run, name=f"frood-infer-{pipeline.device}", daemon=True)
        self._worker.start()

    @classmethod
    def from_settings(cls, pipeline: Any, settings: Any) -> RequestBatcher:
        return cls(pipeline, settings.batch_max_size, settings.batch_max_wait_ms, settings.batch_queue_length, settings.batch_retry_after_s)

    def submit(self, image: Any, name: str = "", thorough: bool = False) -> Future:
        """Queue one image; the future holds its ``AnalysisResult`` or its typed error."""
        if self._stopped.is_set():
            raise BatcherStoppedError("the inference worker has stopped")
        job = _Job(image, name, thorough)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            log.warning("Inference queue full (%d waiting): request refused with 503", self._queue.maxsize)
            raise QueueFullError(
                f"the server is busy ({self._queue.maxsize} requests waiting); retry in {self.retry_after_s} s", self.retry_after_s
            ) from None
        return job.future

    def analyze(self, image: Any, name: str = "", thorough: bool = False, timeout: float | None = None) -> Any:
        """Blocking ``submit``: the result, or the input's typed error raised here."""
        return self.submit(image, name, thorough).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._worker.join(timeout)

    def _gather(self, first: _Job) -> list[_Job]:
        batch = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stopped.set()
                break
            batch.append(job)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = self._gather(first)
            for thorough in (False, True):
                jobs = [job for job in batch if job.thorough == thorough and job.future.set_running_or_notify_cancel()]
                if jobs:
                    self._answer(jobs, thorough)
            if self._stopped.is_set():
                break
        self._fail_waiting()

    def _answer(self, jobs: list[_Job], thorough: bool) -> None:
        try:
            results = self.pipeline.analyze_batch([job.image for job in jobs], [job.name for job in jobs], thorough=thorough)
        except Exception as error:  # the models failed for the whole batch: every request gets the error
            log.exception("Inference batch of %d failed", len(jobs))
            for job in jobs:
                job.future.set_exception(error)
            return
        self.batches += 1
        self.requests += len(jobs)
        for job, result in zip(jobs, results):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _fail_waiting(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(BatcherStoppedError("the inference worker has stopped"))
