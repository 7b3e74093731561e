"""Request batcher: one inference worker per pipeline answers concurrent requests from micro-batches.

Request threads (HTTP, UI) decode and check their own image first (``pipeline.decode``: the header's limits,
then the pixels), so only a valid image ever joins a batch; then they ``submit`` it and wait. The worker takes
the first waiting request, gathers more for at most ``max_wait_ms`` (or until ``max_batch``), runs them through
``FacePipeline.analyze_batch`` in one go, and hands each request its own result. Only the worker runs the
models, so 40 request threads no longer fight over the cores with 40 × torch threads.

One request's input never decides another's answer: if a whole batch fails, its members are run again one by
one, so only the image that fails alone gets an error.

Back-pressure: every request the batcher holds (admitted by ``admit`` before it even has a thread, or
submitted directly) counts; the expected wait of a new one is that count times a moving average of the
per-image service time. Beyond ``max_queue_wait_s`` (or ``queue_length`` requests) it is refused at once with
:class:`QueueFullError` (HTTP 503 with ``Retry-After``), so the requests accepted keep a bounded latency.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from errors import FroodError

log = logging.getLogger("frood.batcher")
EMA_WEIGHT = 0.2  # weight of the newest batch in the moving average of the per-image service time
MAX_RETRY_AFTER_S = 60
BUSY_LOG_EVERY_S = 10.0


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


class ImageAnalysisError(FroodError):
    """The models failed on this one image (alone, after its batch failed): this input cannot be analysed."""

    status = 422
    code = "analysis_failed"


@dataclass
class _Job:
    image: Any
    name: str
    thorough: bool
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)


class Ticket:
    """A place in the batcher held by an admitted request until ``release`` (idempotent; a context manager)."""

    admitted = True

    def __init__(self, batcher: RequestBatcher | None, images: int):
        self._batcher = batcher
        self.images = images

    def release(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher._leave(self.images)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RequestBatcher:
    """Owns one pipeline's inference: ``analyze(image)`` from any thread, micro-batched on one worker."""

    def __init__(
        self,
        pipeline: Any,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        queue_length: int = 64,
        retry_after_s: int = 1,
        max_queue_wait_s: float = 5.0,
    ):
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.retry_after_s = retry_after_s
        self.queue_length = queue_length
        self.max_queue_wait_s = max_queue_wait_s
        # admitted requests may all be queued at once, and direct submits (the UI's) beside them
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=2 * queue_length)
        self._stopped = threading.Event()
        self._count_lock = threading.Lock()
        self._held = 0  # images admitted or submitted and not yet answered: the queue depth /health reports
        self.seconds_per_image: float | None = None  # moving average over batches; None until the second batch
        self._measured = 0
        self.batches = 0
        self.requests = 0
        self.retried_batches = 0
        self.refused = 0
        self._refused_logged = 0
        self._busy_logged_at = -BUSY_LOG_EVERY_S
        self._worker = threading.Thread(target=self._run, name=f"frood-infer-{pipeline.device}", daemon=True)
        self._worker.start()

    @classmethod
    def from_settings(cls, pipeline: Any, settings: Any) -> RequestBatcher:
        return cls(
            pipeline,
            settings.batch_max_size,
            settings.batch_max_wait_ms,
            settings.batch_queue_length,
            settings.batch_retry_after_s,
            settings.batch_max_queue_wait_s,
        )

    # -- admission ------------------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Images held (admitted, queued or in the running batch): a plain read, never waits for the worker."""
        return self._held

    def expected_wait_s(self, extra: int = 1) -> float:
        """How long ``extra`` more images would wait for their answer: everything held before them × s/image."""
        per_image = self.seconds_per_image
        return 0.0 if per_image is None else (self._held + extra) * per_image

    def refusal(self, images: int = 1) -> tuple[float, int] | None:
        """``(expected wait, Retry-After)`` if ``images`` more would be refused now, else None (a plain read, no lock)."""
        held = self._held
        wait = self.expected_wait_s(images)
        if held > 0 and (held + images > self.queue_length or wait > self.max_queue_wait_s):
            return wait, max(self.retry_after_s, min(MAX_RETRY_AFTER_S, math.ceil(wait - self.max_queue_wait_s)))
        return None

    def _enter(self, images: int) -> None:
        """Count ``images`` in, or refuse them with 503 when the expected wait or the queue bound is exceeded."""
        if self._stopped.is_set():
            raise BatcherStoppedError("the inference worker has stopped")
        with self._count_lock:
            wait = self.expected_wait_s(images)
            busy = self._held > 0  # a request alone is never refused: the estimate only orders requests behind others
            if busy and (self._held + images > self.queue_length or wait > self.max_queue_wait_s):
                self.refused += 1
                retry = max(self.retry_after_s, min(MAX_RETRY_AFTER_S, math.ceil(wait - self.max_queue_wait_s)))
                held = self._held
            else:
                self._held += images
                return
        self._log_busy(held, wait)
        raise QueueFullError(f"the server is busy ({held} images waiting, about {wait:.0f} s); retry in {retry} s", retry)

    def note_refused(self) -> None:
        self.refused += 1
        self._log_busy(self._held, self.expected_wait_s())

    def _log_busy(self, held: int, wait: float) -> None:
        """One warning line per BUSY_LOG_EVERY_S at most, with the count refused since: overload never floods the log."""
        now = time.monotonic()
        if now - self._busy_logged_at < BUSY_LOG_EVERY_S:
            return
        self._busy_logged_at = now
        refused, self._refused_logged = self.refused - self._refused_logged, self.refused
        log.warning("Busy: %d images held, expected wait %.1f s > %.1f s: %d requests refused with 503 since the last such line",
                    held, wait, self.max_queue_wait_s, refused)

    def _leave(self, images: int) -> None:
        with self._count_lock:
            self._held = max(0, self._held - images)

    def admit(self, images: int = 1) -> Ticket:
        """Reserve a place before the request's work starts (in the event loop, before a thread is free)."""
        self._enter(images)
        return Ticket(self, images)

    def submit(self, image: Any, name: str = "", thorough: bool = False, admitted: bool = False) -> Future:
        """Queue one decoded (already checked) image; the future holds its ``AnalysisResult`` or its typed error.

        ``admitted``: the caller holds a :class:`Ticket` for it (not counted twice, not refused again).
        """
        if self._stopped.is_set():
            raise BatcherStoppedError("the inference worker has stopped")
        if not admitted:
            self._enter(1)
        job = _Job(image, name, thorough)
        if not admitted:
            job.future.add_done_callback(lambda _: self._leave(1))
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            if not admitted:
                self._leave(1)
            self.refused += 1
            log.warning("Inference queue full (%d waiting): request refused with 503", self._queue.maxsize)
            raise QueueFullError(
                f"the server is busy ({self._queue.maxsize} requests waiting); retry in {self.retry_after_s} s", self.retry_after_s
            ) from None
        return job.future

    def analyze(self, image: Any, name: str = "", thorough: bool = False, timeout: float | None = None, admitted: bool = False) -> Any:
        """Blocking ``submit``: the result, or the input's typed error raised here."""
        return self.submit(image, name, thorough, admitted).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._worker.join(timeout)

    # -- the worker -----------------------------------------------------------------------------------------

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

    def _run_batch(self, jobs: list[_Job], thorough: bool) -> list[Any]:
        start = time.perf_counter()
        results = self.pipeline.analyze_batch([job.image for job in jobs], [job.name for job in jobs], thorough=thorough)
        per_image = (time.perf_counter() - start) / len(jobs)
        self._measured += 1
        previous = self.seconds_per_image
        if self._measured == 1:
            pass  # the first batch also warms the models up (tracing, allocations): not a service time
        elif previous is None:
            self.seconds_per_image = per_image
        else:  # an outlier batch moves the average by at most a factor of 1 + 3 × EMA_WEIGHT
            self.seconds_per_image = (1 - EMA_WEIGHT) * previous + EMA_WEIGHT * min(per_image, 4 * previous)
        return list(results)

    def _answer(self, jobs: list[_Job], thorough: bool) -> None:
        try:
            results = self._run_batch(jobs, thorough)
        except Exception as error:  # noqa: BLE001 (isolated below: each member alone)
            if len(jobs) == 1:
                results = [self._alone_failed(jobs[0], error)]
            else:  # one member may have broken the batch: run each alone, so only the culprit fails
                log.warning("Inference batch of %d failed (%s: %s); answering its members one by one",
                            len(jobs), type(error).__name__, str(error)[:200])
                self.retried_batches += 1
                results = [self._alone(job, thorough) for job in jobs]
        self.batches += 1
        self.requests += len(jobs)
        for job, result in zip(jobs, results):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _alone(self, job: _Job, thorough: bool) -> Any:
        try:
            return self._run_batch([job], thorough)[0]
        except Exception as error:  # noqa: BLE001 (this image's own answer)
            return self._alone_failed(job, error)

    @staticmethod
    def _alone_failed(job: _Job, error: Exception) -> BaseException:
        """The answer of an image the models fail on by itself: its typed error, or a typed 422 (logged once, with
        the traceback: an untyped failure is a fault of ours to fix, but this input's alone)."""
        if isinstance(error, FroodError):
            return error
        log.error("Image %s could not be analysed", job.name or "upload", exc_info=error)
        wrapped = ImageAnalysisError(f"this image could not be analysed ({type(error).__name__})")
        wrapped.__cause__ = error
        return wrapped

    def _fail_waiting(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(BatcherStoppedError("the inference worker has stopped"))
