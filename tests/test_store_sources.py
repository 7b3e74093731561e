"""Drill-down by source in the stats store: every aggregate filtered by one camera/device/site, and a per-source table."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from storage.stats_sqlite import Event, SQLiteStore

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    filled = SQLiteStore(tmp_path / "stats.sqlite3", tmp_path / "thumbs")
    rows = {
        # gate-1 is healthy; gate-2 drops quality (mostly blurred); the lobby has one unscored event
        "gate-1": [(0.9, []), (0.8, []), (0.7, [])],
        "gate-2": [(0.2, ["blurred", "too_dark"]), (0.1, ["blurred"]), (0.3, ["blurred", "face_too_small"]), (0.6, ["too_dark"])],
        "lobby": [(None, ["no_face"])],
    }
    for source, events in rows.items():
        for minute, (quality, reasons) in enumerate(events):
            filled.record(
                Event(source=source, operation="extract", model="m", quality=quality, reason_codes=reasons, timestamp=T0 + dt.timedelta(minutes=minute))
            )
    filled.record(Event(source="gate-1", operation="extract", model="m", quality=0.1, timestamp=T0 - dt.timedelta(days=2)))  # before `since`
    return filled


def test_per_source_table_names_the_device_that_drops_quality(store):
    table = store.per_source(T0)
    assert list(table.columns) == ["source", "count", "mean_quality", "low_quality_rate", "top_reasons"]
    rows = {row.source: row for row in table.itertuples()}
    assert list(table["source"]) == ["gate-2", "gate-1", "lobby"]  # busiest first
    assert rows["gate-2"].count == 4 and rows["gate-2"].mean_quality == pytest.approx(0.3)
    assert rows["gate-2"].low_quality_rate == pytest.approx(0.75)
    assert rows["gate-2"].top_reasons == ["blurred", "face_too_small", "too_dark"]  # blurred ×3; ties by name; the 0.6 event's reason is not low-quality
    assert rows["gate-1"].count == 3 and rows["gate-1"].low_quality_rate == 0.0 and rows["gate-1"].top_reasons == []
    assert rows["lobby"].count == 1 and np.isnan(rows["lobby"].mean_quality) and np.isnan(rows["lobby"].low_quality_rate)


def test_every_aggregate_filters_by_source(store):
    assert store.summary(T0)["count"] == 8
    assert store.summary(T0, source="gate-2") == {"count": 4, "mean_quality": pytest.approx(0.3), "low_quality_rate": 0.75, "rejected": 0}
    assert store.summary(T0, source="nowhere")["count"] == 0
    hourly = store.hourly(T0, T0 + dt.timedelta(hours=1), source="gate-1")
    assert list(hourly["count"]) == [3] and hourly["mean_quality"][0] == pytest.approx(0.8)
    heat = store.day_hour_heatmap(3, now=T0, source="gate-2")
    assert heat.loc[T0.date(), 10] == pytest.approx(0.75)
    assert heat.loc[T0.date(), 10] != store.day_hour_heatmap(3, now=T0).loc[T0.date(), 10]
    low = store.low_quality_in_hour(T0, source="gate-2")
    assert len(low) == 3 and {event.source for event in low} == {"gate-2"}
    assert store.low_quality_in_hour(T0, source="gate-1") == []


def test_sources_lists_each_source_once(store):
    assert store.sources() == ["gate-1", "gate-2", "lobby"]


def test_per_source_of_an_empty_window_is_an_empty_table(store):
    table = store.per_source(T0 + dt.timedelta(days=1))
    assert table.empty and list(table.columns) == ["source", "count", "mean_quality", "low_quality_rate", "top_reasons"]
