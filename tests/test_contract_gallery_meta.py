"""One suite over both gallery metadata stores: SQLite (one machine) and a real PostgreSQL started by the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from storage.gallery_meta import REMEMBERED_REQUESTS, GalleryRecord, KeyTakenError, NameTakenError
from storage.gallery_meta_sqlite import SQLiteGalleryMeta
from tests.postgres_server import TemporaryPostgres, unavailable_reason


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if unavailable_reason() is not None:
        pytest.skip(str(unavailable_reason()))
    with TemporaryPostgres() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgres"])
def make(request, tmp_path):
    opened = []

    def factory():
        if request.param == "sqlite":
            store = SQLiteGalleryMeta(tmp_path / "galleries.sqlite3")
        else:
            from storage.gallery_meta_postgres import PostgresGalleryMeta

            store = PostgresGalleryMeta(request.getfixturevalue("postgres_url"))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        for record in store.list():
            store.delete(record.key)
        store.close()


def record(key: str, name: str, backend: str = "milvus") -> GalleryRecord:
    return GalleryRecord(key, name, "faceplugin-r512", 512, "Flat", "IP", backend, f"frood_{key}" if backend == "milvus" else "")


def test_add_get_by_name_list_rename_delete(make):
    store = make()
    added = store.add(record("k1", "lobby"))
    assert added.created and added.location == "frood_k1" and added.dim == 512
    store.add(record("k2", "annex", "faiss"))
    assert store.get("k1") == added and store.by_name("lobby") == added and store.get("nope") is None and store.by_name("nope") is None
    assert [item.name for item in store.list()] == ["annex", "lobby"]
    with pytest.raises(NameTakenError):
        store.add(record("k3", "lobby"))
    with pytest.raises(KeyTakenError):
        store.add(record("k1", "other"))
    with pytest.raises(NameTakenError):
        store.rename("k1", "annex")
    assert store.rename("k1", "entrance") and store.by_name("entrance").key == "k1" and store.by_name("lobby") is None
    assert not store.rename("nope", "x")
    assert store.delete("k1") and not store.delete("k1") and [item.key for item in store.list()] == ["k2"]


def test_the_ledger_remembers_per_gallery_keeps_the_newest_and_goes_with_the_gallery(make):
    store = make()
    store.add(record("k1", "a"))
    store.add(record("k2", "b"))
    store.remember("k1", "r1", {"added": [1, 2], "fingerprint": "f"})
    assert store.recall("k1", "r1") == {"added": [1, 2], "fingerprint": "f"} and store.recall("k2", "r1") is None
    for index in range(REMEMBERED_REQUESTS + 5):
        store.remember("k2", f"q{index}", {"n": index})
    assert store.recall("k2", "q0") is None and store.recall("k2", f"q{REMEMBERED_REQUESTS + 4}") == {"n": REMEMBERED_REQUESTS + 4}
    assert store.recall("k2", "q5") == {"n": 5}
    store.delete("k1")
    store.add(record("k1", "a"))
    assert store.recall("k1", "r1") is None


def test_two_stores_on_one_database_take_turns_writing_a_gallery(make):
    first, second = make(), make()
    first.add(record("k1", "a"))
    events = []

    def writer(store, name):
        with store.writing("k1"):
            events.append(f"{name} in")
            time.sleep(0.3)
            events.append(f"{name} out")

    threads = [threading.Thread(target=writer, args=(store, name)) for store, name in ((first, "one"), (second, "two"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events[0].endswith("in") and events[1] == events[0].replace("in", "out")  # never interleaved
    with first.writing("k1"), second.writing("other"):  # another gallery is not held up
        pass
