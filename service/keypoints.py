"""The one keypoint engine of this process, built from the settings on first use (thread-safe), and
the place where the two pipelines meet: which person each face belongs to (``person_boxes_for_faces``)."""

from __future__ import annotations

import base64
import io
import logging
import math
import threading
import time

import numpy as np
from PIL import Image

from engine.decode import DecodedImage, ImageInput
from engine.keypoints.draw import draw_skeletons
from engine.keypoints.engine import COCO_KEYPOINTS, KeypointEngine, KeypointResult, Person
from service import faces
from service.access import KEYPOINT_MODEL
from settings import get_settings
from storage.stats import Event

__all__ = ["COCO_KEYPOINTS", "KeypointEngine", "KeypointResult", "Person", "detect", "get_engine"]

log = logging.getLogger("frood.keypoints")
_lock = threading.Lock()
_engine: KeypointEngine | None = None


def get_engine() -> KeypointEngine:
    global _engine
    with _lock:
        if _engine is None:
            settings = get_settings()
            _engine = KeypointEngine(
                settings.models_dir,
                device=settings.device,
                input_size=settings.keypoints_input_size,
                refine=settings.keypoints_refine,
                tiles=settings.keypoints_tiles,
                detector=settings.keypoints_detector,
                pose_nms=settings.keypoints_pose_nms,
                second_look=settings.keypoints_second_look,
                trunk_batch=settings.keypoints_trunk_batch,
                max_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_image_pixels,
                max_width=settings.max_image_width,
            )
            log.info(
                "Keypoint models loaded on %s (input %d, refine %s, person detector %s, pose NMS %s, second look %s)",
                _engine.device, _engine.input_size, _engine.refine, _engine.detector is not None,
                _engine.pose_nms, _engine.second_look,
            )
        return _engine


def detect(image: ImageInput, threshold: float | None = None, source: str = "ui", source_id: str | None = None, name: str = "") -> KeypointResult:
    """People and their keypoints in one image, with one stats row (operation ``keypoints``, unscored: the
    Monitor counts the traffic and its latency, but no face quality)."""
    settings = get_settings()
    threshold = settings.keypoints_det_threshold if threshold is None else float(threshold)
    start = time.perf_counter()
    result = get_engine().detect(image, det_threshold=threshold, name=name or source)
    latency = (time.perf_counter() - start) * 1000
    store = faces.store()
    if store is not None:
        try:
            store.record(Event(source=source_id or source, operation="keypoints", model=KEYPOINT_MODEL, latency_ms=latency))
        except Exception:  # the caller's answer must not fail because the stats store did
            log.exception("Could not record a stats event")
    return result


def drawn_image(result: KeypointResult) -> Image.Image:
    """The decoded image with every person's box and skeleton drawn."""
    decoded = result.decoded
    if decoded is None:
        raise ValueError("the result carries no image to draw on")
    settings = get_settings()
    return Image.fromarray(draw_skeletons(decoded.rgb, result.persons, scale=decoded.scale, kpt_threshold=settings.keypoints_kpt_threshold))


def drawn_jpeg_base64(result: KeypointResult) -> str:
    buffer = io.BytesIO()
    drawn_image(result).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


HEAD_KEYPOINTS = (0, 1, 2, 3, 4)  # nose, eyes, ears (COCO order)


def match_faces_to_persons(face_boxes: list[list[float]], persons: list[Person], kpt_threshold: float) -> list[Person | None]:
    """Each face box → the person it belongs to, or ``None``.

    A candidate person's box must contain the face box's centre. Among candidates the nearest head wins:
    the distance from the face centre to the mean of the person's confident head keypoints (nose, eyes,
    ears at or above ``kpt_threshold``), in face widths; a person without a confident head keypoint
    comes after those with one. Assignment is one-to-one, nearest pairs first, so two faces inside one
    crowded box do not both claim the same person.
    """
    pairs = []
    for f, (x1, y1, x2, y2) in enumerate(face_boxes):
        centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
        width = max(x2 - x1, 1.0)
        for p, person in enumerate(persons):
            px1, py1, px2, py2 = person.bbox
            if not (px1 <= centre[0] <= px2 and py1 <= centre[1] <= py2):
                continue
            head = person.keypoints[list(HEAD_KEYPOINTS)]
            confident = head[head[:, 2] >= kpt_threshold, :2]
            distance = float(np.linalg.norm(confident.mean(axis=0) - centre)) / width if len(confident) else math.inf
            pairs.append((distance, -person.det_score, f, p))
    pairs.sort()
    matched: list[Person | None] = [None] * len(face_boxes)
    taken: set[int] = set()
    for _, _, f, p in pairs:
        if matched[f] is None and p not in taken:
            matched[f] = persons[p]
            taken.add(p)
    return matched


def person_boxes_for_faces(image: ImageInput | DecodedImage, face_boxes: list[list[float]]) -> list[tuple[float, float, float, float] | None]:
    """Run the keypoint engine on the image the faces came from; each face's person box (original
    pixels, as the face boxes) or ``None``. Used by ``/extract`` when FACE_PERSON_BOX (or its flag) is on."""
    if not face_boxes:
        return []
    settings = get_settings()
    result = get_engine().detect(image, det_threshold=settings.keypoints_det_threshold, name="face-person")
    matched = match_faces_to_persons(face_boxes, result.persons, settings.keypoints_kpt_threshold)
    linked = sum(person is not None for person in matched)
    log.info("Face-person link: %d of %d face(s) inside a person's box (%d person(s))", linked, len(face_boxes), len(result.persons))
    return [person.bbox if person is not None else None for person in matched]
