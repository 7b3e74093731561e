"""The stats store's contract, run on every backend: SQLite (one machine) and PostgreSQL (a real throw-away
server, tests/postgres_server.py). What the Monitor tab and ``/stats`` read: totals, hourly buckets, the day ×
hour heatmap, the low-quality drill-down with thumbnails, the per-source table; concurrent writers,
retention and the privacy switch. What only one backend does stays in tests/test_store.py (SQLite files)
and tests/test_postgres_store.py (migrations, replicas, the answers of both on the same traffic)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from storage.stats import Event
from tests.postgres_server import TemporaryPostgres, unavailable_reason

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
BACKENDS = ("sqlite", "postgres")
COLUMNS = ["source", "count", "mean_quality", "low_quality_rate", "top_reasons"]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A real throw-away PostgreSQL for the module (tests/postgres_server.py); skips where none can start."""
    if unavailable_reason():
        pytest.skip(unavailable_reason())
    server = TemporaryPostgres().start()
    yield server.url
    server.stop()


@pytest.fixture(params=BACKENDS)
def open_store(request, tmp_path: Path):
    """``open_store(thumbnails_dir=…, **options)`` → a handle on this test's (empty at first) stats data; a second call
    is another process on the same data (PostgreSQL: another replica, with its own disk)."""
    made = []

    def make(thumbnails_dir: Path | None = None, **options):
        thumbnails_dir = thumbnails_dir or tmp_path / "thumbs"
        if request.param == "sqlite":
            from storage.stats_sqlite import SQLiteStore

            made.append(SQLiteStore(tmp_path / "stats.sqlite3", thumbnails_dir, **options))
        else:
            from storage.stats_postgres import PostgresStore

            made.append(PostgresStore(request.getfixturevalue("postgres_url"), thumbnails_dir, **options))
            if len(made) == 1:
                with made[0]._pool.connection() as connection:
                    connection.execute("TRUNCATE events RESTART IDENTITY")
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


def event(quality: float | None, when: dt.datetime, source: str = "ui", reasons: list[str] | None = None, **extra) -> Event:
    return Event(source=source, operation="extract", model="m", quality=quality, latency_ms=5.0, timestamp=when, reason_codes=reasons or [], **extra)


def test_eight_threads_times_two_hundred_writes_gives_exactly_1600_rows(store):
    def writer(worker: int) -> None:
        for index in range(200):
            store.record(event(0.5 + worker / 100, T0 + dt.timedelta(seconds=index)))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))  # a writer's error is raised here
    assert store.count_events() == 1600


def test_hourly_aggregation_on_a_hand_built_table(store):
    qualities = {0: [0.9, 0.3, 0.6], 2: [0.2, 0.1]}  # hour offset → qualities; hour 1 has no traffic
    for offset, values in qualities.items():
        for minute, quality in enumerate(values):
            store.record(event(quality, T0 + dt.timedelta(hours=offset, minutes=minute * 10), rejected=quality < 0.4))
    store.record(event(0.8, T0 + dt.timedelta(hours=5)))  # outside the window
    frame = store.hourly(T0, T0 + dt.timedelta(hours=3))
    assert list(frame["hour"]) == list(pd.date_range(T0, periods=3, freq="h"))
    assert list(frame["count"]) == [3, 0, 2]
    assert frame["mean_quality"][0] == pytest.approx(0.6)
    assert np.isnan(frame["mean_quality"][1])
    assert frame["mean_quality"][2] == pytest.approx(0.15)
    assert frame["low_quality_rate"][0] == pytest.approx(1 / 3)
    assert frame["low_quality_rate"][2] == pytest.approx(1.0)
    assert store.summary(T0) == {"count": 6, "mean_quality": pytest.approx(2.9 / 6), "low_quality_rate": pytest.approx(3 / 6), "rejected": 3}
    assert store.summary(T0 + dt.timedelta(days=1)) == {"count": 0, "mean_quality": None, "low_quality_rate": None, "rejected": 0}


def test_day_hour_heatmap(store):
    now = T0 + dt.timedelta(hours=1)
    store.record(event(0.2, T0))
    store.record(event(0.9, T0 + dt.timedelta(minutes=5)))
    store.record(event(0.1, T0 - dt.timedelta(days=2, hours=3)))
    store.record(event(0.1, T0 - dt.timedelta(days=9)))  # before the 7 days shown
    table = store.day_hour_heatmap(days=7, now=now)
    assert table.shape == (7, 24)
    assert list(table.index) == [(T0 - dt.timedelta(days=offset)).date() for offset in range(6, -1, -1)]
    assert table.loc[T0.date(), 10] == pytest.approx(0.5)
    assert table.loc[(T0 - dt.timedelta(days=2)).date(), 7] == pytest.approx(1.0)
    assert np.isnan(table.loc[T0.date(), 11])
    assert int(table.notna().sum().sum()) == 2


def test_unscored_events_count_but_stay_out_of_the_quality_rates(store):
    store.record(event(None, T0))
    store.record(event(None, T0 + dt.timedelta(hours=1)))
    store.record(event(0.2, T0 + dt.timedelta(hours=1, minutes=1)))
    frame = store.hourly(T0, T0 + dt.timedelta(hours=2))
    assert list(frame["count"]) == [1, 2]
    assert np.isnan(frame["mean_quality"][0]) and np.isnan(frame["low_quality_rate"][0])
    assert frame["low_quality_rate"][1] == pytest.approx(1.0)
    assert store.summary(T0)["low_quality_rate"] == pytest.approx(1.0)
    assert np.isnan(store.day_hour_heatmap(days=1, now=T0).loc[T0.date(), 10])


def test_low_quality_events_of_an_hour_newest_first_with_their_thumbnails(open_store, tmp_path):
    """A thumbnail recorded through one handle is shown through another (PostgreSQL: another replica's disk)."""
    writer, reader = open_store(tmp_path / "replica-a"), open_store(tmp_path / "replica-b")
    image = np.zeros((300, 200, 3), np.uint8)
    image[:, :100] = 255  # left half white
    writer.record(event(0.2, T0 + dt.timedelta(minutes=1), reasons=["blurred"]), thumbnail=image)
    writer.record(event(0.3, T0 + dt.timedelta(minutes=2)))
    writer.record(event(0.9, T0 + dt.timedelta(minutes=3)))  # not low quality
    writer.record(event(0.1, T0 + dt.timedelta(hours=1)))  # the next hour
    shown = reader.low_quality_in_hour(T0)
    assert [(e.quality, e.reason_codes, e.timestamp) for e in shown] == [
        (pytest.approx(0.3), [], T0 + dt.timedelta(minutes=2)),
        (pytest.approx(0.2), ["blurred"], T0 + dt.timedelta(minutes=1)),
    ]
    assert shown[0].thumbnail_path is None and shown[1].id is not None
    with Image.open(shown[1].thumbnail_path) as thumbnail:
        assert max(thumbnail.size) == 128 and thumbnail.getpixel((10, 60))[0] > 200 and thumbnail.getpixel((70, 60))[0] < 50
    assert len(reader.low_quality_in_hour(T0, limit=1)) == 1
    assert reader.low_quality_in_hour(T0, low_quality_threshold=0.25)[0].quality == pytest.approx(0.2)


def test_retention_drops_old_events_and_older_thumbnails(open_store, tmp_path):
    store = open_store(events_retention_days=30, thumbnails_retention_days=7)
    image = np.zeros((64, 64, 3), np.uint8)
    now = T0 + dt.timedelta(days=40)
    store.record(event(0.1, T0), thumbnail=image)  # 40 days old: event and thumbnail go
    store.record(event(0.1, now - dt.timedelta(days=10)), thumbnail=image)  # event stays, thumbnail goes
    store.record(event(0.1, now - dt.timedelta(days=1)), thumbnail=image)  # both stay
    assert store.prune(now=now) == {"events_deleted": 1, "thumbnails_deleted": 2}
    assert store.count_events() == 2
    assert store.low_quality_in_hour(now - dt.timedelta(days=10))[0].thumbnail_path is None
    kept = store.low_quality_in_hour(now - dt.timedelta(days=1))[0].thumbnail_path
    assert kept is not None and Path(kept).is_file()
    assert [str(path) for path in tmp_path.rglob("*.jpg")] == [kept]  # the dropped thumbnails' files are gone too
    assert not list(tmp_path.rglob("*.part"))
    assert store.prune(now=now) == {"events_deleted": 0, "thumbnails_deleted": 0}


def test_store_thumbnails_false_keeps_no_image(open_store, tmp_path):
    private = open_store(store_thumbnails=False)
    private.record(event(0.1, T0), thumbnail=np.zeros((32, 32, 3), np.uint8))
    assert private.count_events() == 1
    assert private.low_quality_in_hour(T0)[0].thumbnail_path is None
    assert not list(tmp_path.rglob("*.jpg"))


def test_background_pruning_thread_starts_and_stops(open_store):
    store = open_store(events_retention_days=1)
    store.record(event(0.5, dt.datetime.now(UTC) - dt.timedelta(days=3)))
    store.start_pruning(interval_s=0.05)
    try:
        deadline = dt.datetime.now(UTC) + dt.timedelta(seconds=10)
        while store.count_events() and dt.datetime.now(UTC) < deadline:
            threading.Event().wait(0.02)
    finally:
        store.stop()
    assert store.count_events() == 0
    assert store._pruner is None


@pytest.fixture
def by_source(store):
    rows = {
        # gate-1 is healthy; gate-2 drops quality (mostly blurred); the lobby has one unscored event
        "gate-1": [(0.9, []), (0.8, []), (0.7, [])],
        "gate-2": [(0.2, ["blurred", "too_dark"]), (0.1, ["blurred"]), (0.3, ["blurred", "face_too_small"]), (0.6, ["too_dark"])],
        "lobby": [(None, ["no_face"])],
    }
    for source, events in rows.items():
        for minute, (quality, reasons) in enumerate(events):
            store.record(event(quality, T0 + dt.timedelta(minutes=minute), source=source, reasons=reasons))
    store.record(event(0.1, T0 - dt.timedelta(days=2), source="gate-1", reasons=["too_dark"]))  # before `since`
    store.record(event(0.1, T0, source="ui", reasons=["occluded", "blurred", "too_dark", "pose"]))
    return store


def test_per_source_table_names_the_device_that_drops_quality(by_source):
    table = by_source.per_source(T0)
    assert list(table.columns) == COLUMNS
    rows = {row.source: row for row in table.itertuples()}
    assert list(table["source"]) == ["gate-2", "gate-1", "lobby", "ui"]  # busiest first, ties by name
    assert rows["gate-2"].count == 4 and rows["gate-2"].mean_quality == pytest.approx(0.3)
    assert rows["gate-2"].low_quality_rate == pytest.approx(0.75)
    assert rows["gate-2"].top_reasons == ["blurred", "face_too_small", "too_dark"]  # blurred ×3; ties by name; the 0.6 event's reason is not low-quality
    assert rows["gate-1"].count == 3 and rows["gate-1"].low_quality_rate == 0.0 and rows["gate-1"].top_reasons == []  # the old event is outside
    assert rows["lobby"].count == 1 and np.isnan(rows["lobby"].mean_quality) and np.isnan(rows["lobby"].low_quality_rate)
    assert rows["ui"].top_reasons == ["blurred", "occluded", "pose"]  # three at most, ties by name


def test_every_aggregate_filters_by_source(by_source):
    store = by_source
    assert store.summary(T0)["count"] == 9
    assert store.summary(T0, source="gate-2") == {"count": 4, "mean_quality": pytest.approx(0.3), "low_quality_rate": 0.75, "rejected": 0}
    assert store.summary(T0, source="nowhere")["count"] == 0
    hourly = store.hourly(T0, T0 + dt.timedelta(hours=1), source="gate-1")
    assert list(hourly["count"]) == [3] and hourly["mean_quality"][0] == pytest.approx(0.8)
    heat = store.day_hour_heatmap(3, now=T0, source="gate-2")
    assert heat.loc[T0.date(), 10] == pytest.approx(0.75)
    assert store.day_hour_heatmap(3, now=T0).loc[T0.date(), 10] == pytest.approx(4 / 8)
    low = store.low_quality_in_hour(T0, source="gate-2")
    assert len(low) == 3 and {e.source for e in low} == {"gate-2"}
    assert store.low_quality_in_hour(T0, source="gate-1") == []


def test_sources_lists_each_source_once(by_source):
    assert by_source.sources() == ["gate-1", "gate-2", "lobby", "ui"]


def test_per_source_of_an_empty_window_is_an_empty_table(by_source):
    table = by_source.per_source(T0 + dt.timedelta(days=1))
    assert table.empty and list(table.columns) == COLUMNS


# -- issue 26: the main face's failing ISO/IEC 29794-5 components, per source and hour of day -------------------------

FAILURE_COLUMNS = ["source", "hour", "component", "failed", "images"]


def test_failed_components_are_stored_as_given_and_none_means_not_measured(store):
    store.record(event(0.1, T0, reasons=["too_dark"], failed_components=["FaceBrightness", "DetectionConfidence"]))
    store.record(event(0.2, T0 + dt.timedelta(minutes=1), failed_components=[]))
    store.record(event(0.3, T0 + dt.timedelta(minutes=2)))  # no face / an older writer: not measured
    shown = store.low_quality_in_hour(T0)
    assert [e.failed_components for e in shown] == [None, [], ["FaceBrightness", "DetectionConfidence"]]


def test_component_failures_per_source_and_hour_in_the_display_zone(store):
    """gate-2 at 10:xx UTC (18:xx in Shanghai): 3 of its 4 measured images too dark, 1 blurred; gate-1 only passes."""
    gate2 = [["FaceBrightness"], ["FaceBrightness", "Sharpness"], ["FaceBrightness"], []]
    for minute, failed in enumerate(gate2):
        store.record(event(0.2, T0 + dt.timedelta(minutes=10 * minute), source="gate-2", failed_components=failed))
    store.record(event(0.0, T0 + dt.timedelta(minutes=5), source="gate-2", reasons=["no_face"]))  # not measured: not an image here
    store.record(event(0.2, T0 + dt.timedelta(hours=2), source="gate-2", failed_components=["Sharpness"]))  # 20:00 Shanghai
    store.record(event(0.2, T0 - dt.timedelta(days=1), source="gate-2", failed_components=["FaceBrightness"]))  # 18:00 a day before
    for minute in range(3):
        store.record(event(0.9, T0 + dt.timedelta(minutes=minute), source="gate-1", failed_components=[]))
    store.record(event(0.2, T0 + dt.timedelta(days=3), source="gate-2", failed_components=["FaceBrightness"]))  # after `until`
    since, until = T0 - dt.timedelta(days=2), T0 + dt.timedelta(days=1)

    table = store.component_failures(since, until, ZoneInfo("Asia/Shanghai"))
    assert list(table.columns) == FAILURE_COLUMNS
    rows = {(row.source, row.hour, row.component): (row.failed, row.images) for row in table.itertuples()}
    assert rows == {
        ("gate-2", 18, "FaceBrightness"): (4, 5),  # today's 3 of 4 and yesterday's 1 of 1: hours of different days add up
        ("gate-2", 18, "Sharpness"): (1, 5),
        ("gate-2", 20, "Sharpness"): (1, 1),
    }
    in_utc = store.component_failures(since, until)
    assert set(zip(in_utc["hour"], in_utc["component"])) == {(10, "FaceBrightness"), (10, "Sharpness"), (12, "Sharpness")}
    assert store.component_failures(since, until, source="gate-1").empty
    only_gate2 = store.component_failures(T0, T0 + dt.timedelta(hours=1), source="gate-2")
    assert list(zip(only_gate2["component"], only_gate2["failed"], only_gate2["images"])) == [("FaceBrightness", 3, 4), ("Sharpness", 1, 4)]


def test_component_failures_use_the_zones_own_hours_for_half_hour_offsets(store):
    """India is UTC+5:30: 10:20 UTC is 15:50 there, 10:40 UTC is 16:10, though both are in the same UTC hour."""
    store.record(event(0.2, T0 + dt.timedelta(minutes=20), source="gate-7", failed_components=["Sharpness"]))
    store.record(event(0.2, T0 + dt.timedelta(minutes=40), source="gate-7", failed_components=["Sharpness"]))
    table = store.component_failures(T0, T0 + dt.timedelta(hours=1), ZoneInfo("Asia/Kolkata"))
    assert list(zip(table["hour"], table["failed"], table["images"])) == [(15, 1, 1), (16, 1, 1)]


def test_component_failures_of_an_empty_window_is_an_empty_table(store):
    store.record(event(0.2, T0, failed_components=["Sharpness"]))
    table = store.component_failures(T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2))
    assert table.empty and list(table.columns) == FAILURE_COLUMNS


PREVIOUS_SQLITE_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, source TEXT NOT NULL, operation TEXT NOT NULL, model TEXT NOT NULL,
    quality REAL, similarity REAL, decision TEXT, reason_codes TEXT NOT NULL, latency_ms REAL NOT NULL,
    rejected INTEGER NOT NULL DEFAULT 0, thumbnail_path TEXT
);
CREATE INDEX events_ts ON events (ts);
CREATE INDEX events_source_ts ON events (source, ts);
INSERT INTO events (ts, source, operation, model, quality, reason_codes, latency_ms)
VALUES ('2026-11-20T10:05:00', 'gate-2', 'extract', 'm', 0.1, '["too_dark"]', 5.0);
"""


@pytest.fixture(params=BACKENDS)
def previous_version_store(request, tmp_path: Path):
    """A store opened on a database the previous version (no ``failed_components`` column) created and wrote one row to."""
    if request.param == "sqlite":
        import sqlite3

        from storage.stats_sqlite import SQLiteStore

        connection = sqlite3.connect(tmp_path / "old.sqlite3")
        connection.executescript(PREVIOUS_SQLITE_SCHEMA)
        connection.close()
        store = SQLiteStore(tmp_path / "old.sqlite3", tmp_path / "thumbs")
    else:
        import psycopg

        from storage.postgres import migrate, open_pool
        from storage.stats_postgres import MIGRATIONS, PostgresStore

        url = request.getfixturevalue("postgres_url")
        name = f"previous_{tmp_path.name.lower().replace('-', '_')[:40]}"
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        old_url = url.rsplit("/", 1)[0] + f"/{name}"
        pool = open_pool(old_url, max_size=1)
        assert migrate(pool, "stats", [m for m in MIGRATIONS if m[0] <= 2]) == 2
        with pool.connection() as connection:
            connection.execute(
                "INSERT INTO events (ts, source, operation, model, quality, reason_codes, latency_ms)"
                " VALUES ('2026-11-20T10:05:00+00', 'gate-2', 'extract', 'm', 0.1, '[\"too_dark\"]', 5.0)"
            )
        pool.close()
        store = PostgresStore(old_url, tmp_path / "thumbs")
    yield store
    store.close()


def test_a_database_of_the_previous_version_keeps_working_and_gains_the_column(previous_version_store):
    store = previous_version_store
    old = store.low_quality_in_hour(T0)
    assert len(old) == 1 and old[0].reason_codes == ["too_dark"] and old[0].failed_components is None
    store.record(event(0.2, T0 + dt.timedelta(minutes=10), source="gate-2", failed_components=["FaceBrightness"]))
    assert store.count_events() == 2 and store.per_source(T0)["count"].tolist() == [2]
    table = store.component_failures(T0, T0 + dt.timedelta(hours=1))
    assert list(zip(table["component"], table["failed"], table["images"])) == [("FaceBrightness", 1, 1)]  # the old row is not measured
