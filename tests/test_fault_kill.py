"""SIGKILL the app at random moments during a stream of gallery adds and removes (loopback, fixed seed, bounded).

After each kill the app is restarted and the client retries its unanswered request with the same ``requestId``.
Every index key must load, no temporary file may remain, the gallery must hold exactly the acknowledged
enrolments (none lost, none twice), and the stats store and webhook outbox must be intact and hold a row/event
for every acknowledged image.
"""

from __future__ import annotations

import base64
import io
import json
import random
import sqlite3
import threading
from pathlib import Path

import requests
from PIL import Image

from storage.gallery_faiss import LOCK_FILE, POINTER_FILE, TEMP_PREFIX, GalleryIndex
from tests.apphelpers import RunningApp, free_port

SEED = 11
ROUNDS = 3  # kills; each restart loads the models again, so this bounds the test's time
SOURCE = "fault-rig"


def small_b64(path: Path, side: int = 320) -> str:
    with Image.open(path) as photo:
        photo = photo.convert("RGB")
        photo.thumbnail((side, side))
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def blank_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (160, 160), (120, 120, 120)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def key_folder_is_clean(folder: Path) -> bool:
    names = sorted(path.name for path in folder.iterdir())
    return len(names) == 3 and {POINTER_FILE, LOCK_FILE} <= set(names) and not any(name.startswith(TEMP_PREFIX) for name in names)


def check_stores(data_dir: Path, acked_images: int, sent_images: int, acked_blanks: int, sent_blanks: int) -> None:
    """Both SQLite files intact; every acknowledged image has its stats row and every acknowledged reject its event."""
    with sqlite3.connect(data_dir / "stats.sqlite3") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = connection.execute("SELECT COUNT(*) FROM events WHERE source = ?", (SOURCE,)).fetchone()[0]
    assert acked_images <= rows <= sent_images, (acked_images, rows, sent_images)
    with sqlite3.connect(data_dir / "webhook-outbox.sqlite3") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        bodies = [json.loads(body) for (body,) in connection.execute("SELECT body FROM outbox")]
    events = [body for body in bodies if body.get("source") == SOURCE]
    assert acked_blanks <= len(events) <= sent_blanks, (acked_blanks, len(events), sent_blanks)
    assert len({event["event_id"] for event in events}) == len(events)


def test_sigkill_during_gallery_writes_loses_nothing_and_doubles_nothing(tmp_path, faces_dir):
    rng = random.Random(SEED)
    photos = [small_b64(path) for path in sorted(faces_dir.glob("img*.jpg"))[:10]]
    blank = blank_b64()
    data_dir = tmp_path / "app"
    app = RunningApp(data_dir, WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hook", WEBHOOK_TIMEOUT_S="0.2")
    model: dict[str, str] = {}  # id → label, as acknowledged to the client
    key: str | None = None
    pending: tuple[str, dict, int, int] | None = None  # (route, body, images, blanks) of the unanswered request
    counts = {"acked_images": 0, "sent_images": 0, "acked_blanks": 0, "sent_blanks": 0}
    serial = 0

    def next_request() -> tuple[str, dict, int, int]:
        nonlocal serial
        serial += 1
        if key is None:
            body = {"imageLabelPairs": [{"image": photos[0], "label": "p0"}], "requestId": "fault-build", "source": SOURCE}
            return "face-recognition-index-build", body, 1, 0
        if model and rng.random() < 0.3:
            victim = int(rng.choice(sorted(model)))
            return "face-recognition-index-remove", {"ids": [victim], "indexKey": key, "requestId": f"op-{serial}", "source": SOURCE}, 0, 0
        pairs = [{"image": rng.choice(photos), "label": f"p{serial}"}]
        with_blank = rng.random() < 0.3
        if with_blank:
            pairs.append({"image": blank, "label": f"blank{serial}"})  # no face: skipped, counted, sent to the webhook
        body = {"imageLabelPairs": pairs, "indexKey": key, "requestId": f"op-{serial}", "source": SOURCE}
        return "face-recognition-index-add", body, len(pairs), int(with_blank)

    def apply(route: str, body: dict, answer: dict) -> None:
        nonlocal key, model
        id_map = answer["idMap"]
        if route.endswith("remove"):
            expected = {i: label for i, label in model.items() if int(i) not in body["ids"]}
            assert id_map == expected, (id_map, expected)
        else:
            key = answer.get("indexKey", key)
            added = {i: label for i, label in id_map.items() if i not in model}
            assert list(added.values()) == [body["imageLabelPairs"][0]["label"]], added  # enrolled exactly once
            assert all(id_map.get(i) == label for i, label in model.items())  # nothing acknowledged was lost
        model = dict(id_map)

    for round_number in range(ROUNDS + 1):
        app.start()
        last_round = round_number == ROUNDS
        killer = None if last_round else threading.Timer(rng.uniform(2.0, 8.0), app.kill)
        if killer:
            killer.start()
        first_answer = True
        for answered in range(200):
            if last_round and answered == 3:
                break
            route, body, images, blanks = pending or next_request()
            counts["sent_images"] += images
            counts["sent_blanks"] += blanks
            try:
                response = requests.post(f"{app.base_url}/{route}", json=body, timeout=120)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                pending = (route, body, images, blanks)  # killed before it answered: retry after the restart
                break
            assert response.status_code == 200, response.text[:500]
            answer = response.json()["result"]
            apply(route, body, answer)
            if not answer.get("replayed"):
                counts["acked_images"] += images
                counts["acked_blanks"] += blanks
            pending = None
            if first_answer and key is not None:  # the restarted app swept what the kill left behind
                indexes = data_dir / "indexes"
                assert not [p.name for p in indexes.iterdir() if p.name.startswith(TEMP_PREFIX)]
                assert key_folder_is_clean(indexes / key), sorted(p.name for p in (indexes / key).iterdir())
                first_answer = False
        else:
            raise AssertionError("the app was neither killed nor done within 200 requests")
        if killer:
            killer.join()
            app.process.wait(timeout=30)
        else:
            app.stop()
        check_stores(data_dir, **counts)
        indexes = data_dir / "indexes"
        for folder in indexes.iterdir() if indexes.is_dir() else []:  # every index key loads
            if not folder.name.startswith(TEMP_PREFIX):
                GalleryIndex.load(folder)
    assert key is not None and len(model) >= 3
    on_disk = GalleryIndex.load(data_dir / "indexes" / key).labels
    assert {str(i): label for i, label in on_disk.items()} == model
    print(f"fault test: {counts}, {len(model)} enrolments, {serial} requests")
