"""The Compare tab: two images -> similarity, both qualities with reasons, the aligned crops, the decision, and
each photo with its faces boxed (blue: the face compared) so the operator sees which face of a group was used."""

from __future__ import annotations

import logging

import gradio as gr

from service import faces as service
from service.access import requires
from ui import facegrid
from ui.common import IMAGE_HEIGHT, IMAGE_SOURCES, clean_source, colon, error_markdown, paren, quality_badge, quality_text, reason_lines, upload_path, warning
from ui.drawing import Box, draw_boxes, read_photo
from ui.i18n import I18N, Locale, decision_text, locale_of, reason_text, tr

log = logging.getLogger("frood.ui")
OVERVIEW_SIDE = 240  # the photo with its faces boxed, next to the crops


def _crop_caption(side: str, quality: float | None, codes: list[str], locale: Locale) -> list[str]:
    lines = [f"{side} · {tr(locale, 'quality')} {quality_text(quality, locale)}"]
    return lines + [reason_text(code, locale, short=True) for code in codes]


def faces_overview(path: str, faces: list, caption: str, prefix: str = "") -> str | None:
    """The photo (at most OVERVIEW_SIDE) with every face numbered; face 1, the one used, in blue. None if unreadable."""
    try:
        rgb, scale = read_photo(path, OVERVIEW_SIDE)
    except Exception:  # the analysis read it; a preview that fails costs only the preview
        log.exception("Could not draw the faces overview")
        return None
    boxes = [Box(tuple(face.bbox), f"{prefix}{number}", "used" if number == 1 else "other") for number, face in enumerate(faces, 1)]
    return facegrid.figure(draw_boxes(rgb, boxes, scale), [caption], css_class="overview-tile")


@requires("compare")
def on_compare(
    image_a: str | dict | None, image_b: str | dict | None, thorough: bool, source: str | None = None, request: gr.Request | None = None
):
    """``source`` defaults to None so clients written before it existed keep working. The images come as paths or,
    from the page (no preprocessing), as Gradio's file data: a file that is not an image gets our readable error."""
    locale = locale_of(request)
    path_a, path_b = upload_path(image_a), upload_path(image_b)
    if path_a is None or path_b is None:
        return warning(tr(locale, "need_two")), ""
    try:
        timed = service.compare(path_a, path_b, thorough=thorough, source=clean_source(source))
    except Exception as error:  # every failure becomes a readable message, never a traceback
        return error_markdown(error, locale), ""
    result = timed.value
    c = colon(locale)
    text = (
        f"### {decision_text(result.decision, locale)}\n\n"
        f"**{tr(locale, 'similarity')}**{c}{result.similarity:.3f}{paren(locale, tr(locale, 'threshold') + ' ' + format(result.match_threshold, '.3f'))}\n\n"
        f"**{tr(locale, 'quality_a')}**{c}{quality_badge(result.quality_a, locale)}{reason_lines(result.a.face.reasons, locale)}\n\n"
        f"**{tr(locale, 'quality_b')}**{c}{quality_badge(result.quality_b, locale)}{reason_lines(result.b.face.reasons, locale)}\n\n"
        f"{tr(locale, 'faces_found')}{c}A {len(result.a.faces)} · B {len(result.b.faces)} · "
        f"{tr(locale, 'response_time')}{c}{timed.latency_ms:.0f} ms"
    )
    for side, analysis in (("A", result.a), ("B", result.b)):
        if len(analysis.faces) > 1:
            text += f"\n\n{tr(locale, 'several_faces', count=len(analysis.faces), side=side)}"
    tiles = [
        facegrid.figure(side.face.aligned, _crop_caption(name, side.face.quality, side.face.reasons, locale))
        for name, side in (("A", result.a), ("B", result.b))
    ]
    for name, path, side in (("A", path_a, result.a), ("B", path_b, result.b)):
        overview = faces_overview(path, side.faces, f"{name} · {tr(locale, 'faces_found')} {len(side.faces)}", name)
        if overview:
            tiles.append(overview)
    return text, facegrid.grid(tiles)


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
        # preprocess=False: Gradio would open the upload itself and answer a bare "Error" for a file that is not an image
        button.click(on_compare, [image_a, image_b, thorough, source], [result, crops], api_name="compare", preprocess=False)
