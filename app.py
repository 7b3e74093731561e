"""The web app: FastAPI (``/health``, ``/stats``, the HTTP API) and the Gradio Blocks UI on one port.

A thin shell: every callback calls the service layer and only formats its result. Labels follow the
browser's locale (``gr.I18n``); what a callback writes follows the request's ``Accept-Language``
(:mod:`ui.i18n`). Each tab is built by one function called inside the Blocks (``build_ui``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pandas as pd
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api import keypoints as keypoints_api
from api import routes as api_routes
from api.security import BodySizeLimit
from errors import FroodError
from logs import configure_logging
from schemas import analysis_json
from service import faces as service
from service.backends import open_outbox, open_store
from settings import get_settings
from ui import charts, facegrid
from ui.common import clean_source, error_markdown
from ui.gallery import build_gallery_tab
from ui.i18n import I18N, Locale, locale_of, reason_text, tr
from ui.pose import build_pose_tab

log = logging.getLogger("frood.app")
VERSION = "0.1.0"
IMAGE_SOURCES = ["upload", "webcam", "clipboard"]
IMAGE_HEIGHT = 360  # input photos are scaled to fit; the page stays one screen tall
DOWNLOADS_DIR_NAME = "frood-ui-downloads"  # one folder under the temp dir, one short-lived subfolder per request
DOWNLOADS_KEEP_S = 600  # Gradio copies the files into its cache when the request ends; ten minutes is ample
GRADIO_CACHE_CLEANUP = (3600, 3600)  # Gradio's own cached copies: swept hourly, kept an hour
ALL_SOURCES = ""


def quality_badge(score: float | None, locale: Locale = "en") -> str:
    """The score and its band in words (good ≥ trust, borderline between, low < reject): no colour or emoji font needed."""
    settings = get_settings()
    if score is None:
        return "–"
    if score >= settings.trust_threshold:
        band = "band_good"
    elif score >= settings.reject_threshold:
        band = "band_borderline"
    else:
        band = "band_low"
    return f"{score:.2f} ({tr(locale, band)})"


def _reason_lines(codes: list[str], locale: Locale) -> str:
    return "".join(f"\n  - {reason_text(code, locale)}" for code in codes)


def _crop_caption(side: str, quality: float | None, codes: list[str], locale: Locale) -> list[str]:
    lines = [f"{side} · {tr(locale, 'quality')} {quality_badge(quality, locale)}"]
    return lines + [reason_text(code, locale, short=True) for code in codes]


def on_compare(
    image_a: str | None, image_b: str | None, thorough: bool, source: str | None = None, request: gr.Request | None = None
):
    """``source`` defaults to None so clients written before it existed keep working."""
    locale = locale_of(request)
    if image_a is None or image_b is None:
        return f"**⚠️ {tr(locale, 'need_two')}**", ""
    try:
        timed = service.compare(image_a, image_b, thorough=thorough, source=clean_source(source))
    except Exception as error:  # every failure becomes a readable message, never a traceback
        return error_markdown(error, locale), ""
    result = timed.value
    text = (
        f"### {tr(locale, 'decision.' + result.decision)}\n\n"
        f"**{tr(locale, 'similarity')}:** {result.similarity:.3f} ({tr(locale, 'threshold')} {result.match_threshold:.3f})\n\n"
        f"**{tr(locale, 'quality_a')}:** {quality_badge(result.quality_a, locale)}{_reason_lines(result.a.face.reasons, locale)}\n\n"
        f"**{tr(locale, 'quality_b')}:** {quality_badge(result.quality_b, locale)}{_reason_lines(result.b.face.reasons, locale)}\n\n"
        f"{tr(locale, 'faces_found')}: A {len(result.a.faces)}, B {len(result.b.faces)} · "
        f"{tr(locale, 'response_time')}: {timed.latency_ms:.0f} ms"
    )
    crops = [
        facegrid.figure(side.face.aligned, _crop_caption(name, side.face.quality, side.face.reasons, locale))
        for name, side in (("A", result.a), ("B", result.b))
    ]
    return text, facegrid.grid(crops)


def downloads_folder(now: float | None = None) -> Path:
    """A fresh folder for one request's downloads; request folders older than ``DOWNLOADS_KEEP_S`` are removed.

    One parent folder instead of a new temp folder per request, so nothing accumulates.
    """
    parent = Path(tempfile.gettempdir()) / DOWNLOADS_DIR_NAME
    parent.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    for old in parent.iterdir():
        try:
            if now - old.stat().st_mtime > DOWNLOADS_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another request removed it first
            pass
    folder = parent / uuid.uuid4().hex
    folder.mkdir()
    return folder


def on_extract(image: str | None, thorough: bool, source: str | None = None, request: gr.Request | None = None):
    locale = locale_of(request)
    if image is None:
        return f"**⚠️ {tr(locale, 'need_one')}**", None, None, None
    try:
        timed = service.extract(image, thorough=thorough, source=clean_source(source))
        result = timed.value
        payload = analysis_json(result)
        if not result.faces:
            return f"**⚠️ {tr(locale, 'no_face')}** · {timed.latency_ms:.0f} ms", payload, None, None
        folder = downloads_folder()
        json_path = folder / "feature.json"
        json_path.write_text(json.dumps(payload), encoding="utf-8")
        npy_path = folder / "feature.npy"
        np.save(npy_path, result.face.feature)
    except Exception as error:
        return error_markdown(error, locale), None, None, None
    text = (
        f"**{tr(locale, 'quality')}:** {quality_badge(result.face.quality, locale)}{_reason_lines(result.face.reasons, locale)}\n\n"
        f"{tr(locale, 'faces_found')}: {len(result.faces)} · {tr(locale, 'response_time')}: {timed.latency_ms:.0f} ms"
    )
    try:  # the feature is valid even when the heatmap fails: say so, keep the result
        heat = cv2.resize(service.heatmap(result.face), (224, 224), interpolation=cv2.INTER_CUBIC)
    except Exception:
        log.exception("Quality heatmap failed")
        heat = None
        text += f"\n\n⚠️ {tr(locale, 'heatmap_failed')}"
    return text, payload, [str(json_path), str(npy_path)], heat


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None or pd.isna(value) else pattern.format(value)


def _source_or_none(source: str | None) -> str | None:
    """The Monitor's filter: None for all sources, else a validated source id."""
    return clean_source(source) if source else None


def monitor_snapshot(source: str | None = None) -> dict:
    """Today's numbers (UTC) from the store (of one source, or all) and the webhook outbox; also served at ``/stats``."""
    settings = get_settings()
    store, outbox = service.store(), service.outbox()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    empty = {"count": 0, "mean_quality": None, "low_quality_rate": None, "rejected": 0}
    summary = store.summary(today, settings.reject_threshold, source=source) if store else empty
    webhook = outbox.stats() if outbox and outbox.enabled else {"sent": 0, "pending": 0, "failed": 0}
    return {
        "since": today.isoformat(),
        "source": source,
        **summary,
        "reject_threshold": settings.reject_threshold,
        "auto_reject_threshold": settings.auto_reject_threshold,
        "webhook": webhook,
        "webhook_enabled": bool(outbox and outbox.enabled),
    }


def summary_markdown(snapshot: dict, locale: Locale) -> str:
    """Both "reject" numbers named with their thresholds: the quality gate and the webhook's."""
    hook = snapshot["webhook"]
    webhook_state = (
        f"{tr(locale, 'pending')} {hook['pending']} · {tr(locale, 'sent')} {hook['sent']} · {tr(locale, 'failed')} {hook['failed']}"
        + ("" if snapshot["webhook_enabled"] else f" ({tr(locale, 'webhook_off')})")
    )
    return (
        f"**{tr(locale, 'today')}** · **{tr(locale, 'processed')}:** {snapshot['count']} · "
        f"**{tr(locale, 'mean_quality')}:** {_fmt(snapshot['mean_quality'])}\n\n"
        f"- **{tr(locale, 'low_quality', threshold=snapshot['reject_threshold'])}:** {_fmt(snapshot['low_quality_rate'], '{:.1%}')}\n"
        f"- **{tr(locale, 'webhook_rejects', threshold=snapshot['auto_reject_threshold'])}:** {snapshot['rejected']}\n"
        f"- **{tr(locale, 'webhook')}:** {webhook_state}"
    )


def per_source_table(frame: pd.DataFrame, locale: Locale) -> pd.DataFrame:
    """The store's per-source frame with readable numbers, reasons and headers in the request's language."""
    return pd.DataFrame(
        {
            tr(locale, "source"): frame["source"],
            tr(locale, "count"): frame["count"].astype(int),
            tr(locale, "mean_quality"): [_fmt(value) for value in frame["mean_quality"]],
            tr(locale, "low_rate"): [_fmt(value, "{:.1%}") for value in frame["low_quality_rate"]],
            tr(locale, "top_reasons"): ["; ".join(reason_text(code, locale, short=True) for code in codes) for codes in frame["top_reasons"]],
        }
    )


def on_monitor(window: str, source: str | None = None, request: gr.Request | None = None):
    """Summary, hourly chart, day × hour heatmap, per-source table, hour and source choices, the latest hour's thumbnails."""
    locale = locale_of(request)
    settings = get_settings()
    try:
        chosen = _source_or_none(source)
    except FroodError as error:
        return error_markdown(error, locale), gr.Plot(), gr.Plot(), gr.Dataframe(), gr.Dropdown(), gr.Dropdown(), gr.HTML()
    store = service.store()
    now = datetime.now(UTC)
    hours = 24 * 7 if window == "7d" else 24
    since = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    threshold = settings.reject_threshold
    frame = store.hourly(since, now, threshold, source=chosen)
    line = charts.hourly_quality_figure(
        frame, tr(locale, "hourly_title"), tr(locale, "mean_quality"), tr(locale, "images"), tr(locale, "utc_hour")
    )
    heat = charts.heatmap_figure(
        store.day_hour_heatmap(7, now, threshold, source=chosen),
        tr(locale, "heat_title") + (f" · {chosen}" if chosen else ""),
        tr(locale, "rate"),
        tr(locale, "utc_hour"),
        tr(locale, "date"),
    )
    table = per_source_table(store.per_source(since, threshold), locale)
    choices = [hour.strftime("%Y-%m-%d %H:00") for hour, count in zip(frame["hour"], frame["count"]) if count][::-1]
    source_choices = [(tr(locale, "all_sources"), ALL_SOURCES)] + [(name, name) for name in store.sources()]
    latest = choices[0] if choices else None
    return (
        summary_markdown(monitor_snapshot(chosen), locale),
        line,
        heat,
        table,
        gr.Dropdown(choices=choices, value=latest),
        gr.Dropdown(choices=source_choices, value=chosen or ALL_SOURCES),
        on_hour(latest, chosen, request),
    )


def on_hour(hour: str | None, source: str | None = None, request: gr.Request | None = None) -> str:
    """The low-quality thumbnails of one hour at native size, each captioned with time, quality, reasons, source."""
    locale = locale_of(request)
    if not hour:
        return ""
    try:
        start = datetime.strptime(hour, "%Y-%m-%d %H:00").replace(tzinfo=UTC)
        chosen = _source_or_none(source)
    except (ValueError, FroodError) as error:
        return error_markdown(error if isinstance(error, FroodError) else FroodError(str(error)), locale)
    tiles = []
    events = service.store().low_quality_in_hour(start, low_quality_threshold=get_settings().reject_threshold, source=chosen)
    for event in events:
        rgb = facegrid.read_rgb(event.thumbnail_path) if event.thumbnail_path else None
        if rgb is None:
            continue
        caption = [f"{event.timestamp:%H:%M:%S} · {tr(locale, 'quality')} {event.quality:.2f}", event.source]
        caption += [reason_text(code, locale, short=True) for code in event.reason_codes]
        tiles.append(facegrid.figure(rgb, caption, css_class="thumb-tile"))
    return facegrid.grid(tiles, "thumb-grid") if tiles else facegrid.message(tr(locale, "no_thumbs"))


def build_compare_tab() -> None:
    with gr.Tab(I18N("compare"), elem_id="compare-tab"):
        with gr.Row():
            image_a = gr.Image(label=I18N("image_a"), type="filepath", sources=IMAGE_SOURCES, elem_id="image-a", height=IMAGE_HEIGHT)
            image_b = gr.Image(label=I18N("image_b"), type="filepath", sources=IMAGE_SOURCES, elem_id="image-b", height=IMAGE_HEIGHT)
        with gr.Row():
            thorough = gr.Checkbox(label=I18N("thorough"), value=False)
            source = gr.Textbox(label=I18N("source"), max_lines=1, elem_id="compare-source")
        button = gr.Button(I18N("run_compare"), variant="primary", elem_id="compare-button")
        result = gr.Markdown(elem_id="compare-result")
        gr.Markdown(I18N("crops"))
        crops = gr.HTML(elem_id="compare-crops")
        button.click(on_compare, [image_a, image_b, thorough, source], [result, crops], api_name="compare")


def build_extract_tab() -> None:
    with gr.Tab(I18N("extract"), elem_id="extract-tab"):
        image = gr.Image(label=I18N("one_image"), type="filepath", sources=IMAGE_SOURCES, elem_id="image-extract", height=IMAGE_HEIGHT)
        with gr.Row():
            thorough = gr.Checkbox(label=I18N("thorough"), value=False)
            source = gr.Textbox(label=I18N("source"), max_lines=1, elem_id="extract-source")
        button = gr.Button(I18N("run_extract"), variant="primary", elem_id="extract-button")
        result = gr.Markdown(elem_id="extract-result")
        with gr.Row():
            feature_json = gr.JSON(label=I18N("json"))
            heatmap = gr.Image(label=I18N("heatmap"), type="numpy", interactive=False, height=240)
        files = gr.File(label=I18N("downloads"), file_count="multiple")
        button.click(on_extract, [image, thorough, source], [result, feature_json, files, heatmap], api_name="extract")


def build_monitor_tab() -> None:
    with gr.Tab(I18N("monitor"), elem_id="monitor-tab") as tab:
        with gr.Row():
            window = gr.Radio(["24h", "7d"], value="24h", label=I18N("window"))
            source = gr.Dropdown(label=I18N("source_filter"), choices=[], value=None, allow_custom_value=True, elem_id="monitor-source")
            refresh = gr.Button(I18N("refresh"), elem_id="monitor-refresh")
        summary = gr.Markdown(elem_id="monitor-summary")
        hourly_plot = gr.Plot()
        heatmap_plot = gr.Plot()
        gr.Markdown(I18N("per_source"))
        table = gr.Dataframe(interactive=False, elem_id="monitor-per-source", wrap=True)
        hour = gr.Dropdown(label=I18N("hour"), choices=[], allow_custom_value=False, elem_id="monitor-hour")
        gr.Markdown(I18N("thumbs"))
        thumbs = gr.HTML(elem_id="monitor-thumbs")
        outputs = [summary, hourly_plot, heatmap_plot, table, hour, source, thumbs]
        refresh.click(on_monitor, [window, source], outputs, api_name="monitor")
        window.change(on_monitor, [window, source], outputs, api_name=False)
        source.input(on_monitor, [window, source], outputs, api_name=False)
        tab.select(on_monitor, [window, source], outputs, api_name=False)
        gr.Timer(30).tick(on_monitor, [window, source], outputs, api_name=False)
        hour.input(on_hour, [hour, source], [thumbs], api_name=False)


def build_ui() -> gr.Blocks:
    """The Blocks: one builder per tab (a new tab is one more call here)."""
    with gr.Blocks(title="face-recognition-ood", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(I18N("title"))
        build_compare_tab()
        build_extract_tab()
        build_monitor_tab()
        build_gallery_tab()
        build_pose_tab(I18N)
    return demo


def create_app() -> FastAPI:
    """FastAPI server: ``/health`` beside the Gradio UI mounted at ``/``."""
    started = time.time()
    api = FastAPI(title="face-recognition-ood", version=VERSION, description="Face features with an OOD quality score. See the README.")

    @api.get("/health")
    def health() -> JSONResponse:
        if not service.is_ready():
            return JSONResponse({"status": "loading"}, status_code=503)
        pipeline = service.get_pipeline()
        return JSONResponse(
            {"status": "ok", "model": pipeline.model, "device": pipeline.device, "version": VERSION, "uptime_s": round(time.time() - started, 1)}
        )

    api_routes.install(api)
    keypoints_api.install(api)
    api.add_middleware(BodySizeLimit, limit=get_settings().max_request_bytes)

    @api.get("/stats")
    def stats(source: str | None = None) -> JSONResponse:
        return JSONResponse(monitor_snapshot(clean_source(source) if source else None))

    demo = build_ui()
    demo.queue(default_concurrency_limit=2)
    return gr.mount_gradio_app(api, demo, path="/", i18n=I18N, show_error=False)


def attach_store_and_webhook() -> None:
    """The stats store (with background pruning) and the reject webhook worker."""
    settings = get_settings()
    store = open_store(settings)  # SQLite files, or PostgreSQL shared by replicas (DATABASE_URL)
    store.start_pruning(settings.prune_interval_s)
    outbox = open_outbox(settings)
    outbox.start()
    service.attach(store, outbox)


def main() -> None:
    configure_logging()
    settings = get_settings()
    attach_store_and_webhook()
    app = create_app()
    threading.Thread(target=service.get_pipeline, name="model-loader", daemon=True).start()
    log.info("Serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
