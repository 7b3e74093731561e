"""The Gallery tab: create a gallery, enrol people from photos, list and remove identities, identify a group photo.

Galleries live where the HTTP API keeps them (``api.routes.registry``, ``DATA_DIR/indexes/<key>``), so a
gallery made here answers ``/face-recognition-infer`` with its key, and one built over the API shows up
here. Enrolment and identification are :mod:`service.gallery` (quality-gated enrol, top-k identify,
annotate); this module only adds what an operator needs to see: the aligned face of each enrolment
(kept beside the index, ``DATA_DIR/gallery-ui/<key>/<id>.png``), a name per gallery, and the reasons an
image was skipped, in the request's language.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from errors import FroodError
from service import faces as service
from service import gallery as gallery_service
from service.access import requires
from service.gallery import INDEX_TYPES, registry
from settings import get_settings
from ui import facegrid
from ui.common import clean_source, error_markdown
from ui.i18n import I18N, Locale, locale_of, reason_text, tr

log = logging.getLogger("frood.ui.gallery")
NAME_MAX = 64
FACES_SHOWN_PER_IDENTITY = 8
IDENTITIES_SHOWN = 200
TOP_K = 5


class _RememberingRecorder:
    """Counts each processed photo like Compare and Extract (a stats row, a webhook if rejected) and remembers
    its analysis, so the tab shows the enrolled face without analysing the photo twice."""

    def __init__(self, operation: str, source: str) -> None:
        self.operation, self.source = operation, source
        self.last: Any = None

    def __call__(self, decoded: Any, analysis: Any, latency_ms: float) -> None:
        self.last = analysis
        service.record_analysis(self.operation, self.source, decoded, analysis, latency_ms)


def _faces_dir(key: str) -> Path:
    if not key or not key.replace("-", "").isalnum():
        raise FroodError("unknown gallery")
    return get_settings().data_dir / "gallery-ui" / key


def _name_of(key: str) -> str | None:
    meta = _faces_dir(key) / "meta.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError):
        return None


def gallery_choices() -> list[tuple[str, str]]:
    """(shown name, index key) of every gallery on disk, named ones first."""
    root = get_settings().indexes_dir
    keys = sorted(path.name for path in root.iterdir() if path.is_dir() and path.name.replace("-", "").isalnum()) if root.is_dir() else []
    choices = []
    for key in keys:
        name = _name_of(key)
        choices.append((f"{name} · {key[:8]}" if name else key, key))
    return sorted(choices, key=lambda choice: (choice[0] == choice[1], choice[0].lower()))


def _clean_name(text: str | None) -> str:
    name = (text or "").strip()
    if not name or len(name) > NAME_MAX or "/" in name or "\\" in name or not name.isprintable():
        raise ValueError(name)
    return name


def identities_html(key: str | None, locale: Locale) -> str:
    """Each identity with its enrolled faces (native 112×112), at most a screenful."""
    if not key:
        return facegrid.message(tr(locale, "gallery_none"))
    with registry.lock:
        labels = registry.get(key).labels
    if not labels:
        return facegrid.message(tr(locale, "gallery_empty"))
    by_label: dict[str, list[int]] = {}
    for face_id, label in sorted(labels.items()):
        by_label.setdefault(label, []).append(face_id)
    parts = [f"<p>{html.escape(tr(locale, 'faces_in_gallery', count=len(labels), people=len(by_label)))}</p>"]
    folder = _faces_dir(key)
    for label in sorted(by_label)[:IDENTITIES_SHOWN]:
        ids = by_label[label]
        tiles = []
        for face_id in ids[:FACES_SHOWN_PER_IDENTITY]:
            rgb = facegrid.read_rgb(folder / f"{face_id}.png")
            if rgb is None:
                tiles.append(f"<span>#{face_id} · {html.escape(tr(locale, 'no_photo'))}</span>")
            else:
                tiles.append(facegrid.figure(rgb, [f"#{face_id}"]))
        more = f"<span>+{len(ids) - FACES_SHOWN_PER_IDENTITY}</span>" if len(ids) > FACES_SHOWN_PER_IDENTITY else ""
        parts.append(
            f'<div class="gallery-identity" data-label="{html.escape(label)}">'
            f"<h4>{html.escape(label)} ({len(ids)})</h4>{facegrid.grid(tiles + [more])}</div>"
        )
    return "".join(parts)


def _identity_choices(key: str | None) -> list[str]:
    if not key:
        return []
    with registry.lock:
        return sorted(set(registry.get(key).labels.values()))


def _refresh(key: str | None, locale: Locale) -> tuple[str, gr.Dropdown]:
    return identities_html(key, locale), gr.Dropdown(choices=_identity_choices(key), value=None)


@requires("gallery:read")
def on_reload(key: str | None, request: gr.Request):
    locale = locale_of(request)
    choices = gallery_choices()
    keys = [value for _, value in choices]
    key = key if key in keys else (keys[0] if keys else None)
    try:
        listing, identities = _refresh(key, locale)
    except Exception as error:
        return gr.Dropdown(choices=choices, value=key), error_markdown(error, locale), "", gr.Dropdown(choices=[], value=None)
    return gr.Dropdown(choices=choices, value=key), "", listing, identities


@requires("gallery:write")
def on_create(name: str, index_type: str, request: gr.Request):
    locale = locale_of(request)
    try:
        clean = _clean_name(name)
    except ValueError:
        return gr.Dropdown(), f"**⚠️ {tr(locale, 'bad_name')}**", gr.HTML(), gr.Dropdown()
    try:
        pipeline = service.get_pipeline()
        key = registry.create(gallery_service.new_gallery(pipeline, index_type or "Flat"))
        folder = _faces_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps({"name": clean}, ensure_ascii=False), encoding="utf-8")
    except Exception as error:
        return gr.Dropdown(), error_markdown(error, locale), gr.HTML(), gr.Dropdown()
    log.info("Gallery %s created from the UI", key)
    listing, identities = _refresh(key, locale)
    return gr.Dropdown(choices=gallery_choices(), value=key), f"✅ {tr(locale, 'gallery_created', name=clean)}", listing, identities


def _skip_reason(locale: Locale, english: str, analysis: Any, reject: float) -> str:
    """Why an image was not enrolled, in the request's language (the English text is service.gallery's)."""
    if locale != "zh":
        return english
    if analysis is None:
        return "无法读取该图像：请使用 JPEG、PNG、WEBP、BMP、GIF 或 TIFF 文件"
    if not analysis.faces:
        return reason_text("no_face", locale)
    face = analysis.face
    reasons = "、".join(reason_text(code, locale, short=True) for code in face.reasons) or "质量过低"
    return f"质量 {face.quality:.2f} < {reject}（{reasons}）"


@requires("gallery:write")
def on_enrol(
    key: str | None,
    label: str,
    files: list[Any] | None,
    source: str | None = None,
    request: gr.Request | None = None,
    progress: gr.Progress = gr.Progress(),
):
    """Enrol each photo of one person (quality-gated), with a progress bar and the per-image skipped reasons.

    ``source`` defaults to None so clients written before it existed keep working."""
    locale = locale_of(request)
    if not key:
        return f"**⚠️ {tr(locale, 'gallery_none')}**", gr.HTML(), gr.Dropdown(), gr.File()
    paths = [file if isinstance(file, str) else getattr(file, "name", str(file)) for file in files or []]
    try:
        clean = _clean_name(label)
    except ValueError:
        clean = ""
    if not clean or not paths:
        return f"**⚠️ {tr(locale, 'enrol_need')}**", gr.HTML(), gr.Dropdown(), gr.File()
    try:
        record = _RememberingRecorder("gallery_enrol", clean_source(source))
        pipeline = service.get_pipeline()
        reject = pipeline.config.reject_threshold
        folder = _faces_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        enrolled, skipped = 0, []
        with registry.lock:
            gallery = registry.get(key)
            for path in progress.tqdm(paths, desc=clean):
                name = Path(path).name
                record.last = None
                result = gallery_service.enrol(pipeline, gallery, [(path, clean, name)], record=record)
                if result.ids:
                    enrolled += 1
                    Image.fromarray(np.ascontiguousarray(record.last.face.aligned)).save(folder / f"{result.ids[0]}.png")
                for item in result.skipped:
                    skipped.append((name, _skip_reason(locale, item["reason"], record.last, reject)))
            registry.save(key)
    except Exception as error:
        return error_markdown(error, locale), gr.HTML(), gr.Dropdown(), gr.File()
    log.info("Enrolled %d of %d photos into gallery %s from the UI", enrolled, len(paths), key)
    text = f"✅ {tr(locale, 'enrolled', label=clean, enrolled=enrolled, total=len(paths))}"
    if skipped:
        text += f"\n\n**{tr(locale, 'skipped')}:**\n" + "".join(f"\n- {name}: {reason}" for name, reason in skipped)
    listing, identities = _refresh(key, locale)
    return text, listing, identities, None  # cleared: the next person starts from an empty list


@requires("gallery:write")
def on_remove(key: str | None, label: str | None, request: gr.Request):
    locale = locale_of(request)
    if not key:
        return f"**⚠️ {tr(locale, 'gallery_none')}**", gr.HTML(), gr.Dropdown()
    if not label:
        return f"**⚠️ {tr(locale, 'remove_need')}**", gr.HTML(), gr.Dropdown()
    try:
        with registry.lock:
            gallery = registry.get(key)
            ids = [face_id for face_id, name in gallery.labels.items() if name == label]
            if ids:
                gallery.remove(ids)
                registry.save(key)
        for face_id in ids:
            (_faces_dir(key) / f"{face_id}.png").unlink(missing_ok=True)
    except Exception as error:
        return error_markdown(error, locale), gr.HTML(), gr.Dropdown()
    log.info("Removed %d faces from gallery %s from the UI", len(ids), key)
    listing, identities = _refresh(key, locale)
    return f"✅ {tr(locale, 'removed', label=label, count=len(ids))}", listing, identities


def identified_markdown(faces: list[gallery_service.IdentifiedFace], locale: Locale) -> str:
    if not faces:
        return f"**⚠️ {tr(locale, 'no_faces_found')}**"
    rows = [f"| {tr(locale, 'face')} | {tr(locale, 'name')} | {tr(locale, 'score')} | {tr(locale, 'quality')} |", "|---|---|---|---|"]
    for number, face in enumerate(faces, start=1):
        known = face.label != gallery_service.UNKNOWN
        name = html.escape(face.label) if known else f"**{tr(locale, 'unknown')}**"
        score = face.matches[0][1] if face.matches else 0.0
        rows.append(f"| {number} | {name} | {score:.3f} | {face.quality:.2f} |")
    return "\n".join(rows)


@requires("gallery:read")
def on_identify(key: str | None, image: str | None, source: str | None = None, request: gr.Request | None = None):
    """Every face of the photo against the gallery: boxes, names and scores drawn; unknown faces marked."""
    locale = locale_of(request)
    if not key:
        return f"**⚠️ {tr(locale, 'gallery_none')}**", None
    if image is None:
        return f"**⚠️ {tr(locale, 'need_one')}**", None
    try:
        record = _RememberingRecorder("gallery_identify", clean_source(source))
        pipeline = service.get_pipeline()
        decoded = pipeline.decode(image)
        with registry.lock:  # GalleryIndex is not thread-safe: searches wait for adds and removes
            faces = gallery_service.identify(pipeline, registry.get(key), decoded, top_k=TOP_K, record=record)
        drawn = gallery_service.annotate(decoded.rgb, faces, scale=decoded.scale)
    except Exception as error:
        return error_markdown(error, locale), None
    log.info("Identified %d faces against gallery %s from the UI", len(faces), key)
    return identified_markdown(faces, locale), drawn


def build_gallery_tab() -> None:
    """The tab's components and events (called inside the app's Blocks)."""
    with gr.Tab(I18N("gallery"), elem_id="gallery-tab") as tab:
        with gr.Row():
            pick = gr.Dropdown(label=I18N("gallery_pick"), choices=[], value=None, elem_id="gallery-pick", scale=3)
            reload = gr.Button(I18N("gallery_reload"), elem_id="gallery-reload", scale=1)
        with gr.Row():
            new_name = gr.Textbox(label=I18N("gallery_name"), max_lines=1, elem_id="gallery-new-name", scale=3)
            index_type = gr.Radio(list(INDEX_TYPES), value="Flat", label=I18N("gallery_type"), scale=2)
            create = gr.Button(I18N("gallery_create"), elem_id="gallery-create", scale=1)
        source = gr.Textbox(label=I18N("source"), max_lines=1, elem_id="gallery-source")
        status = gr.Markdown(elem_id="gallery-status")
        with gr.Row():
            with gr.Column():
                label = gr.Textbox(label=I18N("enrol_label"), max_lines=1, elem_id="gallery-label")
                files = gr.File(label=I18N("enrol_files"), file_count="multiple", file_types=["image"], type="filepath", elem_id="gallery-files")
                enrol = gr.Button(I18N("enrol_button"), variant="primary", elem_id="gallery-enrol")
            with gr.Column():
                remove_pick = gr.Dropdown(label=I18N("remove_pick"), choices=[], value=None, elem_id="gallery-remove-pick")
                remove = gr.Button(I18N("remove_button"), variant="stop", elem_id="gallery-remove")
        gr.Markdown(I18N("identities"))
        listing = gr.HTML(elem_id="gallery-identities")
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label=I18N("identify_image"), type="filepath", sources=["upload", "webcam", "clipboard"], elem_id="gallery-photo", height=360)
                identify = gr.Button(I18N("identify_button"), variant="primary", elem_id="gallery-identify")
            with gr.Column():
                drawn = gr.Image(label=I18N("identified"), type="numpy", interactive=False, elem_id="gallery-drawn", height=360)
        identified = gr.Markdown(elem_id="gallery-identified")

        refreshed = [pick, status, listing, remove_pick]
        tab.select(on_reload, [pick], refreshed, api_name=False)
        reload.click(on_reload, [pick], refreshed, api_name="gallery_list")
        pick.input(on_reload, [pick], refreshed, api_name=False)
        create.click(on_create, [new_name, index_type], refreshed, api_name="gallery_create")
        enrol.click(on_enrol, [pick, label, files, source], [status, listing, remove_pick, files], api_name="gallery_enrol")
        remove.click(on_remove, [pick, remove_pick], [status, listing, remove_pick], api_name="gallery_remove")
        identify.click(on_identify, [pick, photo, source], [identified, drawn], api_name="gallery_identify")
