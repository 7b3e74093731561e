"""The web app: FastAPI (``/health``, ``/stats``) and the Gradio Blocks UI (Compare, Extract, Monitor) on one port.

A thin shell: every callback calls :mod:`recognition.service` and only formats its result.
UI text comes in English and Simplified Chinese, chosen by the browser's locale (``gr.I18n``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api import routes as api_routes
from api.security import BodySizeLimit
from dashboard import charts
from recognition import service
from recognition.errors import FroodError
from recognition.logs import configure_logging
from settings import get_settings
from storage.factory import open_outbox, open_store

log = logging.getLogger("frood.app")
VERSION = "0.1.0"

I18N = gr.I18n(
    en={
        "title": "Face recognition with an out-of-distribution quality score",
        "compare": "Compare",
        "extract": "Extract",
        "image_a": "Image A",
        "image_b": "Image B",
        "one_image": "Image",
        "run_compare": "Compare",
        "run_extract": "Extract feature",
        "result": "Result",
        "crops": "Aligned 112×112 faces",
        "json": "Feature JSON",
        "downloads": "Downloads (.json, .npy)",
        "thorough": "Thorough quality (feature stability, slower)",
        "heatmap": "Quality heatmap (where covering the face costs the most quality)",
        "monitor": "Monitor",
        "window": "Window",
        "refresh": "Refresh",
        "hour": "Hour (UTC) for low-quality thumbnails",
        "thumbs": "Low-quality images in that hour",
        "summary": "Today (UTC)",
    },
    **{
        "zh-CN": {
            "title": "人脸识别与分布外（OOD）质量评分",
            "compare": "比对",
            "extract": "提取",
            "image_a": "图像 A",
            "image_b": "图像 B",
            "one_image": "图像",
            "run_compare": "开始比对",
            "run_extract": "提取特征",
            "result": "结果",
            "crops": "对齐后的 112×112 人脸",
            "json": "特征 JSON",
            "downloads": "下载（.json、.npy）",
            "thorough": "精细质量评估（特征稳定性，较慢）",
            "heatmap": "质量热力图（遮挡后质量下降最多的区域）",
            "monitor": "监控",
            "window": "时间范围",
            "refresh": "刷新",
            "hour": "查看低质量缩略图的小时（UTC）",
            "thumbs": "该小时的低质量图像",
            "summary": "今日（UTC）",
        }
    },
)


def quality_badge(score: float | None) -> str:
    """Green ≥ trust, amber between, red < reject."""
    settings = get_settings()
    if score is None:
        return "⚪ –"
    if score >= settings.trust_threshold:
        return f"🟢 {score:.2f}"
    if score >= settings.reject_threshold:
        return f"🟠 {score:.2f}"
    return f"🔴 {score:.2f}"


def _reason_lines(reasons: list[dict[str, str]]) -> str:
    return "".join(f"\n  - {reason['en']} / {reason['zh']}" for reason in reasons)


def _error_markdown(error: Exception) -> str:
    if isinstance(error, FroodError):
        return f"**⚠️ {error}**"
    log.exception("Unexpected error in a UI request")
    return "**⚠️ Internal error: the request could not be processed / 内部错误：请求无法处理**"


def on_compare(image_a: str | None, image_b: str | None, thorough: bool):
    if image_a is None or image_b is None:
        return "**⚠️ Please provide two images / 请提供两张图像**", None
    try:
        timed = service.compare(image_a, image_b, thorough=thorough)
    except Exception as error:  # every failure becomes a readable message, never a traceback
        return _error_markdown(error), None
    result = timed.value
    text = (
        f"### {result.message_en} / {result.message_zh}\n\n"
        f"**Similarity / 相似度:** {result.similarity:.3f} (threshold / 阈值 {result.match_threshold:.3f})\n\n"
        f"**Quality A / 质量 A:** {quality_badge(result.quality_a)}{_reason_lines(result.a.face.reason_messages())}\n\n"
        f"**Quality B / 质量 B:** {quality_badge(result.quality_b)}{_reason_lines(result.b.face.reason_messages())}\n\n"
        f"Faces found / 检测到人脸: A {len(result.a.faces)}, B {len(result.b.faces)} · "
        f"Response time / 响应时间: {timed.latency_ms:.0f} ms"
    )
    return text, [(result.a.face.aligned, "A"), (result.b.face.aligned, "B")]


def on_extract(image: str | None, thorough: bool):
    if image is None:
        return "**⚠️ Please provide an image / 请提供图像**", None, None, None
    try:
        timed = service.extract(image, thorough=thorough)
    except Exception as error:
        return _error_markdown(error), None, None, None
    result = timed.value
    payload = result.to_json()
    if not result.faces:
        return f"**⚠️ No face found / 未检测到人脸** · {timed.latency_ms:.0f} ms", payload, None, None
    folder = Path(tempfile.mkdtemp(prefix="frood-"))
    json_path = folder / "feature.json"
    json_path.write_text(json.dumps(payload), encoding="utf-8")
    npy_path = folder / "feature.npy"
    np.save(npy_path, result.face.feature)
    heat = service.heatmap(result.face)
    text = (
        f"**Quality / 质量:** {quality_badge(result.face.quality)}{_reason_lines(result.face.reason_messages())}\n\n"
        f"Faces found / 检测到人脸: {len(result.faces)} · Response time / 响应时间: {timed.latency_ms:.0f} ms"
    )
    return text, payload, [str(json_path), str(npy_path)], cv2.resize(heat, (224, 224), interpolation=cv2.INTER_CUBIC)


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def monitor_snapshot() -> dict:
    """Today's numbers (UTC) from the store and the webhook outbox; also served at ``/stats``."""
    store, outbox = service.store(), service.outbox()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    summary = store.summary(today, get_settings().reject_threshold) if store else {"count": 0, "mean_quality": None, "low_quality_rate": None, "rejected": 0}
    webhook = outbox.stats() if outbox and outbox.enabled else {"sent": 0, "pending": 0, "failed": 0}
    return {"since": today.isoformat(), **summary, "webhook": webhook, "webhook_enabled": bool(outbox and outbox.enabled)}


def on_monitor(window: str):
    """Summary text, hourly chart, day × hour heatmap and the hour choices for thumbnails."""
    snapshot = monitor_snapshot()
    hook = snapshot["webhook"]
    text = (
        f"**Processed / 已处理:** {snapshot['count']} · "
        f"**Mean quality / 平均质量:** {_fmt(snapshot['mean_quality'])} · "
        f"**Low-quality rate (< {get_settings().reject_threshold}) / 低质量占比:** {_fmt(snapshot['low_quality_rate'], '{:.1%}')} · "
        f"**Rejected / 拒绝:** {snapshot['rejected']} · "
        f"**Webhook / 回调:** sent {hook['sent']} · pending {hook['pending']} · failed {hook['failed']}"
        + ("" if snapshot["webhook_enabled"] else " (WEBHOOK_URL not set / 未配置)")
    )
    store = service.store()
    now = datetime.now(UTC)
    hours = 24 * 7 if window == "7d" else 24
    since = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    threshold = get_settings().reject_threshold
    frame = store.hourly(since, now, threshold)
    line = charts.hourly_quality_figure(frame, "Hourly mean quality and volume / 每小时平均质量与处理量", "Mean quality / 平均质量", "Images / 图像数")
    heat = charts.heatmap_figure(store.day_hour_heatmap(7, now, threshold), "Low-quality rate, last 7 days / 近 7 天低质量占比", "rate")
    choices = [hour.strftime("%Y-%m-%d %H:00") for hour, count in zip(frame["hour"], frame["count"]) if count][::-1]
    return text, line, heat, gr.Dropdown(choices=choices, value=choices[0] if choices else None)


def on_hour(hour: str | None):
    if not hour:
        return []
    start = datetime.strptime(hour, "%Y-%m-%d %H:00").replace(tzinfo=UTC)
    items = []
    for event in service.store().low_quality_in_hour(start, low_quality_threshold=get_settings().reject_threshold):
        caption = f"{event.timestamp:%H:%M:%S} · {event.quality:.2f} · {', '.join(event.reason_codes)}"
        if event.thumbnail_path and Path(event.thumbnail_path).is_file():
            items.append((event.thumbnail_path, caption))
    return items


def build_ui() -> gr.Blocks:
    image_sources = ["upload", "webcam", "clipboard"]
    with gr.Blocks(title="face-recognition-ood") as demo:
        gr.Markdown(I18N("title"))
        with gr.Tab(I18N("compare")):
            with gr.Row():
                image_a = gr.Image(label=I18N("image_a"), type="filepath", sources=image_sources, elem_id="image-a")
                image_b = gr.Image(label=I18N("image_b"), type="filepath", sources=image_sources, elem_id="image-b")
            compare_thorough = gr.Checkbox(label=I18N("thorough"), value=False)
            compare_button = gr.Button(I18N("run_compare"), variant="primary", elem_id="compare-button")
            compare_result = gr.Markdown(elem_id="compare-result")
            compare_crops = gr.Gallery(label=I18N("crops"), columns=2, height=200, object_fit="contain", preview=False, allow_preview=True)
            compare_button.click(on_compare, [image_a, image_b, compare_thorough], [compare_result, compare_crops], api_name="compare")
        with gr.Tab(I18N("extract")):
            image = gr.Image(label=I18N("one_image"), type="filepath", sources=image_sources, elem_id="image-extract")
            extract_thorough = gr.Checkbox(label=I18N("thorough"), value=False)
            extract_button = gr.Button(I18N("run_extract"), variant="primary", elem_id="extract-button")
            extract_result = gr.Markdown(elem_id="extract-result")
            with gr.Row():
                extract_json = gr.JSON(label=I18N("json"))
                extract_heatmap = gr.Image(label=I18N("heatmap"), type="numpy", interactive=False, height=240)
            extract_files = gr.File(label=I18N("downloads"), file_count="multiple")
            extract_button.click(
                on_extract, [image, extract_thorough], [extract_result, extract_json, extract_files, extract_heatmap], api_name="extract"
            )
        with gr.Tab(I18N("monitor"), elem_id="monitor-tab") as monitor_tab:
            with gr.Row():
                window = gr.Radio(["24h", "7d"], value="24h", label=I18N("window"))
                refresh = gr.Button(I18N("refresh"), elem_id="monitor-refresh")
            summary = gr.Markdown(elem_id="monitor-summary")
            hourly_plot = gr.Plot()
            heatmap_plot = gr.Plot()
            hour = gr.Dropdown(label=I18N("hour"), choices=[], allow_custom_value=False)
            thumbs = gr.Gallery(label=I18N("thumbs"), columns=8, height=220, object_fit="contain", preview=False, allow_preview=True)
            outputs = [summary, hourly_plot, heatmap_plot, hour]
            refresh.click(on_monitor, [window], outputs, api_name="monitor")
            window.change(on_monitor, [window], outputs, api_name=False)
            monitor_tab.select(on_monitor, [window], outputs, api_name=False)
            gr.Timer(30).tick(on_monitor, [window], outputs, api_name=False)
            hour.change(on_hour, [hour], [thumbs], api_name=False)
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
    api.add_middleware(BodySizeLimit, limit=get_settings().max_request_bytes)

    @api.get("/stats")
    def stats() -> JSONResponse:
        return JSONResponse(monitor_snapshot())

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
