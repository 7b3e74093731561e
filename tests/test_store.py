"""What only the SQLite stats store does: thumbnails as files in day folders (orphans and stale temp files swept)
and a file that survives a writer killed mid-write. The answers both backends give are tests/test_contract_stats.py."""

from __future__ import annotations

import datetime as dt

import pytest

from storage.stats_sqlite import SQLiteStore

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "stats.sqlite3", tmp_path / "thumbs")


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
