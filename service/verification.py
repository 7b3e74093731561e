"""1:1 verification for integrators (``POST /verify``, ``frood verify``): two images, an image and an
embedding, or two embeddings -> similarity, the decision of the same table as the UI's Compare, both sides.

An embedding is the caller's own feature of the served model (same dimension); it carries no quality, so
the caller vouches for it and only the image sides can refuse the comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from engine.face.pipeline import decide
from engine.quality.components import Components
from errors import ApiError
from service import faces
from settings import get_settings

Side = bytes | list[float]


@dataclass
class VerifySide:
    kind: str  # "image" or "embedding"
    feature: np.ndarray | None  # the unit feature compared (None: no face in the image)
    quality: float | None = None
    reasons: list[str] = field(default_factory=list)
    bbox: list[float] | None = None
    faces_found: int | None = None
    components: Components | None = None  # the face's ISO/IEC 29794-5 report, measured only when asked (not free)


@dataclass
class Verification:
    similarity: float | None
    threshold: float
    decision: str
    model: str
    first: VerifySide
    second: VerifySide
    latency_ms: float

    @property
    def verified(self) -> bool | None:
        """True or False only where both sides can be trusted; None when the decision is to review or retake."""
        return {"match": True, "non_match": False}.get(self.decision)


def check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    if not isinstance(threshold, int | float) or not np.isfinite(threshold) or not -1.0 <= float(threshold) <= 1.0:
        raise ApiError(422, f"threshold must be a cosine similarity in [-1, 1], got {str(threshold)[:20]}")
    return float(threshold)


def _embedding_side(values: list[float], dim: int, which: str) -> VerifySide:
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or len(vector) != dim:
        raise ApiError(422, f"{which} must be a list of {dim} numbers (the served model's feature), got {len(vector) if vector.ndim == 1 else vector.shape}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(vector).all() or norm == 0.0:
        raise ApiError(422, f"{which} must be finite and not all zero")
    return VerifySide("embedding", (vector / norm).astype(np.float32))


def _image_side(data: bytes, name: str, model: str, source_id: str | None, components: bool = False) -> VerifySide:
    """``components``: also measure the compared (main) face's components, over every face of the image, as
    ``/extract`` does, so SingleFacePresent sees the others."""
    result = faces.extract(data, name=name, source="api", model=model, source_id=source_id).value
    if not result.faces:
        return VerifySide("image", None, 0.0, ["no_face"], None, 0)
    face = result.face
    report = faces.components_for(data, result)[0].components if components else None
    return VerifySide("image", face.feature, face.quality, list(face.reasons), [float(v) for v in face.bbox], len(result.faces), report)


def verify(
    first: Side, second: Side, threshold: float | None = None, model: str | None = None, source_id: str | None = None, components: bool = False
) -> Verification:
    """Each side is image bytes or an embedding; ``threshold`` (cosine, [-1, 1]) replaces the model's match threshold.
    ``components``: each image side also carries its face's component report (off by default: it costs a pass)."""
    settings = get_settings()
    start = time.perf_counter()
    threshold = check_threshold(threshold)
    pipeline = faces.get_pipeline(model)
    dim = int(pipeline.embedder.dim)
    sides = [
        _embedding_side(value, dim, f"embedding{number}")
        if isinstance(value, list)
        else _image_side(value, f"img{number}", pipeline.model, source_id, components)
        for number, value in ((1, first), (2, second))
    ]
    a, b = sides
    used = pipeline.match_threshold if threshold is None else threshold
    trusted = 1.0  # an embedding side: the caller vouches for it
    quality_a = trusted if a.kind == "embedding" else (a.quality or 0.0)
    quality_b = trusted if b.kind == "embedding" else (b.quality or 0.0)
    similarity = float(np.dot(a.feature, b.feature)) if a.feature is not None and b.feature is not None else None
    decision = decide(similarity if similarity is not None else -1.0, quality_a, quality_b, used, settings.reject_threshold, settings.trust_threshold)
    return Verification(similarity, used, decision, pipeline.model, a, b, (time.perf_counter() - start) * 1000)
