"""Run a TensorFlow.js graph model (``model.json`` + ``.bin`` shards) in PyTorch, op by op.

Why an interpreter instead of TF.js → ONNX → onnx2torch: the only TF.js → ONNX path (tf2onnx / the
``tensorflowjs`` converter) needs full TensorFlow, which would add gigabytes and many minutes to a clean
install. The MoveNet graphs use ~45 plain TensorFlow ops; each has a documented meaning that maps to one
or two torch calls, so the graph runs here exactly as written (same nodes, same constants, same order).

``convert_graph`` turns ``model.json`` + weights into a plain dict (node list + float32 tensors; float16
quantised weights are expanded the way TF.js does on load) that ``torch.save`` caches once at set-up;
``TfjsGraph`` executes that dict. Tensors stay in TensorFlow's NHWC layout between ops.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual alias)

_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
}
_TF_DTYPES = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int32, "DT_BOOL": torch.bool, "DT_INT64": torch.int64}


class UnsupportedGraphError(RuntimeError):
    """The graph uses an op (or an attribute value) this interpreter does not implement."""


def _attr_value(value: dict) -> Any:
    """A TF ``AttrValue`` in TF.js JSON form → a plain Python value."""
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "s" in items:
            return [base64.b64decode(v).decode() for v in items["s"]]
        if "f" in items:
            return [float(v) for v in items["f"]]
        return []
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "type" in value:
        return value["type"]
    if "shape" in value:
        return [int(d.get("size", -1)) for d in value["shape"].get("dim", [])]
    return None


def _read_weights(manifest: list[dict], folder: Path) -> dict[str, np.ndarray]:
    """Decode the weight shards the way TF.js ``io.decodeWeights`` does (float16 / uint8 dequantisation)."""
    tensors: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = spec["shape"]
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant is None:
                dtype = np.dtype(_DTYPES[spec["dtype"]])
                raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
                offset += count * dtype.itemsize
                array = raw.copy()
            elif quant["dtype"] == "float16":
                raw = np.frombuffer(data, dtype=np.float16, count=count, offset=offset)
                offset += count * 2
                array = raw.astype(np.float32)
            elif quant["dtype"] in ("uint8", "uint16"):
                qtype = np.uint8 if quant["dtype"] == "uint8" else np.uint16
                raw = np.frombuffer(data, dtype=qtype, count=count, offset=offset)
                offset += count * np.dtype(qtype).itemsize
                array = (raw.astype(np.float32) * quant["scale"] + quant["min"]).astype(_DTYPES[spec["dtype"]])
            else:
                raise UnsupportedGraphError(f"weight quantisation {quant['dtype']} is not supported")
            tensors[spec["name"]] = array.reshape(shape)
        if offset != len(data):
            raise UnsupportedGraphError(f"weight shards hold {len(data)} bytes but the manifest describes {offset}")
    return tensors


def convert_graph(model_json: Path) -> dict:
    """``model.json`` (+ its shards beside it) → ``{"nodes", "tensors", "inputs", "outputs"}`` for ``torch.save``."""
    model_json = Path(model_json)
    spec = json.loads(model_json.read_text())
    if spec.get("format") != "graph-model":
        raise UnsupportedGraphError(f"{model_json.name} is not a TF.js graph model")
    weights = _read_weights(spec["weightsManifest"], model_json.parent)
    nodes: list[dict] = []
    tensors: dict[str, torch.Tensor] = {}
    inputs: list[str] = []
    for node in spec["modelTopology"]["node"]:
        name, op = node["name"], node["op"]
        if op == "Const":
            if name not in weights:
                raise UnsupportedGraphError(f"constant {name} has no weights in the manifest")
            tensors[name] = torch.from_numpy(np.array(weights[name], copy=True))  # keeps 0-d scalars 0-d
            continue
        if op == "Placeholder":
            inputs.append(name)
        attrs = {key: _attr_value(value) for key, value in node.get("attr", {}).items()}
        nodes.append({"name": name, "op": op, "inputs": list(node.get("input", [])), "attrs": attrs})
    outputs = [value["name"] for value in spec.get("signature", {}).get("outputs", {}).values()]
    unknown = sorted({node["op"] for node in nodes} - set(_OPS))
    if unknown:
        raise UnsupportedGraphError(f"{model_json.name} uses ops this interpreter does not implement: {unknown}")
    return {"nodes": _topological(nodes, set(tensors)), "tensors": tensors, "inputs": inputs, "outputs": outputs}


def _source(reference: str) -> tuple[str, int]:
    """``name:1`` → ``("name", 1)``; control inputs (``^name``) are dropped by the caller."""
    name, _, index = reference.partition(":")
    return name, int(index) if index else 0


def _topological(nodes: list[dict], constants: set[str]) -> list[dict]:
    by_name = {node["name"]: node for node in nodes}
    ordered: list[dict] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if name in constants or state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise UnsupportedGraphError(f"the graph has a cycle through {name}")
        state[name] = 1
        for reference in by_name[name]["inputs"]:
            if not reference.startswith("^"):
                visit(_source(reference)[0])
        state[name] = 2
        ordered.append(by_name[name])

    for node in nodes:
        visit(node["name"])
    return ordered


# ---- ops ------------------------------------------------------------------------------------------

def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME: output ceil(size / stride), extra padding at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def torch_conv_weight(kernel: torch.Tensor, depthwise: bool) -> torch.Tensor:
    """A TF kernel in torch's layout: [kh, kw, in, out] → [out, in, kh, kw]; depthwise [kh, kw, in, multiplier]
    → [in*multiplier, 1, kh, kw]. ``TfjsGraph`` does this once per constant kernel, not at every call."""
    if depthwise:
        channels, multiplier = kernel.shape[2], kernel.shape[3]
        return kernel.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, kernel.shape[0], kernel.shape[1]).contiguous()
    return kernel.permute(3, 2, 0, 1).contiguous()


def _conv(x: torch.Tensor, kernel: torch.Tensor, attrs: dict, depthwise: bool, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A TF convolution on an NHWC tensor. ``kernel`` is in TF's layout, or already in torch's when the graph
    prepared it (``attrs["torch_weight"]``). Symmetric SAME padding goes to the convolution itself and the
    bias into its epilogue: an explicit pad and a separate add were a third of the interpreter's CPU time."""
    if attrs.get("data_format", "NHWC") != "NHWC":
        raise UnsupportedGraphError("only NHWC convolutions are supported")
    strides, dilations = attrs["strides"][1:3], attrs.get("dilations", [1, 1, 1, 1])[1:3]
    weight = kernel if attrs.get("torch_weight") else torch_conv_weight(kernel, depthwise)
    kh, kw = weight.shape[2], weight.shape[3]
    padding = (0, 0)
    if attrs["padding"] == "SAME":
        batch, height, width, channels = x.shape
        top, bottom = _same_padding(height, kh, strides[0], dilations[0])
        left, right = _same_padding(width, kw, strides[1], dilations[1])
        if top == bottom and left == right:
            padding = (top, left)
        else:  # TF puts the odd pixel at the end, torch pads both sides alike: pad here, in NHWC (zeros + one
            # copy: 4× faster than F.pad on the channels-last view)
            padded = x.new_zeros(batch, height + top + bottom, width + left + right, channels)
            padded[:, top:top + height, left:left + width] = x
            x = padded
    elif attrs["padding"] != "VALID":
        raise UnsupportedGraphError(f"padding {attrs['padding']} is not supported")
    x = x.permute(0, 3, 1, 2)
    groups = x.shape[1] if depthwise else 1
    y = F.conv2d(x, weight, bias, stride=strides, padding=padding, dilation=dilations, groups=groups)
    return y.permute(0, 2, 3, 1)


def _fused(y: torch.Tensor, args: list[torch.Tensor], attrs: dict, bias_done: bool = False) -> torch.Tensor:
    ops = attrs.get("fused_ops", [])
    rest = list(args)
    for position, op in enumerate(ops):
        if op == "BiasAdd":
            bias = rest.pop(0)
            if not (bias_done and position == 0):
                y = y + bias
        elif op == "Relu":
            y = torch.relu_(y)  # in place: y is this op's own fresh output
        elif op == "Relu6":
            y = torch.clamp_(y, 0.0, 6.0)
        elif op == "LeakyRelu":
            y = F.leaky_relu(y, attrs.get("leakyrelu_alpha", 0.2))
        elif op == "Prelu":
            alpha = rest.pop(0)
            y = torch.where(y >= 0, y, y * alpha)
        else:
            raise UnsupportedGraphError(f"fused op {op} is not supported")
    return y


def _fused_convolution(args: list, attrs: dict, depthwise: bool) -> torch.Tensor:
    """Conv + BiasAdd (+ activation): a leading bias of one value per output channel rides in the convolution."""
    ops = attrs.get("fused_ops", [])
    bias = args[2] if ops and ops[0] == "BiasAdd" and len(args) > 2 and args[2].dim() == 1 else None
    y = _conv(args[0], args[1], attrs, depthwise, bias)
    return _fused(y, args[2:], attrs, bias_done=bias is not None)


def _fused_conv(args: list, attrs: dict) -> torch.Tensor:
    return _fused_convolution(args, attrs, depthwise=False)


def _fused_depthwise(args: list, attrs: dict) -> torch.Tensor:
    return _fused_convolution(args, attrs, depthwise=True)


def _ints(tensor: torch.Tensor) -> list[int]:
    return [int(v) for v in tensor.reshape(-1).tolist()]


def _strided_slice(args: list, attrs: dict) -> torch.Tensor:
    x, begin, end, strides = args[0], _ints(args[1]), _ints(args[2]), _ints(args[3])
    index: list[Any] = []
    for axis in range(len(begin)):
        bit = 1 << axis
        if attrs.get("ellipsis_mask", 0) & bit:
            index.append(Ellipsis)
        elif attrs.get("new_axis_mask", 0) & bit:
            index.append(None)
        elif attrs.get("shrink_axis_mask", 0) & bit:
            index.append(begin[axis])
        else:
            if strides[axis] <= 0:
                raise UnsupportedGraphError("StridedSlice with a negative stride is not supported")
            start = None if attrs.get("begin_mask", 0) & bit else begin[axis]
            stop = None if attrs.get("end_mask", 0) & bit else end[axis]
            index.append(slice(start, stop, strides[axis]))
    return x[tuple(index)]


def _resize_bilinear(args: list, attrs: dict) -> torch.Tensor:
    x, size = args[0], _ints(args[1])
    align = attrs.get("align_corners", False)
    half_pixel = attrs.get("half_pixel_centers", False)
    x_nchw = x.permute(0, 3, 1, 2)
    if align or half_pixel:
        y = F.interpolate(x_nchw, size=size, mode="bilinear", align_corners=align)
    else:  # legacy TF: source = dest * in/out, no half-pixel shift
        y = _legacy_bilinear(x_nchw, size)
    return y.permute(0, 2, 3, 1)


def _legacy_bilinear(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    height, width = x.shape[2], x.shape[3]

    def axis(out: int, inp: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        source = torch.arange(out, device=device, dtype=torch.float32) * (inp / out)
        low = source.floor().long().clamp(max=inp - 1)
        high = (low + 1).clamp(max=inp - 1)
        return low, high, source - low.float()

    y0, y1, fy = axis(size[0], height, x.device)
    x0, x1, fx = axis(size[1], width, x.device)
    rows = x[:, :, y0] * (1 - fy[:, None]) + x[:, :, y1] * fy[:, None]  # separable: each row gathered once
    return rows[:, :, :, x0] * (1 - fx) + rows[:, :, :, x1] * fx


def _max_pool(args: list, attrs: dict) -> torch.Tensor:
    x = args[0].permute(0, 3, 1, 2)
    kernel, strides = attrs["ksize"][1:3], attrs["strides"][1:3]
    if attrs["padding"] == "SAME":
        top, bottom = _same_padding(x.shape[2], kernel[0], strides[0], 1)
        left, right = _same_padding(x.shape[3], kernel[1], strides[1], 1)
        x = F.pad(x, (left, right, top, bottom), value=-math.inf)
    return F.max_pool2d(x, kernel, strides).permute(0, 2, 3, 1)


def _axes(tensor: torch.Tensor, rank: int) -> list[int]:
    return [axis % rank if rank else 0 for axis in _ints(tensor)]


def _reduce(function):
    def run(args: list, attrs: dict) -> torch.Tensor:
        x = args[0]
        axes = _axes(args[1], x.dim())
        keep = attrs.get("keep_dims", False)
        if not axes:
            return x
        if function == "max":
            y = x
            for axis in sorted(axes, reverse=True):
                y = y.amax(dim=axis, keepdim=keep)
            return y
        if function == "sum":
            return x.sum(dim=axes, keepdim=keep)
        return x.mean(dim=axes, keepdim=keep)

    return run


def _cast(args: list, attrs: dict) -> torch.Tensor:
    target = _TF_DTYPES[attrs["DstT"]]
    x = args[0]
    if target == torch.bool:
        return x != 0
    return x.to(target)


def _floor_div(args: list, attrs: dict) -> torch.Tensor:
    return torch.div(args[0], args[1], rounding_mode="floor")


def _floor_mod(args: list, attrs: dict) -> torch.Tensor:
    return torch.remainder(args[0], args[1])


def _pack(args: list, attrs: dict) -> torch.Tensor:
    """As TF.js executes Pack: tensors that differ from the first only by size-1 axes take its shape
    (the converter stores some scalar constants as shape [1])."""
    shape = args[0].shape
    same = [value if value.shape == shape else value.reshape(shape) for value in args]
    return torch.stack(same, dim=attrs.get("axis", 0))


def _unpack(args: list, attrs: dict) -> tuple:
    return torch.unbind(args[0], dim=attrs.get("axis", 0))


def _concat(args: list, attrs: dict) -> torch.Tensor:
    axis = int(args[-1])
    return torch.cat(args[:-1], dim=axis)


def _split(args: list, attrs: dict) -> tuple:
    axis = int(args[0])
    return torch.chunk(args[1], attrs["num_split"], dim=axis)


def _split_v(args: list, attrs: dict) -> tuple:
    return torch.split(args[0], _ints(args[1]), dim=int(args[2]))


def _reshape(args: list, attrs: dict) -> torch.Tensor:
    return args[0].reshape(_ints(args[1]))


def _squeeze(args: list, attrs: dict) -> torch.Tensor:
    x = args[0]
    dims = attrs.get("squeeze_dims") or [axis for axis, size in enumerate(x.shape) if size == 1]
    for axis in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.squeeze(axis)
    return x


def _expand_dims(args: list, attrs: dict) -> torch.Tensor:
    axis = int(args[1])
    return args[0].unsqueeze(axis if axis >= 0 else args[0].dim() + 1 + axis)


def _shape(args: list, attrs: dict) -> torch.Tensor:
    return torch.tensor(list(args[0].shape), dtype=torch.int32, device=args[0].device)


def _size(args: list, attrs: dict) -> torch.Tensor:
    return torch.tensor(args[0].numel(), dtype=torch.int32, device=args[0].device)


def _range(args: list, attrs: dict) -> torch.Tensor:
    start, limit, delta = (v.item() for v in args[:3])
    dtype = torch.float32 if attrs.get("Tidx") == "DT_FLOAT" else torch.int32
    return torch.arange(start, limit, delta, dtype=dtype, device=args[0].device)


def _fill(args: list, attrs: dict) -> torch.Tensor:
    return torch.full(_ints(args[0]), args[1].item(), dtype=args[1].dtype, device=args[1].device)


def _tile(args: list, attrs: dict) -> torch.Tensor:
    return args[0].repeat(*_ints(args[1]))


def _topk(args: list, attrs: dict) -> tuple:
    values, indices = torch.topk(args[0], int(args[1]), dim=-1, sorted=True)
    return values, indices.to(torch.int32)


def _gather_nd(args: list, attrs: dict) -> torch.Tensor:
    params, indices = args[0], args[1].long()
    return params[tuple(indices.unbind(-1))]


def _gather_v2(args: list, attrs: dict) -> torch.Tensor:
    params, indices, axis = args[0], args[1].long(), int(args[2])
    if attrs.get("batch_dims", 0):
        raise UnsupportedGraphError("GatherV2 with batch_dims is not supported")
    axis = axis % params.dim()
    flat = torch.index_select(params, axis, indices.reshape(-1))
    return flat.reshape(*params.shape[:axis], *indices.shape, *params.shape[axis + 1:])


def _arg_max(args: list, attrs: dict) -> torch.Tensor:
    dtype = _TF_DTYPES.get(attrs.get("output_type", "DT_INT64"), torch.int64)
    return torch.argmax(args[0], dim=int(args[1])).to(dtype)


def _select(args: list, attrs: dict) -> torch.Tensor:
    condition, a, b = args
    if condition.dim() == 1 and a.dim() > 1:  # TF v1 Select: a vector condition picks rows
        condition = condition.reshape(-1, *([1] * (a.dim() - 1)))
    return torch.where(condition, a, b)


def _transpose(args: list, attrs: dict) -> torch.Tensor:
    return args[0].permute(*_ints(args[1]))


def _pad(args: list, attrs: dict) -> torch.Tensor:
    pairs = _ints(args[1])
    value = float(args[2]) if len(args) > 2 else 0.0
    flat: list[int] = []
    for axis in reversed(range(len(pairs) // 2)):
        flat += [pairs[2 * axis], pairs[2 * axis + 1]]
    return F.pad(args[0], flat, value=value)


def _binary(function):
    def run(args: list, attrs: dict) -> torch.Tensor:
        return function(args[0], args[1])

    return run


def _unary(function):
    def run(args: list, attrs: dict) -> torch.Tensor:
        return function(args[0])

    return run


def _real_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a / b


_OPS = {
    "Placeholder": None,
    "Identity": _unary(lambda x: x),
    "Cast": _cast,
    "Add": _binary(torch.add),
    "AddV2": _binary(torch.add),
    "AddN": lambda args, attrs: sum(args[1:], args[0]),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "RealDiv": _binary(_real_div),
    "FloorDiv": _floor_div,
    "FloorMod": _floor_mod,
    "Maximum": _binary(torch.maximum),
    "Minimum": _binary(torch.minimum),
    "SquaredDifference": _binary(lambda a, b: (a - b) * (a - b)),
    "Less": _binary(torch.lt),
    "Greater": _binary(torch.gt),
    "GreaterEqual": _binary(torch.ge),
    "Equal": _binary(torch.eq),
    "LogicalAnd": _binary(torch.logical_and),
    "Abs": _unary(torch.abs),
    "Exp": _unary(torch.exp),
    "Sqrt": _unary(torch.sqrt),
    "Reciprocal": _unary(torch.reciprocal),
    "Sigmoid": _unary(torch.sigmoid),
    "Relu": _unary(torch.relu),
    "Relu6": _unary(lambda x: torch.clamp(x, 0.0, 6.0)),
    "LeakyRelu": lambda args, attrs: F.leaky_relu(args[0], attrs.get("alpha", 0.2)),
    "_FusedConv2D": _fused_conv,
    "Conv2D": lambda args, attrs: _conv(args[0], args[1], attrs, depthwise=False),
    "FusedDepthwiseConv2dNative": _fused_depthwise,
    "DepthwiseConv2dNative": lambda args, attrs: _conv(args[0], args[1], attrs, depthwise=True),
    "ResizeBilinear": _resize_bilinear,
    "MaxPool": _max_pool,
    "Mean": _reduce("mean"),
    "Sum": _reduce("sum"),
    "Max": _reduce("max"),
    "ArgMax": _arg_max,
    "TopKV2": _topk,
    "GatherNd": _gather_nd,
    "GatherV2": _gather_v2,
    "Select": _select,
    "StridedSlice": _strided_slice,
    "Shape": _shape,
    "Size": _size,
    "Range": _range,
    "Fill": _fill,
    "Tile": _tile,
    "Pack": _pack,
    "Unpack": _unpack,
    "ConcatV2": _concat,
    "Split": _split,
    "SplitV": _split_v,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "ExpandDims": _expand_dims,
    "Transpose": _transpose,
    "Pad": _pad,
    "PadV2": _pad,
}


# Float ops that act on each image of a batch independently (the convolutional trunk), and the small
# integer "shape path" ops whose only use there is computing resize targets from Shape.
_BATCHABLE_OPS = {
    "_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative", "AddV2", "Add",
    "ResizeBilinear", "Relu", "Relu6", "Cast", "Sub", "Mul", "Mean", "Sigmoid",
}
_SHAPE_PATH_OPS = {"Shape", "StridedSlice", "Mul", "Cast", "Pack"}
_CONV_OPS = {"_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"}


class TfjsGraph(torch.nn.Module):
    """Executes a converted TF.js graph.

    ``forward(x)`` feeds the single placeholder and returns the signature's outputs (a tuple when there are
    several). ``forward_batched(x)`` runs a batch: the convolutional trunk once for all N images, then the
    graph's own decoding (written for a batch of one: Squeeze/Reshape with a literal 1) once per image.
    """

    def __init__(self, converted: dict):
        super().__init__()
        self._input = converted["inputs"][0]
        self._outputs = list(converted["outputs"])
        self._constant_names: dict[str, str] = {}
        for index, (name, tensor) in enumerate(converted["tensors"].items()):
            buffer = f"c{index}"
            self.register_buffer(buffer, tensor.clone(), persistent=True)
            self._constant_names[name] = buffer
        self._nodes = self._without_batch_of_one_round_trips([self._with_torch_weight(node) for node in converted["nodes"]])
        self._by_name = {node["name"]: node for node in self._nodes}
        self._heads = self._find_heads()

    def _without_batch_of_one_round_trips(self, nodes: list[dict]) -> list[dict]:
        """Rewires "unstack the one image, then put the batch axis back" chains to their source.

        Why: Thunder's graph opens with ``Unpack(axis 0, num 1) → ExpandDims(0) → Squeeze(0) → ExpandDims(0)``
        (a resize TF.js folded away), which is the identity on a batch of one but stops the batchable trunk
        at its first node: every person's crop then ran the whole network alone. A chain of single-consumer
        nodes that starts at such an ``Unpack`` (or a ``Squeeze`` of axis 0) and returns to the input's rank
        through ``ExpandDims``/``Squeeze`` on axis 0 yields the input itself on a batch of one; its consumers
        read the input instead, so the trunk runs once for all crops (and a batch of one computes exactly
        what it did: the per-image decoding still runs on batches of one).
        """
        while True:
            rewired = self._rewire_one_round_trip_pass(nodes)
            if rewired is nodes:
                return nodes
            nodes = rewired

    def _rewire_one_round_trip_pass(self, nodes: list[dict]) -> list[dict]:
        consumers: dict[str, list[str]] = {}
        for node in nodes:
            for reference in node["inputs"]:
                if not reference.startswith("^"):
                    consumers.setdefault(reference, []).append(node["name"])
        by_name = {node["name"]: node for node in nodes}
        replace: dict[str, str] = {}
        for node in nodes:
            unstacks = node["op"] == "Unpack" and node["attrs"].get("axis", 0) == 0 and node["attrs"].get("num") == 1
            squeezes = node["op"] == "Squeeze" and node["attrs"].get("squeeze_dims") == [0]
            if not (unstacks or squeezes):
                continue
            source, depth, current = node["inputs"][0], -1, node["name"]
            while depth != 0:
                following = consumers.get(current, []) + consumers.get(f"{current}:0", [])
                if len(following) != 1:
                    break
                successor = by_name[following[0]]
                if successor["op"] == "ExpandDims" and self._axis_zero(successor):
                    depth += 1
                elif successor["op"] == "Squeeze" and successor["attrs"].get("squeeze_dims") == [0]:
                    depth -= 1
                else:
                    break
                current = successor["name"]
            if depth == 0:
                replace[current] = replace[f"{current}:0"] = source
        if not any(reference in replace for node in nodes for reference in node["inputs"]):
            return nodes
        return [
            {**node, "inputs": [replace.get(reference, reference) for reference in node["inputs"]]}
            if any(reference in replace for reference in node["inputs"]) else node
            for node in nodes
        ]

    def _axis_zero(self, node: dict) -> bool:
        """An ``ExpandDims`` whose axis is the constant 0."""
        axis = _source(node["inputs"][1])[0] if len(node["inputs"]) > 1 else None
        return axis in self._constant_names and self._constant(axis).numel() == 1 and int(self._constant(axis)) == 0

    def _with_torch_weight(self, node: dict) -> dict:
        """A convolution whose kernel is a constant reads it in torch's layout, converted here once (a new
        buffer beside the TF one), instead of permuting and copying it at every call."""
        if node["op"] not in _CONV_OPS or len(node["inputs"]) < 2:
            return node
        kernel = _source(node["inputs"][1])[0]
        if kernel not in self._constant_names:
            return node
        depthwise = "Depthwise" in node["op"]
        prepared = f"{kernel}/torch_{'depthwise' if depthwise else 'conv'}"
        if prepared not in self._constant_names:
            buffer = f"w{len(self._constant_names)}"
            self.register_buffer(buffer, torch_conv_weight(self._constant(kernel), depthwise), persistent=False)
            self._constant_names[prepared] = buffer
        inputs = list(node["inputs"])
        inputs[1] = prepared
        return {**node, "inputs": inputs, "attrs": {**node["attrs"], "torch_weight": True}}

    def _find_heads(self) -> list[str]:
        """Where the batchable trunk ends: trunk nodes that the decoding part of the graph consumes."""
        def inputs(node: dict) -> list[str]:
            names = (_source(ref)[0] for ref in node["inputs"] if not ref.startswith("^"))
            return [name for name in names if name not in self._constant_names]

        trunk: set[str] = {self._input}
        shape_path: set[str] = set()
        for node in self._nodes:  # topological order
            sources = inputs(node)
            if node["op"] == "Shape" and sources and sources[0] in trunk:
                shape_path.add(node["name"])
            elif node["op"] in _SHAPE_PATH_OPS and sources and all(name in shape_path for name in sources):
                shape_path.add(node["name"])
            elif node["op"] in _BATCHABLE_OPS and sources and all(n in trunk or n in shape_path for n in sources) and any(
                n in trunk for n in sources
            ):
                trunk.add(node["name"])
        heads = []
        for node in self._nodes:
            if node["name"] in trunk or node["name"] in shape_path:
                continue
            heads.extend(name for name in inputs(node) if name in trunk and name not in heads)
        return heads

    def _constant(self, name: str) -> torch.Tensor:
        return getattr(self, self._constant_names[name])

    def _needed(self, feeds: set[str], outputs: list[str]) -> set[str]:
        needed: set[str] = set()
        stack = [_source(name)[0] for name in outputs]
        while stack:
            name = stack.pop()
            if name in needed or name in feeds or name in self._constant_names:
                continue
            needed.add(name)
            stack.extend(_source(ref)[0] for ref in self._by_name[name]["inputs"] if not ref.startswith("^"))
        return needed

    def run(self, feeds: dict[str, torch.Tensor], outputs: list[str]) -> list[torch.Tensor]:
        """Compute ``outputs`` from ``feeds`` (any node names), running only the nodes they need."""
        values: dict[str, Any] = dict(feeds)
        needed = self._needed(set(feeds), outputs)
        for node in self._nodes:
            if node["name"] not in needed:
                continue
            if node["op"] == "Placeholder":
                raise UnsupportedGraphError(f"{node['name']} must be fed")
            args = []
            for reference in node["inputs"]:
                if reference.startswith("^"):
                    continue
                name, index = _source(reference)
                if name in self._constant_names:
                    args.append(self._constant(name))
                else:
                    value = values[name]
                    args.append(value[index] if isinstance(value, tuple) else value)
            values[node["name"]] = _OPS[node["op"]](args, node["attrs"])
        results = []
        for reference in outputs:
            name, index = _source(reference)
            value = values[name]
            results.append(value[index] if isinstance(value, tuple) else value)
        return results

    def forward(self, x: torch.Tensor):
        results = self.run({self._input: x}, self._outputs)
        return results[0] if len(results) == 1 else tuple(results)

    def forward_batched(self, x: torch.Tensor, output: int = 0, chunk: int | None = None) -> torch.Tensor:
        """N inputs → output number ``output`` of each, stacked (the trunk runs once for every ``chunk`` images,
        once for the whole batch when ``chunk`` is None)."""
        if chunk is not None and x.shape[0] > chunk:
            return torch.cat([self.forward_batched(part, output) for part in x.split(chunk)], dim=0)
        heads = self.run({self._input: x}, self._heads)
        per_image = []
        for index in range(x.shape[0]):
            feeds = {self._input: x[index:index + 1]}
            feeds.update({name: value[index:index + 1] for name, value in zip(self._heads, heads)})
            per_image.append(self.run(feeds, [self._outputs[output]])[0])
        return torch.cat(per_image, dim=0)
