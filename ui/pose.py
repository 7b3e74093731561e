"""The "Pose" tab: people, their boxes and 17 COCO keypoints drawn on the photo, and a table of persons.

A builder called inside the app's ``gr.Blocks``; it brings its own zh/en labels (registered with
:func:`ui.i18n.add_labels`) and messages, so the tab lives in one module. What the handler writes
is in the request's language only (``Accept-Language``), like the other tabs. All work is done by
:mod:`service.keypoints`.
"""

from __future__ import annotations

import logging

import gradio as gr
import pandas as pd

from errors import FroodError
from service.access import requires
from settings import get_settings
from ui.common import upload_path, warning
from ui.i18n import Locale, add_labels, error_text, locale_of

log = logging.getLogger("frood.ui.pose")

STRINGS = {
    "en": {
        "pose": "Pose",
        "pose_image": "Photo with people",
        "pose_threshold": "Person score threshold (detThreshold)",
        "pose_run": "Detect keypoints",
        "pose_drawn": "Skeletons",
        "pose_table": "Persons",
    },
    "zh-CN": {
        "pose": "姿态",
        "pose_image": "含人物的照片",
        "pose_threshold": "人体检测分数阈值（detThreshold）",
        "pose_run": "检测关键点",
        "pose_drawn": "骨架",
        "pose_table": "人物列表",
    },
}
MESSAGES: dict[Locale, dict[str, str]] = {
    "en": {
        "need_photo": "Please provide a photo",
        "found": "{count} person(s) found",
        "none": "No person found",
        "internal": "Internal error: the request could not be processed",
        "visible": "Keypoints ≥ {threshold}",
        "det_score": "Person score",
        "kpt_score": "Keypoint score",
        "bbox": "Box [x1, y1, x2, y2]",
    },
    "zh": {
        "need_photo": "请提供一张照片",
        "found": "检测到 {count} 人",
        "none": "未检测到人物",
        "internal": "内部错误：请求无法处理",
        "visible": "可见关键点 ≥ {threshold}",
        "det_score": "人体分数",
        "kpt_score": "关键点分数",
        "bbox": "边框 [x1, y1, x2, y2]",
    },
}


def message(locale: Locale, key: str, **fields) -> str:
    return MESSAGES.get(locale, MESSAGES["en"])[key].format(**fields)


def columns(locale: Locale, kpt_threshold: float) -> list[str]:
    """Headers in the page's language (the API's names, detScore and kptScore, are in docs/keypoints.md)."""
    return ["#", message(locale, "det_score"), message(locale, "kpt_score"), message(locale, "bbox"), message(locale, "visible", threshold=kpt_threshold)]


def persons_table(persons: list, kpt_threshold: float, locale: Locale = "en") -> pd.DataFrame:
    rows = [
        [
            number,
            round(person.det_score, 3),
            round(person.kpt_score, 3),
            "[" + ", ".join(f"{v:.0f}" for v in person.bbox) + "]",
            f"{int((person.keypoints[:, 2] >= kpt_threshold).sum())}/17",
        ]
        for number, person in enumerate(persons, 1)
    ]
    return pd.DataFrame(rows, columns=columns(locale, kpt_threshold))


@requires("keypoints")
def on_pose(image: str | dict | None, threshold: float, request: gr.Request = None):
    """Photo path → (status markdown, drawn image, persons table); every failure is a readable message."""
    locale = locale_of(request)
    image = upload_path(image)
    kpt_threshold = get_settings().keypoints_kpt_threshold
    empty = pd.DataFrame([], columns=columns(locale, kpt_threshold))
    if image is None:
        return warning(message(locale, "need_photo")), None, empty
    try:
        from service import keypoints as service

        result = service.detect(image, float(threshold), source="ui")
        drawn = service.drawn_image(result)
    except FroodError as error:
        return warning(error_text(error, locale)), None, empty
    except Exception:  # never a traceback in the UI
        log.exception("Unexpected error in the Pose tab")
        return warning(message(locale, "internal")), None, empty
    count = len(result.persons)
    status = f"### {message(locale, 'found', count=count)}" if count else f"### {message(locale, 'none')}"
    return status, drawn, persons_table(result.persons, kpt_threshold, locale)


def build_pose_tab(i18n: gr.I18n) -> None:
    """Add the tab to the Blocks being built (its labels are registered with the app's ``I18N``)."""
    add_labels(STRINGS["en"], STRINGS["zh-CN"])
    with gr.Tab(i18n("pose"), elem_id="pose-tab"):
        with gr.Row():
            image = gr.Image(label=i18n("pose_image"), type="filepath", sources=["upload", "webcam", "clipboard"], elem_id="image-pose")
            drawn = gr.Image(label=i18n("pose_drawn"), type="pil", interactive=False, elem_id="pose-drawn")
        threshold = gr.Slider(0.05, 0.95, value=get_settings().keypoints_det_threshold, step=0.05, label=i18n("pose_threshold"))
        button = gr.Button(i18n("pose_run"), variant="primary", elem_id="pose-button")
        status = gr.Markdown(elem_id="pose-result")
        table = gr.Dataframe(label=i18n("pose_table"), interactive=False, elem_id="pose-table", buttons=[])
        # preprocess=False: a file that is not an image gets our readable error, not Gradio's bare "Error"
        button.click(on_pose, [image, threshold], [status, drawn, table], api_name="pose", preprocess=False)
