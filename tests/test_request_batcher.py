"""The server's request batcher: concurrent requests each get their own answer; a full queue says 503."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engine.decode import decode_image
from service.batcher import RequestBatcher


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

    monkeypatch.setitem(service._pipelines, pipeline.model, pipeline)
    gated = _GatedPipeline(pipeline)
    batcher = RequestBatcher(gated, max_batch=1, max_wait_ms=0, queue_length=1, retry_after_s=3)
    monkeypatch.setitem(service._batchers, pipeline.model, batcher)
    app = FastAPI()
    api_routes.install(app)
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
