"""The right face is compared: main face by area and centrality, tight crops verify like their source,
and a face cut by the image border says so (and is not called "eyes closed")."""

from __future__ import annotations

import numpy as np
import pytest

from engine.face.choose import main_face_order, main_face_scores, outside_share
from evaluation.datasets import prepare_crop
from evaluation.degrade import DEGRADATIONS
from schemas import analysis_json


def test_centred_face_beats_a_larger_face_at_the_edge():
    image = (480, 640)
    centred = [270, 190, 370, 290]  # 100×100 at the centre
    edge = [0, 0, 120, 120]  # 120×120 in the corner
    assert main_face_order([edge, centred], image) == [1, 0]
    scores = main_face_scores([edge, centred], image)
    assert scores[1] == pytest.approx(100 * 100)


def test_outside_share_of_boxes():
    assert outside_share([10, 10, 50, 50], (100, 100)) == 0.0
    assert outside_share([-20, 0, 20, 40], (100, 100)) == pytest.approx(0.5)


def test_multi_face_photo_lists_all_faces_main_face_first(pipeline, faces_dir):
    result = pipeline.analyze(faces_dir / "selfie-many-people.jpg")
    assert len(result.faces) >= 3
    boxes = [face.bbox for face in result.faces]
    height, width = result.image_size[1], result.image_size[0]
    scores = main_face_scores(boxes, (height, width))
    assert list(scores) == sorted(scores, reverse=True)
    assert analysis_json(result)["faces_found"] == len(result.faces)


def test_tight_crop_of_every_photo_verifies_like_its_source(pipeline, faces_dir, clean_results):
    """A detector box grown by 20 % and sent as PNG (how evaluators prepare inputs). All 62 faces/ photos: this
    compares the pretrained recognizer's features of two views, and no fitted parameter (threshold, weight,
    calibration) enters it, so the fit/held-out split does not apply."""
    low = []
    for file, result in clean_results.items():
        decoded = pipeline.decode(faces_dir / file)
        crop = pipeline.analyze(prepare_crop(decoded.rgb, np.asarray(result.face.bbox) * decoded.scale))
        cosine = float(crop.face.feature @ result.face.feature) if crop.faces else -1.0
        if cosine < 0.9:
            low.append((file, round(cosine, 3)))
    assert not low, f"tight crops below cosine 0.9: {low}"


def test_face_cut_by_the_border_says_so_and_not_eyes_closed(pipeline, faces_dir, held_out_files, identities):
    """One photo of each held-out faces/ identity (cut_by_border is also a calibration degradation), cut on each side."""
    truncated = []
    first_of_each = {identities[file]: file for file in reversed(held_out_files)}
    assert len(first_of_each) == 4
    for file in sorted(first_of_each.values()):
        decoded = pipeline.decode(faces_dir / file)
        box = np.asarray(pipeline.analyze(decoded).face.bbox) * decoded.scale
        for seed in (0, 1):
            result = pipeline.analyze(DEGRADATIONS["cut_by_border"](decoded.rgb, box, seed))
            if result.faces:
                truncated.append(result.face)
    assert len(truncated) >= 6
    flagged = [face for face in truncated if "face_truncated" in face.reasons]
    assert len(flagged) >= 0.75 * len(truncated), [(f.signals.truncation, f.reasons) for f in truncated]
    assert not any("eyes_closed" in face.reasons for face in truncated)


def test_whole_faces_are_not_called_truncated(held_out_clean_results):
    """Held-out faces/ photos (whole faces). Reasons are only written below trust, so the truncation signal
    itself is checked, not only the reasons."""
    from engine.quality.geometry import is_truncated

    assert len(held_out_clean_results) >= 15
    flagged = [file for file, result in held_out_clean_results.items()
               if is_truncated(result.face.signals.truncation) or "face_truncated" in result.face.reasons]
    assert not flagged, [(file, held_out_clean_results[file].face.signals.truncation) for file in flagged]
