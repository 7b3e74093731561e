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
import logging
import shutil
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from errors import ApiError, FroodError
from service import faces as service
from service import gallery as gallery_service
from service.access import requires
from service.gallery import INDEX_TYPES, registry
from settings import get_settings
from ui import facegrid
from ui.common import clean_source, colon, done, error_markdown, escape_markdown, quality_text, upload_path, warning
from ui.drawing import Box, draw_boxes
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
    """The gallery's name (service.gallery's metadata store: the same names as the HTTP API's /galleries)."""
    try:
        return registry.record(key).name
    except Exception:
        return None


def gallery_choices() -> list[tuple[str, str]]:
    """(name, index key) of every gallery, by name (names are unique: a second gallery of a name is refused)."""
    return sorted(((record.name, record.key) for record in registry.records()), key=lambda choice: choice[0].casefold())


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
    clean = (name or "").strip()
    try:  # service.gallery.create_gallery: what POST /galleries does (409 for a name in use)
        key = gallery_service.create_gallery(clean, index_type or "Flat")["indexKey"]
        _faces_dir(key).mkdir(parents=True, exist_ok=True)
    except ApiError as error:
        return gr.Dropdown(), _api_error(error, locale, clean), gr.HTML(), gr.Dropdown()
    except Exception as error:
        return gr.Dropdown(), error_markdown(error, locale), gr.HTML(), gr.Dropdown()
    log.info("Gallery %s created from the UI", key)
    listing, identities = _refresh(key, locale)
    return gr.Dropdown(choices=gallery_choices(), value=key), done(tr(locale, "gallery_created", name=clean)), listing, identities


def _api_error(error: ApiError, locale: Locale, name: str = "") -> str:
    """A service error about galleries in the page's language."""
    if error.status == 409 and "already exists" in str(error):
        return warning(tr(locale, "gallery_exists", name=name))
    if error.status == 400:
        return warning(tr(locale, "bad_gallery_name"))
    return error_markdown(error, locale)


@requires("gallery:write")
def on_rename(key: str | None, new_name: str, request: gr.Request):
    """Rename the chosen gallery (service.gallery.rename_gallery, as PATCH /galleries/{name})."""
    locale = locale_of(request)
    if not key:
        return gr.Dropdown(), warning(tr(locale, "gallery_none")), gr.Textbox()
    clean = (new_name or "").strip()
    try:
        gallery_service.rename_gallery(registry.record(key).name, clean)
    except ApiError as error:
        return gr.Dropdown(), _api_error(error, locale, clean), gr.Textbox()
    except Exception as error:
        return gr.Dropdown(), error_markdown(error, locale), gr.Textbox()
    log.info("Gallery %s renamed from the UI", key)
    return gr.Dropdown(choices=gallery_choices(), value=key), done(tr(locale, "gallery_renamed", name=clean)), ""


@requires("gallery:write")
def on_delete_ask(key: str | None, request: gr.Request):
    """The first click on "Delete gallery": asks to confirm."""
    locale = locale_of(request)
    if not key:
        return warning(tr(locale, "gallery_none")), *_hidden_confirmation()
    with registry.lock:
        count = len(registry.get(key).labels)
    question = warning(tr(locale, "confirm_delete", gallery=_name_of(key) or key, count=count))
    return "", gr.Column(visible=True), question, {"kind": "gallery", "key": key, "count": count}


def _skip_reason(locale: Locale, english: str, analysis: Any, reject: float) -> str:
    """Why an image was not enrolled, in words in the request's language (never the raw reason codes)."""
    if analysis is None:
        return english if locale != "zh" else "无法读取该图像：请使用 JPEG、PNG、WEBP、BMP、GIF 或 TIFF 文件"
    if not analysis.faces:
        return reason_text("no_face", locale)
    face = analysis.face
    separator = "、" if locale == "zh" else ", "
    reasons = separator.join(reason_text(code, locale, short=True) for code in face.reasons)
    if locale == "zh":
        return f"质量 {face.quality:.2f} 低于拒绝阈值 {reject:.2f}（{reasons or '质量过低'}）"
    return f"quality {face.quality:.2f} below the reject threshold {reject:.2f}" + (f" ({reasons})" if reasons else "")


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
        return warning(tr(locale, "gallery_none")), gr.HTML(), gr.Dropdown(), gr.File(), gr.Textbox(), gr.Dropdown()
    paths = [file if isinstance(file, str) else getattr(file, "name", str(file)) for file in files or []]
    try:
        clean = _clean_name(label)
    except ValueError:
        clean = ""
    if not clean or not paths:
        problem = "bad_name" if (label or "").strip() and not clean else "enrol_need"
        return warning(tr(locale, problem)), gr.HTML(), gr.Dropdown(), gr.File(), gr.Textbox(), gr.Dropdown()
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
        return error_markdown(error, locale), gr.HTML(), gr.Dropdown(), gr.File(), gr.Textbox(), gr.Dropdown()
    log.info("Enrolled %d of %d photos into gallery %s from the UI", enrolled, len(paths), key)
    c = colon(locale)
    text = done(tr(locale, "enrolled", label=clean, enrolled=enrolled, total=len(paths)))
    if skipped:
        text += f"\n\n**{tr(locale, 'skipped')}**{c}\n" + "".join(f"\n- {escape_markdown(name)}{c}{escape_markdown(reason)}" for name, reason in skipped)
    listing, identities = _refresh(key, locale)
    # cleared: the next person starts from an empty name and an empty list
    return text, listing, identities, None, "", gr.Dropdown(choices=photo_choices(key), value=None)


def photo_choices(key: str | None) -> list[tuple[str, str]]:
    """(identity · #id, id) of every enrolled photo, for removing one."""
    if not key:
        return []
    with registry.lock:
        labels = dict(registry.get(key).labels)
    return [(f"{label} · #{face_id}", str(face_id)) for face_id, label in sorted(labels.items(), key=lambda item: (item[1], item[0]))]


def _hidden_confirmation() -> tuple[gr.Column, str, None]:
    return gr.Column(visible=False), "", None


@requires("gallery:write")
def on_remove_ask(key: str | None, label: str | None, request: gr.Request):
    """The first click on "Remove identity": nothing is removed yet, the operator is asked to confirm."""
    locale = locale_of(request)
    if not key:
        return warning(tr(locale, "gallery_none")), *_hidden_confirmation()
    if not label:
        return warning(tr(locale, "remove_need")), *_hidden_confirmation()
    with registry.lock:
        count = sum(1 for name in registry.get(key).labels.values() if name == label)
    question = warning(tr(locale, "confirm_remove", label=label, count=count, gallery=_name_of(key) or key))
    return "", gr.Column(visible=True), question, {"kind": "identity", "key": key, "label": label}


@requires("gallery:write")
def on_photo_ask(key: str | None, face_id: str | None, request: gr.Request):
    """The first click on "Remove photo": asks to confirm the removal of that one photo."""
    locale = locale_of(request)
    if not key:
        return warning(tr(locale, "gallery_none")), *_hidden_confirmation()
    if not face_id:
        return warning(tr(locale, "photo_need")), *_hidden_confirmation()
    with registry.lock:
        label = registry.get(key).labels.get(int(face_id))
    if label is None:
        return warning(tr(locale, "photo_need")), *_hidden_confirmation()
    question = warning(tr(locale, "confirm_photo", label=label, face_id=face_id, gallery=_name_of(key) or key))
    return "", gr.Column(visible=True), question, {"kind": "photo", "key": key, "label": label, "face_id": int(face_id)}


def _forget_crops(key: str, ids: list[int]) -> None:
    """The crops this tab kept of removed faces."""
    for face_id in ids:
        (_faces_dir(key) / f"{face_id}.png").unlink(missing_ok=True)


@requires("gallery:write")
def on_confirm(pending: dict | None, request: gr.Request):
    """The second click ("Yes, remove"): carries out what was asked, then hides the question."""
    locale = locale_of(request)
    if not pending:
        return warning(tr(locale, "cancelled")), gr.HTML(), gr.Dropdown(), gr.Dropdown(), *_hidden_confirmation()
    key = pending["key"]
    try:  # the HTTP API's own functions (DELETE /galleries/{name}/photos/{id}, .../identities/{label}, /galleries/{name})
        name = registry.record(key).name
        if pending["kind"] == "gallery":
            gallery_service.delete_gallery(name)
            shutil.rmtree(_faces_dir(key), ignore_errors=True)
            log.info("Gallery %s deleted from the UI", key)
            text = done(tr(locale, "gallery_deleted", name=name, count=pending.get("count", 0)))
            empty = gr.Dropdown(choices=[], value=None)
            return text, facegrid.message(tr(locale, "gallery_none")), empty, empty, *_hidden_confirmation()
        if pending["kind"] == "photo":
            ids = gallery_service.remove_photo(name, int(pending["face_id"])).get("removed") or [int(pending["face_id"])]
            text = done(tr(locale, "photo_removed", label=pending["label"], face_id=pending["face_id"]))
        else:
            ids = gallery_service.remove_identity(name, pending["label"]).get("removed") or []
            text = done(tr(locale, "removed", label=pending["label"], count=len(ids)))
        _forget_crops(key, ids)
        log.info("Removed %d faces from gallery %s from the UI", len(ids), key)
        listing, identities = _refresh(key, locale)
    except Exception as error:
        return error_markdown(error, locale), gr.HTML(), gr.Dropdown(), gr.Dropdown(), *_hidden_confirmation()
    return text, listing, identities, gr.Dropdown(choices=photo_choices(key), value=None), *_hidden_confirmation()


@requires("gallery:write")
def on_cancel(request: gr.Request):
    return warning(tr(locale_of(request), "cancelled")), *_hidden_confirmation()


def identified_markdown(faces: list[gallery_service.IdentifiedFace], locale: Locale) -> str:
    """One row per face, numbered as on the photo; the score is the best match's similarity (never below 0)."""
    if not faces:
        return warning(tr(locale, "no_faces_found"))
    rows = [f"| {tr(locale, 'face_no')} | {tr(locale, 'name')} | {tr(locale, 'score')} | {tr(locale, 'quality')} |", "|---|---|---|---|"]
    for number, face in enumerate(faces, start=1):
        known = face.label != gallery_service.UNKNOWN
        name = escape_markdown(face.label) if known else f"**{tr(locale, 'unknown')}**"
        rows.append(f"| {number} | {name} | {_score(face):.3f} | {quality_text(face.quality, locale)} |")
    return "\n".join(rows)


def _score(face: gallery_service.IdentifiedFace) -> float:
    """The best match's cosine similarity; a negative one (nothing alike) is shown as 0."""
    return max(0.0, face.matches[0][1]) if face.matches else 0.0


def annotated(rgb: np.ndarray, faces: list[gallery_service.IdentifiedFace], scale: float, locale: Locale) -> np.ndarray:
    """The photo with each face's number (its table row), name (or "unknown" in the page's language) and score."""
    boxes = []
    for number, face in enumerate(faces, start=1):
        known = face.label != gallery_service.UNKNOWN
        name = face.label if known else tr(locale, "unknown")
        boxes.append(Box(tuple(face.bbox), f"{number} {name} {_score(face):.2f}", "known" if known else "unknown"))
    return draw_boxes(rgb, boxes, scale)


@requires("gallery:read")
def on_identify(key: str | None, image: str | dict | None, source: str | None = None, request: gr.Request | None = None):
    """Every face of the photo against the gallery: numbered boxes, names and scores drawn; unknown faces marked."""
    locale = locale_of(request)
    image = upload_path(image)
    if not key:
        return warning(tr(locale, "gallery_none")), None
    if image is None:
        return warning(tr(locale, "need_one")), None
    try:
        record = _RememberingRecorder("gallery_identify", clean_source(source))
        pipeline = service.get_pipeline()
        decoded = pipeline.decode(image)
        with registry.lock:  # GalleryIndex is not thread-safe: searches wait for adds and removes
            faces = gallery_service.identify(pipeline, registry.get(key), decoded, top_k=TOP_K, record=record)
        drawn = annotated(decoded.rgb, faces, decoded.scale, locale)
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
            index_type = gr.Radio(list(INDEX_TYPES), value="Flat", label=I18N("gallery_type"), info=I18N("gallery_type_info"), scale=2)
            create = gr.Button(I18N("gallery_create"), elem_id="gallery-create", scale=1)
        with gr.Row():
            rename_to = gr.Textbox(label=I18N("gallery_rename_to"), max_lines=1, elem_id="gallery-rename-to", scale=3)
            rename = gr.Button(I18N("gallery_rename"), elem_id="gallery-rename", scale=1)
            delete = gr.Button(I18N("gallery_delete"), variant="stop", elem_id="gallery-delete", scale=1)
        source = gr.Textbox(label=I18N("source"), max_lines=1, elem_id="gallery-source")
        status = gr.Markdown(elem_id="gallery-status")
        # what the question is about (a gr.State would open Gradio's heartbeat stream and keep the page busy)
        pending = gr.JSON(visible=False, elem_id="gallery-pending")
        with gr.Column(visible=False, elem_id="gallery-confirm") as confirm_box:
            question = gr.Markdown(elem_id="gallery-confirm-question")
            with gr.Row():
                yes = gr.Button(I18N("confirm_yes"), variant="stop", elem_id="gallery-confirm-yes")
                no = gr.Button(I18N("confirm_no"), elem_id="gallery-confirm-no")
        with gr.Row():
            with gr.Column():
                label = gr.Textbox(label=I18N("enrol_label"), max_lines=1, elem_id="gallery-label")
                files = gr.File(label=I18N("enrol_files"), file_count="multiple", file_types=["image"], type="filepath", elem_id="gallery-files")
                enrol = gr.Button(I18N("enrol_button"), variant="primary", elem_id="gallery-enrol")
            with gr.Column():
                remove_pick = gr.Dropdown(label=I18N("remove_pick"), choices=[], value=None, elem_id="gallery-remove-pick")
                remove = gr.Button(I18N("remove_button"), variant="stop", elem_id="gallery-remove")
                photo_pick = gr.Dropdown(label=I18N("photo_pick"), choices=[], value=None, elem_id="gallery-photo-pick")
                photo_remove = gr.Button(I18N("photo_remove"), variant="stop", elem_id="gallery-photo-remove")
        gr.Markdown(I18N("identities"))
        listing = gr.HTML(elem_id="gallery-identities")
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label=I18N("identify_image"), type="filepath", sources=["upload", "webcam", "clipboard"], elem_id="gallery-photo", height=360)
                identify = gr.Button(I18N("identify_button"), variant="primary", elem_id="gallery-identify")
            with gr.Column():
                drawn = gr.Image(label=I18N("identified"), type="numpy", interactive=False, elem_id="gallery-drawn", height=360, format="png")
        identified = gr.Markdown(elem_id="gallery-identified")

        refreshed = [pick, status, listing, remove_pick]
        for event, api_name in ((tab.select, False), (reload.click, "gallery_list"), (pick.input, False)):
            event(on_reload, [pick], refreshed, api_name=api_name, show_progress_on=[status]).then(
                on_photos, [pick], [photo_pick], api_name=False, show_progress="hidden"
            )
        create.click(on_create, [new_name, index_type], refreshed, api_name="gallery_create", show_progress_on=[status]).then(
            on_photos, [pick], [photo_pick], api_name=False, show_progress="hidden"
        )
        enrolled = [status, listing, remove_pick, files, label, photo_pick]
        enrol.click(on_enrol, [pick, label, files, source], enrolled, api_name="gallery_enrol", show_progress_on=[status])
        asked = [status, confirm_box, question, pending]
        remove.click(on_remove_ask, [pick, remove_pick], asked, api_name="gallery_remove", show_progress="hidden")
        photo_remove.click(on_photo_ask, [pick, photo_pick], asked, api_name="gallery_remove_photo", show_progress="hidden")
        confirmed = [status, listing, remove_pick, photo_pick, confirm_box, question, pending]
        yes.click(on_confirm, [pending], confirmed, api_name=False, show_progress_on=[status]).then(
            on_gallery_list, [pick], [pick], api_name=False, show_progress="hidden"
        )
        rename.click(on_rename, [pick, rename_to], [pick, status, rename_to], api_name="gallery_rename", show_progress_on=[status])
        delete.click(on_delete_ask, [pick], asked, api_name="gallery_delete", show_progress="hidden")
        no.click(on_cancel, None, [status, confirm_box, question, pending], api_name=False, show_progress="hidden")
        # preprocess=False: a file that is not an image gets our readable error, not Gradio's bare "Error"
        identify.click(on_identify, [pick, photo, source], [identified, drawn], api_name="gallery_identify", preprocess=False)


@requires("gallery:read")
def on_gallery_list(key: str | None, request: gr.Request):
    """The gallery choices again (after a deletion the chosen one is gone: the first left is chosen)."""
    choices = gallery_choices()
    keys = [value for _, value in choices]
    return gr.Dropdown(choices=choices, value=key if key in keys else (keys[0] if keys else None))


@requires("gallery:read")
def on_photos(key: str | None, request: gr.Request):
    """The enrolled photos of the gallery, for "Remove photo"."""
    try:
        return gr.Dropdown(choices=photo_choices(key), value=None)
    except Exception:
        log.exception("Could not list the gallery's photos")
        return gr.Dropdown(choices=[], value=None)
