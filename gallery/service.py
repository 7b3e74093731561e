"""Enrolment and 1:N identification over a :class:`GalleryIndex`, shared by the CLI and the HTTP API.

Enrolment is quality-gated: an image with no face, or whose largest face scores below the reject
threshold, is not enrolled; the result lists each skipped image with its reason. Identification
reports, for every face, the top-k ``(label, score)``; a face whose best score is below the model's
match threshold is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gallery.index import GalleryIndex
from recognition.decode import ImageInput
from recognition.errors import FroodError
from recognition.pipeline import FacePipeline

UNKNOWN = "unknown"


@dataclass
class EnrolResult:
    ids: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"image", "label", "reason"}

    def as_dict(self) -> dict:
        return {"enrolled": len(self.ids), "id_map": dict(zip(self.ids, self.labels)), "skipped": self.skipped}


@dataclass
class IdentifiedFace:
    bbox: list[float]
    det_score: float
    quality: float
    reasons: list[str]
    matches: list[tuple[str, float]]  # top-k (label, score), best first
    label: str  # best label, or "unknown"

    def as_dict(self) -> dict:
        return {
            "bbox": [round(v, 1) for v in self.bbox],
            "det_score": round(self.det_score, 4),
            "quality_score": round(self.quality, 4),
            "reasons": self.reasons,
            "label": self.label,
            "matches": [{"label": label, "score": round(score, 4)} for label, score in self.matches],
        }


def new_gallery(pipeline: FacePipeline, index_type: str = "Flat", metric: str = "IP") -> GalleryIndex:
    return GalleryIndex.create(pipeline.embedder.dim, pipeline.model, index_type, metric)


def load_gallery(pipeline: FacePipeline, directory: Path) -> GalleryIndex:
    """Load a gallery, refusing one built by another model or dimension."""
    return GalleryIndex.load(directory, expected_model=pipeline.model, expected_dim=pipeline.embedder.dim)


def enrol(pipeline: FacePipeline, gallery: GalleryIndex, items: list[tuple[ImageInput, str, str]]) -> EnrolResult:
    """``items``: (image, label, name for the report). Adds the largest face of each trusted image."""
    result = EnrolResult()
    vectors, labels = [], []
    reject = pipeline.settings.reject_threshold
    analyses = pipeline.analyze_many([image for image, _, _ in items], names=[name for _, _, name in items])  # batched engine
    for (_, label, name), analysis in zip(items, analyses):
        if isinstance(analysis, FroodError):
            result.skipped.append({"image": name, "label": label, "reason": str(analysis)})
            continue
        if not analysis.faces:
            result.skipped.append({"image": name, "label": label, "reason": "no face found"})
            continue
        face = analysis.face
        if face.quality < reject:
            why = ", ".join(face.reasons) or "low quality"
            result.skipped.append({"image": name, "label": label, "reason": f"quality {face.quality:.2f} < {reject} ({why})"})
            continue
        vectors.append(face.feature)
        labels.append(label)
    if vectors:
        result.ids = gallery.add(np.stack(vectors), labels)
        result.labels = labels
    return result


def identify(pipeline: FacePipeline, gallery: GalleryIndex, image: ImageInput, top_k: int = 5, name: str = "") -> list[IdentifiedFace]:
    """Every face of the image against the gallery, largest face first."""
    analysis = pipeline.analyze(image, name=name)
    if not analysis.faces:
        return []
    hits = gallery.search(np.stack([face.feature for face in analysis.faces]), k=top_k)
    faces = []
    for face, row in zip(analysis.faces, hits):
        matches = [(label, score) for _, label, score in row]
        best = matches[0] if matches else None
        label = best[0] if best and best[1] >= pipeline.match_threshold else UNKNOWN
        faces.append(IdentifiedFace(face.bbox, face.det_score, float(face.quality), face.reasons, matches, label))
    return faces


def annotate(rgb: np.ndarray, faces: list[IdentifiedFace], scale: float = 1.0) -> np.ndarray:
    """Boxes with label and score drawn on a copy (``scale`` maps original-pixel boxes onto ``rgb``)."""
    canvas = rgb.copy()
    thickness = max(2, int(round(max(canvas.shape[:2]) / 400)))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in face.bbox)
        known = face.label != UNKNOWN
        colour = (46, 160, 67) if known else (220, 53, 69)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        score = face.matches[0][1] if face.matches else 0.0
        text = f"{face.label} {score:.2f}"
        font_scale = max(0.5, thickness / 3)
        (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y1 - height - 8, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 6, top + height + 8), colour, -1)
        cv2.putText(canvas, text, (x1 + 3, top + height + 3), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness)
    return canvas


def read_label_file(root: Path, label_file: Path | None = None) -> list[tuple[Path, str]]:
    """PaddleX layout: ``root/images/<identity>/*.jpg`` plus a label file of ``relative/path.jpg label`` lines.

    Without a label file, every image under ``root/images/<identity>/`` (or ``root/<identity>/``) is
    labelled by its folder name.
    """
    root = Path(root)
    candidates = [label_file] if label_file else [root / "gallery.txt", root / "label.txt"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            pairs = []
            for line in Path(candidate).read_text(encoding="utf-8").splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                path, _, label = line.strip().rpartition(" ")
                if not path:
                    raise FroodError(f"{candidate}: line {line!r} is not 'relative/path.jpg label'")
                pairs.append((root / path, label))
            return pairs
    images = root / "images" if (root / "images").is_dir() else root
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
    return sorted((path, path.parent.name) for path in images.glob("*/*") if path.suffix.lower() in suffixes)
