"""The web app: FastAPI with ``/health`` and the Gradio Blocks UI (Compare, Extract) on one port (7860).

A thin shell: every callback calls :mod:`recognition.service` and only formats its result.
UI text comes in English and Simplified Chinese, chosen by the browser's locale (``gr.I18n``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from recognition import service
from recognition.errors import FroodError
from recognition.logs import configure_logging
from settings import get_settings

log = logging.getLogger("frood.app")
VERSION = "0.1.0"

I18N = gr.I18n(
    en={
        "title": "Face recognition with an out-of-distribution quality score",
        "compare": "Compare",
        "extract": "Extract",
        "image_a": "Image A",
        "image_b": "Image B",
        "image": "Image",
        "run_compare": "Compare",
        "run_extract": "Extract feature",
        "result": "Result",
        "crops": "Aligned 112×112 faces",
        "json": "Feature JSON",
        "downloads": "Downloads (.json, .npy)",
        "thorough": "Thorough quality (feature stability, slower)",
    },
    **{
        "zh-CN": {
            "title": "人脸识别与分布外（OOD）质量评分",
            "compare": "比对",
            "extract": "提取",
            "image_a": "图像 A",
            "image_b": "图像 B",
            "image": "图像",
            "run_compare": "开始比对",
            "run_extract": "提取特征",
            "result": "结果",
            "crops": "对齐后的 112×112 人脸",
            "json": "特征 JSON",
            "downloads": "下载（.json、.npy）",
            "thorough": "精细质量评估（特征稳定性，较慢）",
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
        return "**⚠️ Please provide an image / 请提供图像**", None, None
    try:
        timed = service.extract(image, thorough=thorough)
    except Exception as error:
        return _error_markdown(error), None, None
    result = timed.value
    payload = result.to_json()
    if not result.faces:
        return f"**⚠️ No face found / 未检测到人脸** · {timed.latency_ms:.0f} ms", payload, None
    folder = Path(tempfile.mkdtemp(prefix="frood-"))
    json_path = folder / "feature.json"
    json_path.write_text(json.dumps(payload), encoding="utf-8")
    npy_path = folder / "feature.npy"
    np.save(npy_path, result.face.feature)
    text = (
        f"**Quality / 质量:** {quality_badge(result.face.quality)}{_reason_lines(result.face.reason_messages())}\n\n"
        f"Faces found / 检测到人脸: {len(result.faces)} · Response time / 响应时间: {timed.latency_ms:.0f} ms"
    )
    return text, payload, [str(json_path), str(npy_path)]


def build_ui() -> gr.Blocks:
    with gr.Blocks(title="face-recognition-ood") as demo:
        gr.Markdown(I18N("title"))
        with gr.Tab(I18N("compare")):
            with gr.Row():
                image_a = gr.Image(label=I18N("image_a"), type="filepath", sources=["upload", "webcam", "clipboard"])
                image_b = gr.Image(label=I18N("image_b"), type="filepath", sources=["upload", "webcam", "clipboard"])
            compare_thorough = gr.Checkbox(label=I18N("thorough"), value=False)
            compare_button = gr.Button(I18N("run_compare"), variant="primary")
            compare_result = gr.Markdown(elem_id="compare-result")
            compare_crops = gr.Gallery(label=I18N("crops"), columns=2, height=180)
            compare_button.click(on_compare, [image_a, image_b, compare_thorough], [compare_result, compare_crops], api_name="compare")
        with gr.Tab(I18N("extract")):
            image = gr.Image(label=I18N("image"), type="filepath", sources=["upload", "webcam", "clipboard"])
            extract_thorough = gr.Checkbox(label=I18N("thorough"), value=False)
            extract_button = gr.Button(I18N("run_extract"), variant="primary")
            extract_result = gr.Markdown(elem_id="extract-result")
            extract_json = gr.JSON(label=I18N("json"))
            extract_files = gr.File(label=I18N("downloads"), file_count="multiple")
            extract_button.click(on_extract, [image, extract_thorough], [extract_result, extract_json, extract_files], api_name="extract")
    return demo


def create_app() -> FastAPI:
    """FastAPI server: ``/health`` beside the Gradio UI mounted at ``/``."""
    started = time.time()
    api = FastAPI(title="face-recognition-ood", version=VERSION)

    @api.get("/health")
    def health() -> JSONResponse:
        if not service.is_ready():
            return JSONResponse({"status": "loading"}, status_code=503)
        pipeline = service.get_pipeline()
        return JSONResponse(
            {"status": "ok", "model": pipeline.model, "device": pipeline.device, "version": VERSION, "uptime_s": round(time.time() - started, 1)}
        )

    demo = build_ui()
    demo.queue(default_concurrency_limit=2)
    return gr.mount_gradio_app(api, demo, path="/", i18n=I18N, show_error=False)


def main() -> None:
    configure_logging()
    settings = get_settings()
    app = create_app()
    threading.Thread(target=service.get_pipeline, name="model-loader", daemon=True).start()
    log.info("Serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
