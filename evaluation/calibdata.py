"""Labelled calibration data: which photos, which split, and their analysed faces (cached).

Sets (each optional; a user's own folder with ``identities.csv`` is the ``generic`` kind):
- ``wild``/``faces`` (``identities.csv``): clean in-the-wild photos; also the source of synthetic degradations;
- ``spoof`` (``live/<subject>/``, ``print/<subject>/``): webcam frames of people and of printed photos of them;
- ``dark`` (Yale B ``<id>/<id>_P00A<az>E<el>.png``): one pose under many light directions;
- ``masked`` (``masked/<id>/``, ``unmasked/<id>/``): the same people with and without face masks.

Every set is split by identity/subject with a fixed seed (:func:`split_identities`): a third held out
for tests and reported numbers, the rest to fit. Analysing a photo costs ~0.1–0.2 s, so each record
(all faces: boxes, features, signals) is cached by path and variant; a refit then takes seconds.
"""

from __future__ import annotations

import csv
import logging
import pickle
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.quality.signals import QualitySignals, liveness_context, lower_face_signals

log = logging.getLogger("frood.calibrate")
SET_NAMES = ("wild", "faces", "spoof", "dark", "masked")
DEFAULT_SEED = 8
DEFAULT_HOLDOUT = 1 / 3
YALE_NAME = re.compile(r"_P00A([+-]\d+)E([+-]\d+)")


@dataclass
class Photo:
    """One labelled image. ``kind``: clean, live, print, lit, shadow, dim, masked, unmasked."""

    set: str
    path: Path
    identity: str
    kind: str = "clean"
    reference: bool = True  # a clean view of the person that others are verified against


@dataclass
class FaceRecord:
    bbox: list[float]
    feature: np.ndarray
    signals: QualitySignals
    # The aligned face (main face only): signals computed from it alone can be added to cached records
    # without analysing the photos again (see :func:`refresh_crop_signals`).
    aligned: np.ndarray | None = None
    # The recognizer's last-map statistics of the main face (``EmbeddingBatch.map_stats``), what the certainty
    # head is fitted on; records cached before they existed get them from ``aligned`` (:func:`add_map_stats`).
    map_stats: np.ndarray | None = None


@dataclass
class ImageRecord:
    photo: Photo
    variant: str
    image_size: tuple[int, int]  # (height, width) in original pixels
    faces: list[FaceRecord] = field(default_factory=list)  # main face first

    @property
    def face(self) -> FaceRecord | None:
        return self.faces[0] if self.faces else None


def yale_angles(name: str) -> tuple[int, int] | None:
    match = YALE_NAME.search(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_deep_shadow(azimuth: int, elevation: int) -> bool:
    """Light far from the camera axis leaves most of the face in shadow (the data's README rule)."""
    return abs(azimuth) >= 85 or elevation >= 45


def load_identities_set(folder: Path, set_name: str) -> list[Photo]:
    with open(folder / "identities.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [Photo(set_name, folder / row["file"], f"{set_name}:{row['identity']}") for row in rows]


def load_spoof(folder: Path, per_subject: int | None = None, seed: int = DEFAULT_SEED) -> list[Photo]:
    """Webcam frames of live faces and printed photos; ``per_subject``: a seeded sample of each
    subject's frames of each kind (consecutive frames are near duplicates)."""
    rng = np.random.default_rng([seed, 2])
    photos = []
    for kind in ("live", "print"):
        for subject in sorted(p for p in (folder / kind).iterdir() if p.is_dir()):
            paths = sorted(subject.glob("*.jpg"))
            if per_subject is not None and len(paths) > per_subject:
                paths = [paths[i] for i in sorted(rng.choice(len(paths), per_subject, replace=False))]
            photos += [Photo("spoof", path, f"spoof:{subject.name}", kind, reference=kind == "live") for path in paths]
    return photos


def load_dark(folder: Path, per_identity: int | None = 30, seed: int = DEFAULT_SEED) -> list[Photo]:
    """Yale B faces: the frontal lit one (A+000E+00) always, plus a seeded sample of the other lights."""
    rng = np.random.default_rng(seed)
    photos = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = []
        for path in sorted(person.glob("*.png")):
            angles = yale_angles(path.name)
            if angles is not None and "Ambient" not in path.name:
                files.append((path, angles))
        frontal = [item for item in files if item[1] == (0, 0)]
        others = [item for item in files if item[1] != (0, 0)]
        if per_identity is not None and len(others) > per_identity - len(frontal):
            chosen = rng.choice(len(others), per_identity - len(frontal), replace=False)
            others = [others[i] for i in sorted(chosen)]
        for path, (azimuth, elevation) in frontal + others:
            if (azimuth, elevation) == (0, 0):
                kind = "lit"
            elif is_deep_shadow(azimuth, elevation):
                kind = "shadow"
            else:
                kind = "dim"
            near_frontal = abs(azimuth) <= 20 and abs(elevation) <= 20
            photos.append(Photo("dark", path, f"dark:{person.name}", kind, reference=near_frontal))
    return photos


def load_masked(folder: Path) -> list[Photo]:
    photos = []
    for kind in ("masked", "unmasked"):
        for path in sorted((folder / kind).glob("*/*")):
            if path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                photos.append(Photo("masked", path, f"masked:{path.parent.name}", kind, reference=kind == "unmasked"))
    return photos


def discover(
    root: Path | None = None, data: Path | None = None, dark_per_identity: int | None = 30, seed: int = DEFAULT_SEED, spoof_per_subject: int | None = None
) -> list[Photo]:
    """All photos under ``root`` (a folder holding any of wild/ faces/ spoof/ dark/ masked/) and ``data``
    (one more folder with ``identities.csv``)."""
    photos: list[Photo] = []
    if root is not None:
        root = Path(root)
        for name in ("wild", "faces"):
            if (root / name / "identities.csv").is_file():
                photos += load_identities_set(root / name, name)
        if (root / "spoof" / "live").is_dir():
            photos += load_spoof(root / "spoof", spoof_per_subject, seed)
        if (root / "dark").is_dir():
            photos += load_dark(root / "dark", dark_per_identity, seed)
        if (root / "masked" / "masked").is_dir():
            photos += load_masked(root / "masked")
    if data is not None:
        photos += load_identities_set(Path(data), "generic")
    return photos


def split_identities(identities: list[str], set_name: str, seed: int = DEFAULT_SEED, holdout: float = DEFAULT_HOLDOUT) -> set[str]:
    """The held-out identities of one set: a seeded permutation's first ``holdout`` share (at least one)."""
    unique = sorted(set(identities))
    rng = np.random.default_rng([seed, zlib.crc32(set_name.encode())])
    order = rng.permutation(len(unique))
    count = max(1, round(holdout * len(unique))) if len(unique) > 1 else 0
    return {unique[index] for index in order[:count]}


def held_out(photos: list[Photo], seed: int = DEFAULT_SEED, holdout: float = DEFAULT_HOLDOUT) -> set[str]:
    """Held-out identities over all sets (identity names carry their set as a prefix)."""
    result: set[str] = set()
    for set_name in sorted({photo.set for photo in photos}):
        result |= split_identities([p.identity for p in photos if p.set == set_name], set_name, seed, holdout)
    return result


class RecordCache:
    """Pickled analysis records keyed by (path, variant), saved every ``every`` new entries."""

    def __init__(self, path: Path | None, every: int = 100):
        self.path = Path(path) if path else None
        self.every = every
        self.records: dict[tuple[str, str], ImageRecord] = {}
        self._unsaved = 0
        if self.path and self.path.is_file():
            with open(self.path, "rb") as handle:
                self.records = pickle.load(handle)
            log.info("Calibration cache: %d records from %s", len(self.records), self.path)

    @staticmethod
    def key(photo: Photo, variant: str) -> tuple[str, str]:
        return str(Path(photo.path).resolve()), variant

    def get(self, photo: Photo, variant: str) -> ImageRecord | None:
        record = self.records.get(self.key(photo, variant))
        if record is not None:
            record.photo = photo
            for face in record.faces:  # records cached before these signals existed
                face.signals.liveness_context = liveness_context(face.bbox, record.image_size)
                if face.aligned is not None:
                    for name, value in lower_face_signals(face.aligned).items():
                        setattr(face.signals, name, value)
        return record

    def put(self, record: ImageRecord) -> None:
        self.records[self.key(record.photo, record.variant)] = record
        self._unsaved += 1
        if self._unsaved >= self.every:
            self.save()

    def changed(self, count: int) -> None:
        """``count`` cached records were updated in place (e.g. by :func:`add_map_stats`): save them on :meth:`save`."""
        self._unsaved += count

    def save(self) -> None:
        if not self.path or not self._unsaved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".part")
        with open(partial, "wb") as handle:
            pickle.dump(self.records, handle, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(self.path)
        self._unsaved = 0


def record_from(photo: Photo, variant: str, result) -> ImageRecord:
    """An :class:`ImageRecord` from an ``AnalysisResult`` (faces already main-face first)."""
    width, height = result.image_size
    faces = [
        FaceRecord(
            [float(v) for v in face.bbox],
            face.feature.astype(np.float32),
            face.signals,
            face.aligned.copy() if rank == 0 else None,
            face.map_stats if rank == 0 else None,
        )
        for rank, face in enumerate(result.faces)
    ]
    return ImageRecord(photo, variant, (height, width), faces)


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def degradation_plan(photos: list[Photo], count: int, per_photo: int, seed: int) -> list[tuple[Photo, str]]:
    """A seeded sample of (clean in-the-wild photo, degradation): ``count`` photos × ``per_photo`` kinds,
    the kinds cycling so each is used about equally often."""
    from evaluation.degrade import DEGRADATIONS

    sources = [photo for photo in photos if photo.set in ("wild", "generic")]
    if not sources or count <= 0:
        return []
    rng = np.random.default_rng([seed, 1])
    chosen = rng.choice(len(sources), min(count, len(sources)), replace=False)
    names = list(DEGRADATIONS)
    plan = []
    for position, index in enumerate(sorted(chosen)):
        for step in range(per_photo):
            plan.append((sources[index], names[(position * per_photo + step) % len(names)]))
    return plan


def in_thorough_share(photo: Photo, variant: str, share: float) -> bool:
    """Whether this photo (variant) is also analysed in thorough mode: a fixed, seeded-by-name share.

    Thorough mode (8 perturbed copies through the recognizer) costs several times the default analysis,
    and only the thorough model's ``instability`` term needs it, so a share of the photos is enough."""
    return zlib.crc32(f"{Path(photo.path).name}|{variant}".encode()) % 10_000 < share * 10_000


def collect_records(
    pipeline,
    photos: list[Photo],
    cache: RecordCache,
    plan: list[tuple[Photo, str]],
    progress: bool = True,
    batch_size: int = 16,
    thorough_share: float = 0.1,
) -> list[ImageRecord]:
    """Analyse every photo and every planned degradation (a ``thorough_share`` of them in thorough mode,
    with feature stability); cached.

    Uncached photos go through the batched engine (``analyze_stream``; per image its results equal
    ``analyze``'s), ``batch_size`` at a time, decoding the next batch while the models run.
    """
    from tqdm import tqdm

    from errors import FroodError
    from evaluation.degrade import DEGRADATIONS

    clean: dict[str, ImageRecord] = {}
    missing = [photo for photo in photos if cache.get(photo, "clean") is None]
    with tqdm(total=len(missing), desc="photos", disable=not progress) as bar:
        # Set by set (the order only decides which records a partial cache holds first), each in two streams.
        order = {name: rank for rank, name in enumerate(("masked", "wild", "spoof", "dark", "faces"))}
        set_names = sorted({photo.set for photo in missing}, key=lambda name: order.get(name, len(order)))
        for set_name, thorough in [(name, flag) for name in set_names for flag in (True, False)]:
            part = [photo for photo in missing if photo.set == set_name and in_thorough_share(photo, "clean", thorough_share) == thorough]
            offset = 0
            for results in pipeline.analyze_stream([photo.path for photo in part], [str(photo.path) for photo in part], batch_size, thorough=thorough):
                for photo, result in zip(part[offset : offset + len(results)], results):
                    if isinstance(result, FroodError):
                        log.warning("Skipped %s: %s", photo.path, result)
                    else:
                        cache.put(record_from(photo, "clean", result))
                offset += len(results)
                bar.update(len(results))
    records: list[ImageRecord] = []
    for photo in photos:
        record = cache.get(photo, "clean")
        if record is not None:
            records.append(record)
            clean[str(photo.path)] = record

    pending = [(photo, variant) for photo, variant in plan if cache.get(photo, variant) is None]
    pending = [(photo, variant) for photo, variant in pending if (source := clean.get(str(photo.path))) is not None and source.face is not None]
    with tqdm(total=len(pending), desc="degraded copies", disable=not progress) as bar:
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            images, boxes = [], []
            for photo, variant in chunk:
                decoded = pipeline.decode(photo.path)
                box = np.asarray(clean[str(photo.path)].face.bbox) * decoded.scale
                images.append(DEGRADATIONS[variant](decoded.rgb, box, zlib.crc32(f"{photo.path.name}{variant}".encode())))
                boxes.append((box / decoded.scale, images[-1].shape[1] / decoded.rgb.shape[1]))
            results: list = [None] * len(chunk)
            for thorough in (True, False):
                positions = [i for i, (photo, variant) in enumerate(chunk) if in_thorough_share(photo, variant, thorough_share) == thorough]
                for position, result in zip(positions, pipeline.analyze_batch([images[i] for i in positions], thorough=thorough) if positions else []):
                    results[position] = result
            for (photo, variant), (target, factor), result in zip(chunk, boxes, results):
                if isinstance(result, FroodError):
                    log.warning("Skipped %s (%s): %s", photo.path, variant, result)
                    continue
                record = record_from(photo, variant, result)
                if variant != "cut_by_border" and len(record.faces) > 1:
                    # The face the degradation was built around, not whichever the main-face rule picks.
                    record.faces.sort(key=lambda face: -_iou(np.asarray(face.bbox) / factor, target))
                    for rank, face in enumerate(record.faces):
                        if rank > 0:
                            face.aligned = face.map_stats = None
                    main = next(face for face in result.faces if list(map(float, face.bbox)) == record.faces[0].bbox)
                    record.faces[0].aligned = main.aligned.copy()
                    record.faces[0].map_stats = main.map_stats
                cache.put(record)
            bar.update(len(chunk))
    for photo, variant in plan:
        record = cache.get(photo, variant)
        if record is not None:
            records.append(record)
    cache.save()
    return records


def add_map_stats(embedder, records: list[ImageRecord], cache: RecordCache | None = None, batch_size: int = 64) -> int:
    """Gives every main face that lacks them its last-map statistics, from its cached aligned crop (the same
    module and pass the pipeline's hook reads, so the values equal the pipeline's); returns how many were added.

    Only for an embedder that exposes a map (``has_map_stats``); records cached before the hook existed need it."""
    if not getattr(embedder, "has_map_stats", False):
        return 0
    missing = [r.face for r in records if r.face is not None and r.face.aligned is not None and getattr(r.face, "map_stats", None) is None]
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        stats = embedder.embed(np.stack([face.aligned for face in chunk])).map_stats
        for face, row in zip(chunk, stats):
            face.map_stats = row
    if cache is not None and missing:
        cache.changed(len(missing))
        cache.save()
    return len(missing)
