"""The UI's Extract handler in-process (real model, real photo): failures after the feature, and its download files."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from service import faces as service
from ui import extract as ui_extract
from ui import monitor as ui_monitor

ENGLISH = SimpleNamespace(headers={"accept-language": "en-US,en;q=0.9"})
CHINESE = SimpleNamespace(headers={"accept-language": "zh-CN,zh;q=0.9"})



def test_a_failing_heatmap_keeps_the_feature_and_says_so(faces_dir, private_tmp, monkeypatch):
    def broken_heatmap(*args, **kwargs):
        raise RuntimeError("simulated heatmap failure")

    monkeypatch.setattr(service, "heatmap", broken_heatmap)
    text, payload, files, heat, components, faces = ui_extract.on_extract(str(faces_dir / "img3.jpg"), False)  # no request: English
    assert heat is None and components is not None and faces is not None  # the components are there even without the heatmap
    assert len(payload["feature"]) == 512 and len(files) == 2
    assert "heatmap could not be computed" in text and "Quality" in text
    text_zh = ui_extract.on_extract(str(faces_dir / "img3.jpg"), False, "", CHINESE)[0]
    assert "质量热力图计算失败" in text_zh and "heatmap" not in text_zh


def test_extract_shows_the_components_failing_first_in_the_page_language(faces_dir, private_tmp):
    """Issue 26 in the Extract tab: the ISO/IEC 29794-5 components of the face, what to fix first."""
    from PIL import Image

    dark = private_tmp / "dark.png"
    with Image.open(faces_dir / "img3.jpg") as photo:
        Image.eval(photo.convert("RGB"), lambda value: int(value * 0.15)).save(dark)
    table = ui_extract.on_extract(str(dark), False, "", ENGLISH)[4]
    assert list(table.columns) == ["Measure", "Value", "Quality (0–100)", "Requirement"]
    failing = list(table["Requirement"]).count("not met")
    assert failing >= 1 and set(table["Requirement"][:failing]) == {"not met"}  # failing first
    assert any("xposure" in name or "rightness" in name for name in table["Measure"][:failing]), table.head(5)
    table_zh = ui_extract.on_extract(str(dark), False, "", CHINESE)[4]
    assert list(table_zh.columns)[0] == "分项" and "未达标" in set(table_zh["要求"])


def test_downloads_go_to_one_folder_whose_old_requests_are_removed(faces_dir, private_tmp):
    for _ in range(2):
        files = ui_extract.on_extract(str(faces_dir / "img3.jpg"), False)[2]
        assert all(os.path.isfile(path) for path in files)
    leftovers = [path.name for path in private_tmp.iterdir() if path.name.startswith("frood-") and path.name != "frood-ui-downloads"]
    assert not leftovers, f"one temporary folder per request: {leftovers}"
    requests = list((private_tmp / ui_extract.DOWNLOADS_DIR_NAME).iterdir())
    assert len(requests) == 2
    old = time.time() - ui_extract.DOWNLOADS_KEEP_S - 60
    for folder in requests:
        os.utime(folder, (old, old))
    ui_extract.on_extract(str(faces_dir / "img3.jpg"), False, "", ENGLISH)
    remaining = list((private_tmp / ui_extract.DOWNLOADS_DIR_NAME).iterdir())
    assert len(remaining) == 1 and remaining[0] not in requests


def test_monitor_of_an_empty_store_and_of_one_source(attached_store):
    from storage.stats_sqlite import Event

    summary, _, _, table, _, sources, thumbs, *_ = ui_monitor.on_monitor("24h", None, CHINESE)
    assert "已处理**：0" in summary and table.empty and thumbs == ""  # no traffic: no hour to show
    for source, quality in (("gate-1", 0.9), ("gate-2", 0.1), ("gate-2", 0.2)):
        attached_store.record(Event(source=source, operation="extract", model="m", quality=quality, reason_codes=["blurred"] if quality < 0.4 else []))
    summary, _, _, table, _, sources, *_ = ui_monitor.on_monitor("24h", "gate-2", ENGLISH)
    assert "Processed**: 2" in summary and "Mean quality**: 0.15" in summary
    assert list(table["Source"]) == ["gate-2"] and list(table["Top reasons"]) == ["Blurred"]  # the filter holds in the table too
    everyone = ui_monitor.on_monitor("24h", None, ENGLISH)[3]
    assert list(everyone["Source"]) == ["gate-2", "gate-1"] and list(everyone["Top reasons"]) == ["Blurred", ""]
    assert [value for _, value in sources.choices] == ["", "gate-1", "gate-2"]
    assert "source must be at most 64" in ui_monitor.on_monitor("24h", "no spaces please", ENGLISH)[0]


def test_the_chosen_hour_survives_refreshes_and_the_window_sets_the_period(attached_store):
    """Issue 25: the 30 s refresh put the chosen hour back to the latest; the 7 d switch left the summary on today."""
    import datetime as dt

    from storage.stats_sqlite import Event

    now = dt.datetime.now(dt.UTC)
    for hours_ago, quality in ((0, 0.1), (3, 0.2), (30, 0.3)):
        attached_store.record(Event(source="gate-9", operation="extract", model="m", quality=quality, reason_codes=["too_dark"],
                                    timestamp=now - dt.timedelta(hours=hours_ago)))
    first = ui_monitor.on_monitor("24h", None, ENGLISH)
    hours = first[4].choices
    latest, older = hours[0][0] if isinstance(hours[0], tuple) else hours[0], hours[1][0] if isinstance(hours[1], tuple) else hours[1]
    assert first[4].value == latest
    for _ in range(2):  # two refreshes with the operator's choice
        again = ui_monitor.on_monitor("24h", None, ENGLISH, older)
        assert again[4].value == older
    assert ui_monitor.on_monitor("24h", None, ENGLISH, "1999-01-01 00:00")[4].value == latest  # gone from the window
    day, week = ui_monitor.on_monitor("24h", None, ENGLISH)[0], ui_monitor.on_monitor("7d", None, ENGLISH)[0]
    assert "Last 24 hours" in day and "Processed**: 2" in day
    assert "Last 7 days" in week and "Processed**: 3" in week


def test_gallery_tab_counts_every_photo_under_its_source(attached_store, faces_dir, tmp_path, monkeypatch):
    """Enrolment and identification in the Gallery tab write one stats row per photo, under the operator's source."""
    import datetime as dt

    from api.routes import registry
    from service import gallery as gallery_service
    from settings import get_settings
    from ui import gallery as gallery_tab

    monkeypatch.setattr(get_settings(), "data_dir", tmp_path / "data")
    key = registry.create(gallery_service.new_gallery(service.get_pipeline()))
    no_progress = SimpleNamespace(tqdm=lambda items, desc=None: items)
    photos = [str(faces_dir / "img1.jpg"), str(faces_dir / "img2.jpg")]
    text = gallery_tab.on_enrol(key, "angelina", photos, "gate-9", ENGLISH, no_progress)[0]
    assert "angelina" in text and len(registry.get(key)) == 2
    assert list((tmp_path / "data" / "gallery-ui" / key).glob("*.png")), "the enrolled faces are shown"
    markdown, drawn = gallery_tab.on_identify(key, str(faces_dir / "img4.jpg"), "gate-9", ENGLISH)
    assert drawn is not None and "angelina" in markdown
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert attached_store.summary(since, source="gate-9")["count"] == 3
    assert attached_store.summary(since, source="ui")["count"] == 0
    bad = gallery_tab.on_enrol(key, "angelina", photos, "no spaces please", ENGLISH, no_progress)[0]
    assert "source must be at most 64" in bad and len(registry.get(key)) == 2


def test_stats_gives_every_sources_numbers_for_the_period(attached_store):
    """``GET /stats`` (service.monitor.monitor_snapshot): the Monitor's table as JSON, for today, 24 h or 7 days."""
    import datetime as dt

    from errors import ApiError
    from service.monitor import monitor_snapshot
    from storage.stats_sqlite import Event

    now = dt.datetime.now(dt.UTC)
    for source, quality, days_ago in (("gate-1", 0.9, 0), ("gate-2", 0.1, 0), ("gate-2", 0.2, 3)):
        attached_store.record(Event(source=source, operation="extract", model="m", quality=quality, reason_codes=["too_dark"] if quality < 0.4 else [],
                                    timestamp=now - dt.timedelta(days=days_ago)))
    from schemas.monitor import StatsJSON

    week = monitor_snapshot(None, "7d")
    StatsJSON.model_validate(week)  # the documented schema is the real answer
    assert week["window"] == "7d" and week["count"] == 3
    assert {row["source"]: row["count"] for row in week["sources"]} == {"gate-1": 1, "gate-2": 2}
    gate2 = next(row for row in week["sources"] if row["source"] == "gate-2")
    assert gate2["low_quality_rate"] == 1.0 and gate2["top_reasons"] == ["too_dark"] and gate2["mean_quality"] == 0.15
    assert [row["source"] for row in monitor_snapshot("gate-1", "24h")["sources"]] == ["gate-1"]
    with pytest.raises(ApiError):
        monitor_snapshot(None, "1y")


def test_monitor_exports_the_period_as_csv_in_the_display_time_zone(attached_store, private_tmp, monkeypatch):
    """Issue 25: the period's per-source table and events as CSV; times shown in DISPLAY_TIMEZONE, stored in UTC."""
    import csv
    import datetime as dt
    import io

    from settings import get_settings
    from storage.stats_sqlite import Event

    monkeypatch.setattr(get_settings(), "display_timezone", "Asia/Shanghai")
    now = dt.datetime.now(dt.UTC)
    for quality in (0.9, 0.1):
        attached_store.record(Event(source="gate-3", operation="extract", model="m", quality=quality, reason_codes=["blurred"] if quality < 0.4 else [],
                                    timestamp=now - dt.timedelta(minutes=5)))
    text, files = ui_monitor.on_export("24h", None, ENGLISH)
    assert "1 sources, 2 events" in text and len(files) == 3  # per source, failing components, events
    table = list(csv.DictReader(io.StringIO(open(files[0], encoding="utf-8").read())))
    events = list(csv.DictReader(io.StringIO(open(files[-1], encoding="utf-8").read())))
    assert table[0]["source"] == "gate-3" and table[0]["top_reasons"] == "blurred"
    assert len(events) == 2 and {row["reasons"] for row in events} == {"", "blurred"}
    utc, local = dt.datetime.fromisoformat(events[0]["time_utc"]), dt.datetime.fromisoformat(events[0]["local_time"])
    assert utc == local and local.utcoffset() == dt.timedelta(hours=8)
    summary, line, _, _, hours, *_ = ui_monitor.on_monitor("24h", None, ENGLISH)
    assert "Times in Asia/Shanghai" in summary and line.layout.xaxis.title.text == "Hour (Asia/Shanghai)"
    label, value = hours.choices[0]
    assert dt.datetime.strptime(label, "%Y-%m-%d %H:00") - dt.datetime.strptime(value, "%Y-%m-%d %H:00") == dt.timedelta(hours=8)


def test_the_webhook_test_event_is_signed_and_reports_the_answer(monkeypatch):
    from service.webhook import SIGNATURE_HEADER, WebhookDelivery, verify_signature
    from tests.apphelpers import WebhookReceiver

    receiver = WebhookReceiver()
    try:
        delivery = WebhookDelivery(None, receiver.url, secret="s3cret")
        monkeypatch.setattr(service, "outbox", lambda: delivery)
        text = ui_monitor.on_webhook_test(CHINESE)
        assert "测试事件已送达" in text and "200" in text
        headers, body = receiver.requests[0]
        assert b'"test":true' in body and verify_signature(body, "s3cret", headers[SIGNATURE_HEADER])
    finally:
        receiver.close()
    monkeypatch.setattr(service, "outbox", lambda: WebhookDelivery(None, "http://127.0.0.1:9/", timeout_s=1))
    assert "not delivered" in ui_monitor.on_webhook_test(ENGLISH)
