"""The ISO/IEC 29794-5 component report of photos (``frood quality``, enrolment checks; issue 26).

Analyses images through the face pipeline, then measures the components of every face
(``engine.quality.components``). The report needs two things the scoring path measures only where they
can matter: the eye state (the pipeline measures it only below trust) and fr_landmark's 68 points (chin
and lips for HeadSize, the margins above/below and MouthClosed). Both are added here, per face, with the
pipeline's own helper networks; neither changes the score or the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from engine.decode import DecodedImage, ImageInput
from engine.face.pipeline import AnalysisResult, FacePipeline, FaceResult
from engine.quality.components import Components, component_reasons, landmarks_68, measure_components
from errors import FroodError


@dataclass
class FaceComponents:
    """One face's component report beside the pipeline's own result for it."""

    face: FaceResult
    components: Components

    @property
    def derived_reasons(self) -> list[str]:
        return component_reasons(self.components)


@dataclass
class ImageComponents:
    name: str
    image_size: tuple[int, int]  # (width, height) of the original
    faces: list[FaceComponents]
    error: FroodError | None = None


def complete_eye_state(pipeline: FacePipeline, decoded: DecodedImage, faces: Sequence[FaceResult]) -> None:
    """Measures the eye state of faces the pipeline left unmeasured (trusted scores), in place."""
    missing = [face for face in faces if face.signals.eyes_open is None]
    if not missing:
        return
    detections = [
        SimpleNamespace(bbox=np.asarray(face.bbox) * decoded.scale, landmarks=np.asarray(face.landmarks) * decoded.scale) for face in missing
    ]
    pipeline.signals.add_eye_signals([(decoded.rgb, det, face.signals) for det, face in zip(detections, missing)])


def components_of(pipeline: FacePipeline, decoded: DecodedImage, result: AnalysisResult) -> list[FaceComponents]:
    """The component report of every face of an analysed image (main face first, as in ``result``)."""
    faces = result.faces
    if not faces:
        return []
    complete_eye_state(pipeline, decoded, faces)
    boxes = [np.asarray(face.bbox) * decoded.scale for face in faces]
    dense = [points / decoded.scale for points in landmarks_68(pipeline.signals, decoded.rgb, boxes)]
    reports = measure_components(decoded.rgb, faces, decoded.scale, dense)
    return [FaceComponents(face, report) for face, report in zip(faces, reports)]


def analyze_components(images: Sequence[ImageInput], pipeline: FacePipeline, names: Sequence[str] | None = None) -> list[ImageComponents]:
    """Decode and analyse each image, then report every face's components (one entry per input, in order;
    an image that cannot be read gets its typed error instead of faces)."""
    names = list(names) if names is not None else [str(image) if isinstance(image, (str, Path)) else "" for image in images]
    reports = []
    for image, name in zip(images, names):
        try:
            decoded = image if isinstance(image, DecodedImage) else pipeline.decode(image, name)
            result = pipeline.analyze(decoded, name)
        except FroodError as error:
            reports.append(ImageComponents(name, (0, 0), [], error))
            continue
        reports.append(ImageComponents(name, tuple(result.image_size), components_of(pipeline, decoded, result)))
    return reports


def components_for(pipeline: FacePipeline, image: ImageInput | DecodedImage, result: AnalysisResult) -> list[FaceComponents]:
    """The component report of an image already analysed (the Extract tab, ``/extract?components=true``): the
    image is decoded again (cheap beside the models), the faces are not analysed again."""
    decoded = image if isinstance(image, DecodedImage) else pipeline.decode(image)
    return components_of(pipeline, decoded, result)
