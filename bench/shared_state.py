"""Benchmark (not a test): the shared-state backends a replica talks to; prints JSON.

    python bench/shared_state.py [--database-url postgresql://...] [--events 100000] [--hooks 2000]

Without ``--database-url`` a throw-away PostgreSQL is started in a temp directory (Debian's server
binaries, as the tests do). Measures, for SQLite (one machine) and PostgreSQL (shared):

* ``record``: events per second written by 8 threads (each its own transaction, as the service writes);
* read latency with ``--events`` rows in the table: ``summary`` (today), ``hourly`` (7 days),
  ``day_hour_heatmap`` and ``per_source`` — what ``/stats`` and the Monitor tab ask;
* the webhook outbox (PostgreSQL): deliveries per second to a loopback receiver that answers 200 at once,
  with 1, 2 and 4 workers (each a replica's worker), and that every event arrived exactly once.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.webhook import EVENT_ID_HEADER  # noqa: E402
from storage.stats_sqlite import Event, SQLiteStore  # noqa: E402

UTC = dt.UTC


def timed(function, repeat: int = 5) -> float:
    """Median milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 2)


def events(count: int, now: dt.datetime, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 7 * 24 * 60, count)
    qualities = rng.uniform(0, 1, count).round(3)
    return [
        Event(
            source=f"gate-{index % 8}",
            operation="extract",
            model="faceplugin-r512",
            quality=float(quality),
            reason_codes=["blur"] if quality < 0.4 else [],
            latency_ms=30.0,
            rejected=bool(quality < 0.5),
            timestamp=now - dt.timedelta(minutes=int(minute)),
        )
        for index, (minute, quality) in enumerate(zip(minutes, qualities))
    ]


def bench_store(store, rows: list[Event], threads: int = 8) -> dict:
    chunks = [rows[index::threads] for index in range(threads)]
    start = time.perf_counter()
    workers = [threading.Thread(target=lambda chunk=chunk: [store.record(item) for item in chunk]) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    now = max(item.timestamp for item in rows)
    today = now.replace(hour=0, minute=0, second=0)
    week = now - dt.timedelta(days=7)
    return {
        "rows": store.count_events(),
        "record_events_per_s": round(len(rows) / seconds, 1),
        "summary_ms": timed(lambda: store.summary(today)),
        "hourly_7d_ms": timed(lambda: store.hourly(week, now)),
        "day_hour_heatmap_ms": timed(lambda: store.day_hour_heatmap(7, now)),
        "per_source_ms": timed(lambda: store.per_source(week)) if hasattr(store, "per_source") else None,
    }


def bench_outbox(database_url: str, hooks: int, workers: int) -> dict:
    from service.webhook import WebhookDelivery
    from storage.outbox_postgres import PostgresOutboxStore
    from tests.apphelpers import WebhookReceiver

    receiver = WebhookReceiver()
    replicas = [WebhookDelivery(PostgresOutboxStore(database_url), receiver.url, poll_interval_s=0.05) for _ in range(workers)]
    with replicas[0].store._pool.connection() as connection:
        connection.execute("TRUNCATE webhook_outbox")
    for index in range(hooks):
        replicas[0].enqueue({"quality_score": 0.1, "n": index})
    start = time.perf_counter()
    for replica in replicas:
        replica.start()
    while replicas[0].stats()["sent"] < hooks and time.perf_counter() - start < 300:
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    for replica in replicas:
        replica.close()
    counts = collections.Counter(headers[EVENT_ID_HEADER] for headers, _ in receiver.requests)
    receiver.close()
    return {"workers": workers, "deliveries_per_s": round(hooks / seconds, 1), "distinct": len(counts), "max_copies": max(counts.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--hooks", type=int, default=2000)
    args = parser.parse_args()

    server = None
    if not args.database_url:
        from tests.postgres_server import TemporaryPostgres, unavailable_reason

        if unavailable_reason():
            parser.error(f"no --database-url and {unavailable_reason()}")
        server = TemporaryPostgres().start()
        args.database_url = server.url
    from storage.postgres import redact
    from storage.stats_postgres import PostgresStore

    now = dt.datetime.now(UTC).replace(microsecond=0)
    rows = events(args.events, now)
    params = vars(args) | {"database_url": redact(args.database_url)}
    report: dict = {"machine": {"python": platform.python_version(), "platform": platform.platform()}, "params": params}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-state-") as workdir:
            sqlite = SQLiteStore(Path(workdir) / "stats.sqlite3", Path(workdir) / "thumbs")
            report["sqlite"] = bench_store(sqlite, rows)
            postgres = PostgresStore(args.database_url, Path(workdir) / "pg-thumbs")
            with postgres._pool.connection() as connection:
                connection.execute("TRUNCATE events")
            report["postgres"] = bench_store(postgres, [Event(**vars(item)) for item in rows])
            postgres.close()
            print(json.dumps({"stores": {k: report[k] for k in ("sqlite", "postgres")}}), file=sys.stderr, flush=True)
        report["postgres_outbox"] = [bench_outbox(args.database_url, args.hooks, workers) for workers in (1, 2, 4)]
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
