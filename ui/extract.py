"""The Extract tab: one image -> the feature JSON (copy or download), the quality with reasons, the heatmap."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pandas as pd

from schemas import analysis_json
from schemas.component_messages import component_label
from service import faces as service
from service.access import requires
from settings import get_settings
from ui.common import IMAGE_HEIGHT, IMAGE_SOURCES, clean_source, colon, error_markdown, quality_badge, reason_lines, upload_path, warning
from ui.drawing import Box, draw_boxes, read_photo
from ui.i18n import I18N, locale_of, reason_text, tr

log = logging.getLogger("frood.ui")
DOWNLOADS_DIR_NAME = "frood-ui-downloads"  # one folder under the temp dir, one short-lived subfolder per request
DOWNLOADS_KEEP_S = 600  # Gradio copies the files into its cache when the request ends; ten minutes is ample


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
    # Gradio copies the answer's files into its own cache (swept after UI_TEMP_KEEP_S too): ours go as soon as that
    # time has passed, not at the next request, which may never come.
    remover = threading.Timer(get_settings().ui_temp_keep_s, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True})
    remover.daemon = True
    remover.start()
    return folder


# The measures' units in Chinese (symbols and formulas such as px, IED, ΔE(a*b*) stay as they are).
UNITS_ZH = {
    "deg": "度",
    "ratio": "比值",
    "ratio²": "比值²",
    "share": "占比",
    "bits": "比特",
    "gradient": "梯度",
    "probability": "概率",
    "cosine": "余弦",
    "grey 0–255": "灰度 0–255",
    "log10 var(Laplacian)": "log10 拉普拉斯方差",
    "T": "T",
    "CrCb": "色度",
}


def unit_text(unit: str, locale: str) -> str:
    if locale != "zh":
        return unit
    if unit in UNITS_ZH:
        return UNITS_ZH[unit]
    return " ".join(UNITS_ZH.get(word, word) for word in unit.split())


def components_table(report, locale: str) -> pd.DataFrame:
    """One face's components, failing requirements first, then the lowest qualities: what to fix comes first."""
    language = "zh" if locale == "zh" else "en"
    measures = sorted(report.components.measures.values(), key=lambda item: (item.passes is not False, item.quality))
    verdict = {True: tr(locale, "passes_yes"), False: tr(locale, "passes_no"), None: "–"}
    return pd.DataFrame(
        {
            tr(locale, "col_measure"): [component_label(item.name, language) for item in measures],
            tr(locale, "col_value"): [f"{item.value:.3g} {unit_text(item.unit, locale)}".strip() for item in measures],
            tr(locale, "col_quality"): [int(item.quality) for item in measures],
            tr(locale, "col_passes"): [verdict[item.passes] for item in measures],
        }
    )


FEATURE_LAST = "feature"
OVERVIEW_SIDE = 480


def ordered_payload(payload: dict) -> dict:
    """The answer with what a person reads first (quality, reasons) and the 512 numbers last."""
    return {**{key: value for key, value in payload.items() if key != FEATURE_LAST}, FEATURE_LAST: payload.get(FEATURE_LAST, [])}


def shown_payload(payload: dict, locale: str) -> dict:
    """The JSON shown in the page: each reason in the page's language only (the download keeps the API's form)."""
    shown = ordered_payload(payload)
    shown["reasons"] = [{"code": item["code"], "text": reason_text(item["code"], locale)} for item in payload.get("reasons", [])]
    return shown


def faces_image(path: str, faces: list):
    """The photo with every face numbered, face 1 (the one analysed) in blue; None if it cannot be drawn."""
    try:
        rgb, scale = read_photo(path, OVERVIEW_SIDE)
        return draw_boxes(rgb, [Box(tuple(face.bbox), str(number), "used" if number == 1 else "other") for number, face in enumerate(faces, 1)], scale)
    except Exception:
        log.exception("Could not draw the faces of the photo")
        return None


@requires("extract")
def on_extract(image: str | dict | None, thorough: bool, source: str | None = None, request: gr.Request | None = None):
    """Outputs: text, JSON, downloads, heatmap, components table, the photo with the face used boxed."""
    locale = locale_of(request)
    path = upload_path(image)
    if path is None:
        return warning(tr(locale, "need_one")), None, None, None, None, None
    try:
        timed = service.extract(path, thorough=thorough, source=clean_source(source))
        result = timed.value
        payload = analysis_json(result)
        if not result.faces:
            return f"{warning(tr(locale, 'no_face'))} · {timed.latency_ms:.0f} ms", shown_payload(payload, locale), None, None, None, None
        folder = downloads_folder()
        json_path = folder / "feature.json"
        json_path.write_text(json.dumps(ordered_payload(payload), ensure_ascii=False), encoding="utf-8")
        npy_path = folder / "feature.npy"
        np.save(npy_path, result.face.feature)
    except Exception as error:
        return error_markdown(error, locale), None, None, None, None, None
    c = colon(locale)
    text = (
        f"**{tr(locale, 'quality')}**{c}{quality_badge(result.face.quality, locale)}{reason_lines(result.face.reasons, locale)}\n\n"
        f"{tr(locale, 'faces_found')}{c}{len(result.faces)} · {tr(locale, 'response_time')}{c}{timed.latency_ms:.0f} ms"
    )
    if len(result.faces) > 1:
        text += f"\n\n{tr(locale, 'several_faces_one', count=len(result.faces))}"
    reject = get_settings().reject_threshold
    if result.face.quality is not None and result.face.quality < reject:  # offered, but not without a word
        text += "\n\n" + warning(tr(locale, "rejected_feature", quality=result.face.quality, threshold=reject))
    try:  # the feature is valid even when the heatmap fails: say so, keep the result
        heat = cv2.resize(service.heatmap(result.face), (224, 224), interpolation=cv2.INTER_CUBIC)
    except Exception:
        log.exception("Quality heatmap failed")
        heat = None
        text += "\n\n" + warning(tr(locale, "heatmap_failed"))
    try:  # the components explain the score; the answer stands without them
        components = components_table(service.components_for(path, result)[0], locale)
    except Exception:
        log.exception("Quality components failed")
        components = None
    return text, shown_payload(payload, locale), [str(json_path), str(npy_path)], heat, components, faces_image(path, result.faces)


def build_extract_tab() -> None:
    with gr.Tab(I18N("extract"), elem_id="extract-tab"):
        image = gr.Image(label=I18N("one_image"), type="filepath", sources=IMAGE_SOURCES, elem_id="image-extract", height=IMAGE_HEIGHT)
        with gr.Row():
            thorough = gr.Checkbox(label=I18N("thorough"), value=False)
            source = gr.Textbox(label=I18N("source"), max_lines=1, elem_id="extract-source")
        button = gr.Button(I18N("run_extract"), variant="primary", elem_id="extract-button")
        result = gr.Markdown(elem_id="extract-result")
        with gr.Row():
            used = gr.Image(label=I18N("face_used"), type="numpy", interactive=False, height=240, format="png", elem_id="extract-faces")
            heatmap = gr.Image(label=I18N("heatmap"), type="numpy", interactive=False, height=240, elem_id="extract-heatmap")
        feature_json = gr.JSON(label=I18N("json"), elem_id="extract-json")
        gr.Markdown(I18N("components_title"))
        components = gr.Dataframe(interactive=False, elem_id="extract-components", wrap=True, buttons=[])
        files = gr.File(label=I18N("downloads"), file_count="multiple")
        outputs = [result, feature_json, files, heatmap, components, used]
        # preprocess=False: Gradio would open the upload itself and answer a bare "Error" for a file that is not an image
        button.click(on_extract, [image, thorough, source], outputs, api_name="extract", preprocess=False)
