"""Two real app processes on two ports sharing one real PostgreSQL: stats and webhooks as one service.

Each replica loads the models once for the whole module (two processes, started together). The receiver
can stall its answers, so that a replica can be SIGKILLed while it holds an event mid-POST.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import csv
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from service.webhook import EVENT_ID_HEADER
from tests.apphelpers import RunningApp, WebhookReceiver
from tests.postgres_server import TemporaryPostgres, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


class StallingReceiver(WebhookReceiver):
    """A receiver whose POSTs can be held open (``stall``) and which counts the ones in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = threading.Event()
        self.in_flight = 0
        self._lock = threading.Lock()
        handler = self.server.RequestHandlerClass
        original = handler.do_POST
        outer = self

        def do_post(request) -> None:
            with outer._lock:
                outer.in_flight += 1
            try:
                while outer.stall.is_set():
                    time.sleep(0.05)
                original(request)
            finally:
                with outer._lock:
                    outer.in_flight -= 1

        handler.do_POST = do_post

    def event_ids(self) -> collections.Counter:
        return collections.Counter(headers[EVENT_ID_HEADER] for headers, _ in list(self.requests))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """PostgreSQL, a webhook receiver and two replicas (own data dirs and ports, one DATABASE_URL)."""
    postgres = TemporaryPostgres().start()
    receiver = StallingReceiver()
    env = {"DATABASE_URL": postgres.url, "WEBHOOK_URL": receiver.url, "WEBHOOK_TIMEOUT_S": "30", "GALLERY_BACKEND": "milvus"}
    replicas = [RunningApp(tmp_path_factory.mktemp(f"replica-{index}"), **env) for index in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both load their models at the same time
        list(pool.map(lambda replica: replica.start(), replicas))
    yield replicas, receiver
    for replica in replicas:
        replica.stop()
    receiver.close()
    postgres.stop()


def noise_png(seed: int) -> bytes:
    """A small image with no face: scored 0, rejected, sent to the webhook."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def extract(replica: RunningApp, name: str, data: bytes, tries: int = 30) -> dict:
    """As a well-behaved client: a 503 (back-pressure, nothing processed or recorded) is retried after its Retry-After."""
    for _ in range(tries):
        response = requests.post(f"{replica.base_url}/extract", files={"image": (name, data)}, timeout=120)
        if response.status_code != 503:
            break
        time.sleep(float(response.headers.get("Retry-After", "1")))
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition, seconds: float = 60.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_two_hundred_events_across_both_replicas_appear_once_in_each_and_every_reject_is_delivered_once(cluster, faces_dir: Path):
    replicas, receiver = cluster
    before = [replica.stats() for replica in replicas]
    assert before[0]["count"] == before[1]["count"]
    faces = sorted(faces_dir.glob("img*.jpg"))[:20]
    uploads = [(face.name, face.read_bytes()) for face in faces] + [(f"noise-{seed}.png", noise_png(seed)) for seed in range(200 - len(faces))]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda item: extract(replicas[item[0] % 2], *item[1]), enumerate(uploads)))
    rejected = sum(answer["quality_score"] < 0.5 for answer in answers)  # AUTO_REJECT_THRESHOLD's default
    assert rejected >= 180

    after = [replica.stats() for replica in replicas]
    for snapshot, earlier in zip(after, before):
        assert snapshot["count"] - earlier["count"] == 200  # each replica sees both replicas' events, once
        assert snapshot["rejected"] - earlier["rejected"] == rejected
    assert after[0]["count"] == after[1]["count"] and after[0]["mean_quality"] == pytest.approx(after[1]["mean_quality"])

    assert wait_for(lambda: replicas[0].stats()["webhook"]["sent"] == rejected, 90)
    time.sleep(1.0)  # a duplicate, if any, would arrive now
    received = receiver.event_ids()
    assert len(received) == rejected and set(received.values()) == {1}  # every reject exactly once, both workers running
    assert replicas[1].stats()["webhook"] == {"sent": rejected, "pending": 0, "failed": 0}
    bodies = [json.loads(body) for _, body in receiver.requests]
    # API images are kept nowhere unless STORE_API_THUMBNAILS says so: the outbox carries the event without the picture
    assert {body["source"] for body in bodies} == {"api"} and all(body["image"] is None for body in bodies)


def test_gallery_api_on_the_milvus_backend(cluster, faces_dir: Path):
    """GALLERY_BACKEND=milvus (embedded Milvus Lite here): build, infer, add, remove over HTTP; the index folder is a pointer."""
    replica = cluster[0][0]
    by_identity: dict[str, list[str]] = {}
    with open(faces_dir / "identities.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            by_identity.setdefault(row["identity"], []).append(row["file"])
    chosen = {identity: sorted(files) for identity, files in sorted(by_identity.items()) if len(files) >= 5}
    pairs = [{"image": b64(faces_dir / files[0]), "label": identity} for identity, files in chosen.items()]
    built = api(replica, "face-recognition-index-build", {"imageLabelPairs": pairs, "indexType": "Flat", "metric": "IP"})
    key = built["indexKey"]
    assert sorted(built["idMap"].values()) == sorted(chosen)
    info = yaml.safe_load((Path(replica.env["DATA_DIR"]) / "indexes" / key / "index_info.yaml").read_text())
    assert info["backend"] == "milvus" and info["feature_dim"] == 512 and info["count"] == len(chosen)
    for identity, files in chosen.items():  # another photo of each person finds them
        assert infer_label(replica, key, faces_dir / files[-1]) == identity
    victim = next(iter(chosen))
    added = api(replica, "face-recognition-index-add", {"imageLabelPairs": [{"image": b64(faces_dir / chosen[victim][1]), "label": victim}], "indexKey": key})
    victim_ids = [int(i) for i, label in added["idMap"].items() if label == victim]
    assert len(victim_ids) == 2
    remaining = api(replica, "face-recognition-index-remove", {"ids": victim_ids, "indexKey": key})["idMap"]
    assert victim not in remaining.values() and len(remaining) == len(chosen) - 1
    assert infer_label(replica, key, faces_dir / chosen[victim][-1]) != victim


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def api(replica: RunningApp, route: str, payload: dict) -> dict:
    response = requests.post(f"{replica.base_url}/{route}", json=payload, timeout=300)
    body = response.json()
    assert response.status_code == 200 and body["errorCode"] == 0, body
    return body["result"]


def infer_label(replica: RunningApp, key: str, image: Path) -> str | None:
    faces = api(replica, "face-recognition-infer", {"image": b64(image), "indexKey": key})["faces"]
    return faces[0]["recResults"][0]["label"] if faces and faces[0]["recResults"] else None


def test_killing_a_replica_mid_delivery_loses_nothing(cluster):
    replicas, receiver = cluster
    survivor, doomed = replicas
    delivered_before = set(receiver.event_ids())
    receiver.stall.set()  # every POST now hangs until released: both workers will be holding one
    try:
        for seed in range(1000, 1030):
            extract(replicas[seed % 2], f"noise-{seed}.png", noise_png(seed))
        assert wait_for(lambda: receiver.in_flight >= 2, 30)  # one event held by each replica's worker
        doomed.kill()  # SIGKILL while its POST is in flight: its row lock dies with its connection
    finally:
        receiver.stall.clear()
    assert wait_for(lambda: survivor.stats()["webhook"]["pending"] == 0, 120)
    webhook = survivor.stats()["webhook"]
    assert webhook["failed"] == 0 and webhook["sent"] == len(delivered_before) + 30
    received = receiver.event_ids()
    assert len(set(received) - delivered_before) == 30  # nothing lost
    assert sum(received.values()) - len(delivered_before) in (30, 31)  # the killed replica's event may arrive twice, never more
