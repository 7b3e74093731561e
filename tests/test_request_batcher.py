"""The server's request batcher: concurrent requests each get their own answer; one bad image fails only itself;
a full queue, or an expected wait over BATCH_MAX_QUEUE_WAIT_S, says 503 with Retry-After."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engine.decode import decode_image
from service.batcher import ImageAnalysisError, QueueFullError, RequestBatcher


def test_64_concurrent_requests_each_get_their_own_result(pipeline, faces_dir, clean_results):
    """64 threads at once: no error, every answer is the submitted photo's (no cross-talk), and they were batched."""
    names = sorted(clean_results)[:32] * 2
    decoded = {name: decode_image(faces_dir / name, name=name) for name in set(names)}
    batcher = RequestBatcher(pipeline, max_batch=16, max_wait_ms=50, queue_length=64)
    start = threading.Barrier(len(names))

    def request(name: str):
        start.wait()
        return name, batcher.analyze(decoded[name], name)

    try:
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            answers = list(pool.map(request, names))
    finally:
        batcher.stop()
    assert len(answers) == 64
    for name, result in answers:
        assert result.name == name
        expected = clean_results[name].face
        assert float(np.dot(result.face.feature, expected.feature)) >= 0.9999, name
        assert result.face.quality == pytest.approx(expected.quality, abs=1e-4), name
    assert batcher.requests == 64
    assert batcher.batches < 64  # requests really shared batches
    assert max(result.batch_size for _, result in answers) > 1


class _GatedPipeline:
    """The real pipeline behind a gate the test opens: holds the worker busy on purpose."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.device = pipeline.device
        self.model = pipeline.model
        self.gate = threading.Event()
        self.entered = threading.Event()

    def analyze_batch(self, images, names, thorough=False):
        self.entered.set()
        self.gate.wait(60)
        return self.pipeline.analyze_batch(images, names, thorough=thorough)


def test_full_queue_answers_503_with_retry_after(pipeline, faces_dir, monkeypatch):
    from api import routes as api_routes
    from service import faces as service
    from service.access import door

    monkeypatch.setitem(service._pipelines, pipeline.model, pipeline)
    gated = _GatedPipeline(pipeline)
    batcher = RequestBatcher(gated, max_batch=1, max_wait_ms=0, queue_length=2, retry_after_s=3)  # one running + one waiting
    monkeypatch.setitem(service._batchers, pipeline.model, batcher)
    app = FastAPI()
    api_routes.install(app)

    @app.middleware("http")
    async def anonymous(request, call_next):  # what the door does for an open deployment (no API_KEYS)
        request.state.frood_principal = door().principal_for_key(None)
        return await call_next(request)

    client = TestClient(app)
    photo = (faces_dir / "img1.jpg").read_bytes()

    def post():
        return client.post("/extract", files={"image": ("img1.jpg", photo, "image/jpeg")}, data={"model_name": "default"})

    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            running = pool.submit(post)
            assert gated.entered.wait(60)  # the worker holds the first request
            waiting = pool.submit(post)
            deadline = time.monotonic() + 60
            while batcher._queue.qsize() < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            refused = post()
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "3"
            assert "busy" in refused.json()["detail"]
        finally:
            gated.gate.set()
        for answer in (running.result(120), waiting.result(120)):
            assert answer.status_code == 200
            assert len(answer.json()["feature"]) == 512
    batcher.stop()


class _FakePipeline:
    """No models: answers each image's name, takes ``seconds`` per image, and breaks any batch holding "poison"."""

    device = "cpu"
    model = "fake"

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds
        self.batch_sizes: list[int] = []

    def analyze_batch(self, images, names, thorough=False):
        self.batch_sizes.append(len(images))
        time.sleep(self.seconds * len(images))
        if "poison" in images:
            raise RuntimeError("index 7 is out of bounds for dimension 0 with size 7")  # an untyped failure of the models
        return [f"result of {image}" for image in images]


def test_a_failing_batch_is_answered_one_by_one_so_only_the_culprit_fails():
    """Issue 22: one odd image used to fail every request of its micro-batch; now only its own."""
    pipeline = _FakePipeline()
    batcher = RequestBatcher(pipeline, max_batch=8, max_wait_ms=300, queue_length=16)
    images = [f"photo-{i}" for i in range(7)] + ["poison"]
    try:
        futures = [batcher.submit(image, image) for image in images]  # all within 300 ms: one batch of 8
        answers = {}
        for image, future in zip(images, futures):
            try:
                answers[image] = future.result(30)
            except Exception as error:
                answers[image] = error
    finally:
        batcher.stop()
    assert pipeline.batch_sizes[0] == 8  # they really shared a batch
    assert {image: answers[image] for image in images[:7]} == {image: f"result of {image}" for image in images[:7]}
    assert isinstance(answers["poison"], ImageAnalysisError) and answers["poison"].status == 422
    assert batcher.retried_batches == 1 and batcher.depth == 0


def test_expected_wait_over_the_limit_is_refused_at_once_with_retry_after():
    """The wait a new request would have (images held × moving average of s/image) decides, not only the queue's length."""
    pipeline = _FakePipeline(seconds=0.1)
    batcher = RequestBatcher(pipeline, max_batch=1, max_wait_ms=0, queue_length=1000, retry_after_s=1, max_queue_wait_s=1.0)
    try:
        batcher.analyze("warm-up", timeout=30)  # the first batch warms the models up: not measured
        assert batcher.seconds_per_image is None
        batcher.analyze("measured", timeout=30)  # the second measures the service time
        assert batcher.seconds_per_image == pytest.approx(0.1, abs=0.05)
        tickets, refused = [], None
        for _ in range(100):
            try:
                tickets.append(batcher.admit())
            except QueueFullError as error:
                refused = error
                break
        assert refused is not None and refused.status == 503 and int(refused.headers["Retry-After"]) >= 1
        assert 5 <= len(tickets) <= 15  # about 1.0 s / 0.1 s per image, far below the queue length of 1000
        assert batcher.depth == len(tickets)
        started = time.perf_counter()
        with pytest.raises(QueueFullError):
            batcher.submit("one more")  # direct submits (the UI's) are refused the same way, at once
        assert time.perf_counter() - started < 0.5
        for ticket in tickets:
            ticket.release()
        assert batcher.depth == 0
        assert batcher.analyze("after", timeout=30) == "result of after"  # accepted again once the queue drained
    finally:
        batcher.stop()
