"""The Compare tab: two images -> similarity, both qualities with reasons, the aligned crops, the decision."""

from __future__ import annotations

import gradio as gr

from service import faces as service
from service.access import requires
from ui import facegrid
from ui.common import IMAGE_HEIGHT, IMAGE_SOURCES, clean_source, error_markdown, quality_badge, reason_lines
from ui.i18n import I18N, Locale, decision_text, locale_of, reason_text, tr


def _crop_caption(side: str, quality: float | None, codes: list[str], locale: Locale) -> list[str]:
    lines = [f"{side} · {tr(locale, 'quality')} {quality_badge(quality, locale)}"]
    return lines + [reason_text(code, locale, short=True) for code in codes]


@requires("compare")
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
        f"### {decision_text(result.decision, locale)}\n\n"
        f"**{tr(locale, 'similarity')}:** {result.similarity:.3f} ({tr(locale, 'threshold')} {result.match_threshold:.3f})\n\n"
        f"**{tr(locale, 'quality_a')}:** {quality_badge(result.quality_a, locale)}{reason_lines(result.a.face.reasons, locale)}\n\n"
        f"**{tr(locale, 'quality_b')}:** {quality_badge(result.quality_b, locale)}{reason_lines(result.b.face.reasons, locale)}\n\n"
        f"{tr(locale, 'faces_found')}: A {len(result.a.faces)}, B {len(result.b.faces)} · "
        f"{tr(locale, 'response_time')}: {timed.latency_ms:.0f} ms"
    )
    crops = [
        facegrid.figure(side.face.aligned, _crop_caption(name, side.face.quality, side.face.reasons, locale))
        for name, side in (("A", result.a), ("B", result.b))
    ]
    return text, facegrid.grid(crops)


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
