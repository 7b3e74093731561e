"""The TF.js interpreter's convolution: TensorFlow's SAME padding (the odd pixel at the end), with the bias
in the convolution's epilogue and kernels converted to torch's layout once, equals the plain recipe
(explicit pad, TF-layout kernel permuted at the call, separate bias add). Pure logic, random tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from engine.keypoints.tfjs_graph import _fused_conv, _fused_depthwise, _legacy_bilinear, _same_padding, torch_conv_weight


def _reference(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor, stride: int, depthwise: bool) -> torch.Tensor:
    """TF's SAME convolution written the slow, obvious way (NHWC in and out)."""
    nchw = x.permute(0, 3, 1, 2)
    top, bottom = _same_padding(nchw.shape[2], kernel.shape[0], stride, 1)
    left, right = _same_padding(nchw.shape[3], kernel.shape[1], stride, 1)
    nchw = F.pad(nchw, (left, right, top, bottom))
    if depthwise:
        weight = kernel.permute(2, 3, 0, 1).reshape(-1, 1, kernel.shape[0], kernel.shape[1])
        y = F.conv2d(nchw, weight, stride=stride, groups=kernel.shape[2])
    else:
        y = F.conv2d(nchw, kernel.permute(3, 2, 0, 1), stride=stride)
    return torch.clamp(y.permute(0, 2, 3, 1) + bias, 0.0, 6.0)


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize(("size", "kernel_size", "stride"), [(17, 3, 1), (16, 3, 2), (17, 3, 2), (12, 1, 2), (9, 5, 1)])
@pytest.mark.parametrize("prepared", [False, True])
def test_same_convolution_matches_tensorflow_semantics(depthwise, size, kernel_size, stride, prepared):
    generator = torch.Generator().manual_seed(size * 10 + kernel_size + stride)
    x = torch.randn(2, size, size + 1, 4, generator=generator)  # NHWC, width ≠ height
    out_channels = 2 if depthwise else 6  # depthwise: a channel multiplier of 2
    kernel = torch.randn(kernel_size, kernel_size, 4, out_channels, generator=generator)
    bias = torch.randn(4 * out_channels if depthwise else out_channels, generator=generator)
    attrs = {"strides": [1, stride, stride, 1], "padding": "SAME", "fused_ops": ["BiasAdd", "Relu6"]}
    weight = kernel
    if prepared:
        weight, attrs = torch_conv_weight(kernel, depthwise), {**attrs, "torch_weight": True}
    got = (_fused_depthwise if depthwise else _fused_conv)([x, weight, bias], attrs)
    want = _reference(x, kernel, bias, stride, depthwise)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_legacy_bilinear_resize_matches_the_four_neighbour_formula():
    """TF's legacy resize (source = destination × in/out, no half-pixel shift), computed pixel by pixel."""
    x = torch.randn(1, 3, 5, 7, generator=torch.Generator().manual_seed(3))
    got = _legacy_bilinear(x, [8, 11])
    want = torch.empty(1, 3, 8, 11)
    for i in range(8):
        for j in range(11):
            sy, sx = i * 5 / 8, j * 7 / 11
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            fy, fx = sy - y0, sx - x0
            top = x[:, :, y0, x0] * (1 - fx) + x[:, :, y0, x1] * fx
            bottom = x[:, :, y1, x0] * (1 - fx) + x[:, :, y1, x1] * fx
            want[:, :, i, j] = top * (1 - fy) + bottom * fy
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
