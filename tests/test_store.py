"""The rolling stats store: concurrent writers, hourly aggregation, retention, privacy switch."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pandas as pd
import pytest

from storage.stats_sqlite import Event, SQLiteStore

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "stats.sqlite3", tmp_path / "thumbs")


def event(quality: float | None, when: dt.datetime, **extra) -> Event:
    return Event(source="ui", operation="extract", model="m", quality=quality, latency_ms=5.0, timestamp=when, **extra)


def test_eight_threads_times_two_hundred_writes_gives_exactly_1600_rows(store):
    errors = []

    def writer(worker: int) -> None:
        try:
            for index in range(200):
                store.record(event(0.5 + worker / 100, T0 + dt.timedelta(seconds=index)))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert store.count_events() == 1600


def test_hourly_aggregation_on_a_hand_built_table(store):
    qualities = {0: [0.9, 0.3, 0.6], 2: [0.2, 0.1]}  # hour offset → qualities; hour 1 has no traffic
    for offset, values in qualities.items():
        for minute, quality in enumerate(values):
            store.record(event(quality, T0 + dt.timedelta(hours=offset, minutes=minute * 10)))
    store.record(event(0.8, T0 + dt.timedelta(hours=5)))  # outside the window
    frame = store.hourly(T0, T0 + dt.timedelta(hours=3))
    assert list(frame["hour"]) == list(pd.date_range(T0, periods=3, freq="h"))
    assert list(frame["count"]) == [3, 0, 2]
    assert frame["mean_quality"][0] == pytest.approx(0.6)
    assert np.isnan(frame["mean_quality"][1])
    assert frame["mean_quality"][2] == pytest.approx(0.15)
    assert frame["low_quality_rate"][0] == pytest.approx(1 / 3)
    assert frame["low_quality_rate"][2] == pytest.approx(1.0)
    summary = store.summary(T0)
    assert summary["count"] == 6 and summary["low_quality_rate"] == pytest.approx(3 / 6)


def test_day_hour_heatmap(store):
    now = T0 + dt.timedelta(hours=1)
    store.record(event(0.2, T0))
    store.record(event(0.9, T0 + dt.timedelta(minutes=5)))
    store.record(event(0.1, T0 - dt.timedelta(days=2, hours=3)))
    table = store.day_hour_heatmap(days=7, now=now)
    assert table.shape == (7, 24)
    assert table.loc[T0.date(), 10] == pytest.approx(0.5)
    assert table.loc[(T0 - dt.timedelta(days=2)).date(), 7] == pytest.approx(1.0)
    assert np.isnan(table.loc[T0.date(), 11])


def test_low_quality_thumbnails_for_an_hour(store):
    image = np.full((300, 200, 3), 90, np.uint8)
    store.record(event(0.2, T0 + dt.timedelta(minutes=1)), thumbnail=image)
    store.record(event(0.9, T0 + dt.timedelta(minutes=2)))
    found = store.low_quality_in_hour(T0)
    assert len(found) == 1 and found[0].quality == pytest.approx(0.2)
    from PIL import Image

    with Image.open(found[0].thumbnail_path) as thumb:
        assert max(thumb.size) <= 128


def test_retention_prunes_old_events_and_old_thumbnails(store, tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    now = T0 + dt.timedelta(days=40)
    store.record(event(0.1, T0), thumbnail=image)  # 40 days old: event and thumbnail go
    store.record(event(0.1, now - dt.timedelta(days=10)), thumbnail=image)  # event stays, thumbnail goes
    store.record(event(0.1, now - dt.timedelta(days=1)), thumbnail=image)  # both stay
    result = store.prune(now=now)
    assert result["events_deleted"] == 1
    assert store.count_events() == 2
    assert len(list((tmp_path / "thumbs").rglob("*.jpg"))) == 1
    assert not list((tmp_path / "thumbs").rglob("*.part"))


def test_store_thumbnails_false_keeps_no_image(tmp_path):
    private = SQLiteStore(tmp_path / "s.sqlite3", tmp_path / "thumbs", store_thumbnails=False)
    private.record(event(0.1, T0), thumbnail=np.zeros((32, 32, 3), np.uint8))
    assert private.count_events() == 1
    assert not list(tmp_path.rglob("*.jpg"))


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


def test_prune_sweeps_orphans_in_expired_day_folders_and_stale_temp_files(store, tmp_path):
    import os
    import time

    now = T0 + dt.timedelta(days=40)
    old_day = tmp_path / "thumbs" / T0.strftime("%Y%m%d")
    old_day.mkdir(parents=True)
    (old_day / "orphan.jpg").write_bytes(b"x")  # written, then the process died before its row was inserted
    recent_day = tmp_path / "thumbs" / now.strftime("%Y%m%d")
    recent_day.mkdir(parents=True)
    stale, fresh = recent_day / "a.part", recent_day / "b.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    store.prune(now=now)
    assert not old_day.exists()
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a writer still at work


def test_background_pruning_thread_starts_and_stops(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3", tmp_path / "thumbs", events_retention_days=1)
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


def test_a_writer_killed_mid_write_never_corrupts_the_file(tmp_path):
    import signal
    import sqlite3
    import subprocess
    import sys
    import textwrap
    import time

    script = textwrap.dedent(
        f"""
        import numpy as np
        from storage.stats_sqlite import Event, SQLiteStore
        store = SQLiteStore({str(tmp_path / "stats.sqlite3")!r}, {str(tmp_path / "thumbs")!r})
        image = np.zeros((64, 64, 3), np.uint8)
        print("ready", flush=True)
        while True:
            store.record(Event(source="ui", operation="extract", model="m", quality=0.1), thumbnail=image)
        """
    )
    from tests.apphelpers import ROOT

    writer = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    with sqlite3.connect(tmp_path / "stats.sqlite3") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = SQLiteStore(tmp_path / "stats.sqlite3", tmp_path / "thumbs")
    count = store.count_events()
    assert count > 0
    thumbnails = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert count <= len(thumbnails) <= count + 1  # at most the one event in flight has a file but no row
