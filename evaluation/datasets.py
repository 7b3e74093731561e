"""Evaluation datasets: labelled pairs of image paths, loaded from the layouts people actually have.

Supported inputs (all images are read later, by the run, so loading is cheap and checks paths only):

* identity folders ``root/<identity>/*.jpg``: every genuine pair plus up to N seeded impostor pairs;
* a flat ``identities.csv`` (``file,identity``; paths relative to the CSV's folder), paired the same way;
* a pairs file: ``file_x,file_y,Decision`` CSV (``Decision`` Yes/No, as ``master.csv``) or LFW's
  ``pairs.txt`` (a header line, then ``name i j`` genuine and ``name1 i name2 j`` impostor lines).

:func:`prepare_crop` is the one place that turns a detector box into the PNG an evaluator sends to a
server, so the remote and the local crop modes see byte-identical inputs.
"""

from __future__ import annotations

import csv
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from errors import FroodError
from evaluation.metrics import pair_indices

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
YES = {"yes", "y", "1", "true", "same", "genuine", "match"}
NO = {"no", "n", "0", "false", "different", "impostor", "non_match", "nonmatch"}
DEFAULT_IMPOSTOR_RATIO = 3.0
# Above this share of all impostor pairs we enumerate them instead of rejection-sampling index pairs.
_ENUMERATE_SHARE = 0.25


@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person (True = genuine / mated pair)."""

    a: Path
    b: Path
    genuine: bool


@dataclass
class Dataset:
    """Pairs plus what a report needs to say where they came from."""

    name: str
    source: str
    pairs: list[Pair]
    identities: dict[Path, str] = field(default_factory=dict)

    @property
    def images(self) -> list[Path]:
        """Every image used by a pair, once, in first-use order (the run analyses each only once)."""
        return list(dict.fromkeys(path for pair in self.pairs for path in (pair.a, pair.b)))

    @property
    def n_genuine(self) -> int:
        return sum(pair.genuine for pair in self.pairs)

    @property
    def n_impostor(self) -> int:
        return len(self.pairs) - self.n_genuine

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "images": len(self.images),
            "pairs": len(self.pairs),
            "genuine_pairs": self.n_genuine,
            "impostor_pairs": self.n_impostor,
            "identities": len(set(self.identities.values())) if self.identities else None,
        }


# --------------------------------------------------------------------------- helpers


def _require_files(paths: list[Path], what: str) -> None:
    """Fail early, naming the first missing files, instead of half-way through a long run."""
    missing = [str(path) for path in dict.fromkeys(paths) if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FroodError(f"{len(missing)} image(s) named by {what} do not exist: {shown} (use --data-root to say where the images are)")


def _check_both_classes(pairs: list[Pair], what: str) -> None:
    genuine = sum(pair.genuine for pair in pairs)
    if genuine == 0 or genuine == len(pairs):
        kind = "genuine (same-person)" if genuine == 0 else "impostor (different-person)"
        raise FroodError(f"{what} gives {len(pairs)} pair(s) but no {kind} pair; verification needs both")


def generate_pairs(identity_of: dict[Path, str], seed: int = 0, impostor_ratio: float = DEFAULT_IMPOSTOR_RATIO, max_impostors: int | None = None) -> list[Pair]:
    """Every genuine pair and up to ``impostor_ratio`` × as many seeded impostor pairs (or ``max_impostors``).

    Images are sorted first, so the same files and seed give the same pairs on every machine. Impostor pairs
    are drawn without replacement: by enumeration when we need a large share of them, otherwise by
    rejection-sampling index pairs (LFW-sized folders have ~10^8 impostor pairs, too many to list).
    """
    paths = sorted(identity_of)
    by_identity: dict[str, list[int]] = defaultdict(list)
    for index, path in enumerate(paths):
        by_identity[identity_of[path]].append(index)
    genuine = [(i, j) for members in by_identity.values() for i, j in itertools.combinations(members, 2)]
    genuine.sort()
    n = len(paths)
    total_impostor = n * (n - 1) // 2 - len(genuine)
    wanted = int(round(impostor_ratio * len(genuine))) if max_impostors is None else int(max_impostors)
    wanted = max(0, min(wanted, total_impostor))
    rng = np.random.default_rng(seed)
    labels = np.array([identity_of[path] for path in paths])
    if wanted >= _ENUMERATE_SHARE * total_impostor:
        first, second, same = pair_indices(labels)  # the pair enumerator calibration and the held-out report use
        candidates = list(zip(first[~same].tolist(), second[~same].tolist()))
        chosen = sorted(candidates[k] for k in rng.choice(len(candidates), size=wanted, replace=False)) if wanted else []
    else:
        picked: set[tuple[int, int]] = set()
        while len(picked) < wanted:
            draws = rng.integers(0, n, size=(2 * (wanted - len(picked)) + 16, 2))
            for i, j in draws:
                if i != j and labels[i] != labels[j]:
                    picked.add((int(min(i, j)), int(max(i, j))))
                    if len(picked) == wanted:
                        break
        chosen = sorted(picked)
    return [Pair(paths[i], paths[j], True) for i, j in genuine] + [Pair(paths[i], paths[j], False) for i, j in chosen]


# --------------------------------------------------------------------------- loaders


def load_identity_folders(root: Path | str, seed: int = 0, impostor_ratio: float = DEFAULT_IMPOSTOR_RATIO, max_impostors: int | None = None) -> Dataset:
    """``root/<identity>/*.jpg`` (any image suffix): the folder name is the identity."""
    root = Path(root)
    if not root.is_dir():
        raise FroodError(f"--folders {root} is not a folder (expected root/<identity>/*.jpg)")
    identity_of = {
        path: folder.name
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    }
    if not identity_of:
        raise FroodError(f"no images found in {root}/<identity>/ (expected one sub-folder of images per person)")
    pairs = generate_pairs(identity_of, seed, impostor_ratio, max_impostors)
    _check_both_classes(pairs, f"{root}")
    return Dataset(root.name, f"identity folders {root} (seed {seed}, impostor ratio {impostor_ratio})", pairs, identity_of)


def read_identities_csv(path: Path | str, data_root: Path | str | None = None) -> dict[Path, str]:
    """``file,identity`` rows → {image path: identity}; paths relative to ``data_root`` or the CSV's folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "identities.csv"
    if not path.is_file():
        raise FroodError(f"{path} does not exist (expected an identities CSV with columns file,identity)")
    base = Path(data_root) if data_root else path.parent
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "identity"} <= {name.strip() for name in reader.fieldnames}:
            raise FroodError(f"{path} needs a header with columns file,identity; found {reader.fieldnames}")
        identity_of = {base / row["file"].strip(): row["identity"].strip() for row in reader if row.get("file", "").strip()}
    if not identity_of:
        raise FroodError(f"{path} lists no images")
    _require_files(list(identity_of), str(path))
    return identity_of


def load_identities_csv(
    path: Path | str, data_root: Path | str | None = None, seed: int = 0, impostor_ratio: float = DEFAULT_IMPOSTOR_RATIO, max_impostors: int | None = None
) -> Dataset:
    """A flat folder described by ``identities.csv`` (a folder holding one works too), paired like identity folders."""
    path = Path(path)
    csv_path = path / "identities.csv" if path.is_dir() else path
    identity_of = read_identities_csv(csv_path, data_root)
    pairs = generate_pairs(identity_of, seed, impostor_ratio, max_impostors)
    _check_both_classes(pairs, str(csv_path))
    name = csv_path.parent.name or csv_path.stem
    return Dataset(name, f"identities {csv_path} (seed {seed}, impostor ratio {impostor_ratio})", pairs, identity_of)


def _decision(value: str, where: str) -> bool:
    text = value.strip().lower()
    if text in YES:
        return True
    if text in NO:
        return False
    raise FroodError(f"{where}: Decision {value!r} is neither Yes nor No")


def load_pairs_csv(path: Path | str, data_root: Path | str | None = None) -> Dataset:
    """``file_x,file_y,Decision`` (Yes = same person); image paths relative to ``data_root`` or the CSV's folder."""
    path = Path(path)
    base = Path(data_root) if data_root else path.parent
    pairs = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip() for name in reader.fieldnames or []}
        if not {"file_x", "file_y", "Decision"} <= columns:
            raise FroodError(f"{path} needs a header with columns file_x,file_y,Decision; found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            if not (row.get("file_x") or "").strip():
                continue
            pairs.append(Pair(base / row["file_x"].strip(), base / row["file_y"].strip(), _decision(row["Decision"] or "", f"{path}:{line}")))
    if not pairs:
        raise FroodError(f"{path} lists no pairs")
    _require_files([p for pair in pairs for p in (pair.a, pair.b)], str(path))
    _check_both_classes(pairs, str(path))
    return Dataset(path.parent.name or path.stem, f"pairs {path}", pairs)


def lfw_image(root: Path, name: str, number: str) -> Path:
    """LFW naming: ``root/<name>/<name>_<4-digit number>.jpg``."""
    return root / name / f"{name}_{int(number):04d}.jpg"


def load_lfw_pairs(path: Path | str, data_root: Path | str | None = None) -> Dataset:
    """LFW ``pairs.txt``: a header (``folds pairs`` or a count), then ``name i j`` or ``name1 i name2 j`` lines."""
    path = Path(path)
    root = Path(data_root) if data_root else path.parent
    lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise FroodError(f"{path} is empty")
    pairs = []
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) == 3:
            name, i, j = fields
            pairs.append(Pair(lfw_image(root, name, i), lfw_image(root, name, j), True))
        elif len(fields) == 4:
            name_a, i, name_b, j = fields
            pairs.append(Pair(lfw_image(root, name_a, i), lfw_image(root, name_b, j), False))
        else:
            raise FroodError(f"{path}:{number}: expected 'name i j' or 'name1 i name2 j', got {' '.join(fields)!r}")
    if not pairs:
        raise FroodError(f"{path} lists no pairs after its header line")
    _require_files([p for pair in pairs for p in (pair.a, pair.b)], str(path))
    _check_both_classes(pairs, str(path))
    return Dataset(root.name or path.stem, f"LFW pairs {path} (images under {root})", pairs)


def load_pairs(path: Path | str, data_root: Path | str | None = None) -> Dataset:
    """A pairs file of either format, told apart by its first line (a CSV header names ``file_x``)."""
    path = Path(path)
    if not path.is_file():
        raise FroodError(f"--pairs {path} does not exist")
    with open(path, encoding="utf-8-sig") as handle:
        first = handle.readline()
    if "file_x" in first or "," in first:
        return load_pairs_csv(path, data_root)
    return load_lfw_pairs(path, data_root)


# --------------------------------------------------------------------------- crops sent to a server


def crop_box(bbox: list[float] | np.ndarray, shape: tuple[int, ...], expansion: float = 0.2) -> tuple[int, int, int, int]:
    """Integer (x1, y1, x2, y2) of the box grown by ``expansion`` of its size (half on each side), clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    grow_x, grow_y = (x2 - x1) * expansion / 2.0, (y2 - y1) * expansion / 2.0
    height, width = shape[:2]
    left, top = max(0, int(round(x1 - grow_x))), max(0, int(round(y1 - grow_y)))
    right, bottom = min(width, int(round(x2 + grow_x))), min(height, int(round(y2 + grow_y)))
    if right - left < 2 or bottom - top < 2:
        raise FroodError(f"face box {[round(v, 1) for v in (x1, y1, x2, y2)]} lies outside the {width}×{height} image")
    return left, top, right, bottom


def prepare_crop(rgb: np.ndarray, bbox: list[float] | np.ndarray, expansion: float = 0.2, max_side: int = 256) -> bytes:
    """PNG bytes of the detector box expanded by ``expansion`` (0.2 = 10% each side), longest side ≤ ``max_side``.

    This is how evaluation protocols tell participants to prepare inputs; PNG keeps the crop lossless so a
    remote server and a local run receive exactly the same pixels. ``bbox`` is in ``rgb``'s pixels.
    """
    left, top, right, bottom = crop_box(bbox, rgb.shape, expansion)
    crop = rgb[top:bottom, left:right]
    longest = max(crop.shape[:2])
    if longest > max_side:
        factor = max_side / longest
        size = (max(1, int(round(crop.shape[1] * factor))), max(1, int(round(crop.shape[0] * factor))))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    if not ok:
        raise FroodError("could not encode the face crop as PNG")
    return encoded.tobytes()
