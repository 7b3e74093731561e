"""What only the PostgreSQL stats store does, on a real server: the same answers as SQLite on the same mixed traffic,
migrations applied once by replicas starting together, a clear error for an unreachable server. The contract both
backends keep is tests/test_contract_stats.py."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pandas as pd
import pytest

from storage.stats_sqlite import Event, SQLiteStore
from tests.postgres_server import TemporaryPostgres, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    postgres = TemporaryPostgres().start()
    yield postgres
    postgres.stop()


@pytest.fixture
def pg_store(server, tmp_path):
    from storage.stats_postgres import PostgresStore

    store = PostgresStore(server.url, tmp_path / "thumbs")
    with store._pool.connection() as connection:
        connection.execute("TRUNCATE events RESTART IDENTITY")
    yield store
    store.close()


def event(quality: float | None, when: dt.datetime, source: str = "ui", reasons: list[str] | None = None, **extra) -> Event:
    return Event(source=source, operation="extract", model="m", quality=quality, latency_ms=5.0, timestamp=when, reason_codes=reasons or [], **extra)


def mixed_traffic() -> list[Event]:
    """Three days of events from three sources, some unscored, some rejected (seeded)."""
    rng = np.random.default_rng(0)
    events = []
    for index in range(300):
        when = T0 - dt.timedelta(minutes=int(rng.integers(0, 3 * 24 * 60)))
        quality = None if index % 17 == 0 else float(np.round(rng.uniform(0, 1), 3))
        reasons = [str(code) for code in rng.choice(["blur", "dark", "occluded", "pose"], size=int(rng.integers(0, 3)), replace=False)]
        events.append(event(quality, when, source=["ui", "api", "gate-3"][index % 3], reasons=reasons, rejected=bool(quality is not None and quality < 0.4)))
    return events


def test_same_answers_as_the_sqlite_store(pg_store, tmp_path):
    """Every aggregate the UI and /stats read matches the default store on the same 300 events."""
    sqlite = SQLiteStore(tmp_path / "stats.sqlite3", tmp_path / "sqlite-thumbs")
    for item in mixed_traffic():
        sqlite.record(Event(**{**item.__dict__, "reason_codes": list(item.reason_codes)}))
        pg_store.record(item)
    assert pg_store.count_events() == sqlite.count_events() == 300
    since = T0 - dt.timedelta(days=2)
    for threshold in (0.4, 0.6):
        expected, got = sqlite.summary(since, threshold), pg_store.summary(since, threshold)
        assert got["count"] == expected["count"] and got["rejected"] == expected["rejected"]
        assert got["mean_quality"] == pytest.approx(expected["mean_quality"])
        assert got["low_quality_rate"] == pytest.approx(expected["low_quality_rate"])
        pd.testing.assert_frame_equal(pg_store.hourly(since, T0, threshold), sqlite.hourly(since, T0, threshold), check_dtype=False)
        pd.testing.assert_frame_equal(
            pg_store.day_hour_heatmap(5, T0, threshold), sqlite.day_hour_heatmap(5, T0, threshold), check_dtype=False, check_names=False
        )
        pd.testing.assert_frame_equal(pg_store.per_source(since, threshold), sqlite.per_source(since, threshold), check_dtype=False)
    assert pg_store.sources() == sqlite.sources() == ["api", "gate-3", "ui"]
    busy_hour = pg_store.hourly(since, T0).sort_values("count").iloc[-1]["hour"].to_pydatetime()
    expected_rows = [(e.id, e.quality, e.reason_codes) for e in sqlite.low_quality_in_hour(busy_hour)]
    assert expected_rows and [(e.id, e.quality, e.reason_codes) for e in pg_store.low_quality_in_hour(busy_hour)] == expected_rows


def test_migrations_are_versioned_and_applied_once_by_concurrent_replicas(server, tmp_path):
    """Four replicas starting at once: each migration runs once, the table records it, a restart is a no-op."""
    from storage.postgres import schema_version
    from storage.stats_postgres import MIGRATIONS, PostgresStore

    with TemporaryPostgres() as fresh:
        stores, errors = [], []

        def open_one(index: int) -> None:
            try:
                stores.append(PostgresStore(fresh.url, tmp_path / f"r{index}"))
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=open_one, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors and len(stores) == 4
        with stores[0]._pool.connection() as connection:
            rows = connection.execute("SELECT component, version, name FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [("stats", version, name) for version, name, _ in MIGRATIONS]
        assert schema_version(stores[0]._pool, "stats") == MIGRATIONS[-1][0] == stores[0].schema_version
        for store in stores:
            store.close()


def test_an_unreachable_database_is_one_clear_error_without_the_password(tmp_path):
    from storage.stats_postgres import PostgresStore
    from tests.apphelpers import free_port

    url = f"postgresql://frood:hunter2@127.0.0.1:{free_port()}/frood"
    with pytest.raises(ConnectionError, match=r"PostgreSQL at postgresql://frood:\*\*\*@127\.0\.0\.1:\d+/frood accepted no connection") as caught:
        PostgresStore(url, tmp_path / "thumbs", connect_timeout_s=1.0)
    assert "hunter2" not in str(caught.value)
