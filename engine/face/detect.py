"""Face detection behind a narrow ``Detector`` protocol; MTCNN (facenet-pytorch's packaged weights) by default.

MTCNN's cost grows with the image's area, so we detect on a copy whose longest side is at most
``max_side`` pixels and map boxes and landmarks back to the full image; alignment then warps from the
full-resolution pixels, so no detail is lost for the recognizer.

Batching: images of the same (downscaled) size go through P-Net together, and the R-Net/O-Net stages
crop and resample every candidate box of the batch at once from a summed-area table instead of one
``interpolate`` call per box (the loop in facenet-pytorch's ``detect_face``). The arithmetic is the
same "area" resampling, so a single image gets the same boxes, scores and landmarks as
facenet-pytorch's ``MTCNN.detect`` (to float rounding; tests/test_batch_engine.py checks it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms

from engine.face.choose import landmark_box, outside_share

log = logging.getLogger("frood.detect")
# A face box wider or taller than this share of the image is a tight crop (see finish_detections).
TIGHT_CROP_SHARE = 0.7
# An image whose short side is at most this (in detector pixels) may be a face crop that MTCNN reads as a
# part of a face (a mouth box on a 150 px crop): it is also searched inside a padded copy.
SMALL_IMAGE_SIDE = 256
# Same-size images detected in one pass; bounds the summed-area tables' memory (N×3×H×W ints).
DETECT_CHUNK = 16
# On CUDA, where one pass over many images costs little more than over one, bigger chunks.
CUDA_DETECT_CHUNK = 128
LETTERBOX_GREY = 127

RawFace = tuple[np.ndarray, float, np.ndarray]  # box [x1, y1, x2, y2], probability, 5×2 landmarks


@dataclass
class Detection:
    """One face: box ``[x1, y1, x2, y2]`` and 5 landmarks (eyes, nose, mouth corners) in image pixels."""

    bbox: np.ndarray
    score: float
    landmarks: np.ndarray  # 5×2
    # Share of the landmark box outside the image: a face cut by the border (see face_choice).
    outside: float = 0.0

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces in an RGB image, largest first."""
        ...

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """All faces of each image, largest first, one list per image."""
        ...


def _summed_area(images: torch.Tensor) -> torch.Tensor:
    """N×3×(H+1)×(W+1) inclusive prefix sums of integer-valued pixels (exact in int32/int64)."""
    dtype = torch.int32 if images.shape[2] * images.shape[3] * 255 < 2**31 else torch.int64
    table = images.to(dtype).cumsum(2, dtype=dtype).cumsum(3, dtype=dtype)
    return torch.nn.functional.pad(table, (1, 0, 1, 0))


def _area_bins(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin edges of "area" (adaptive average) resampling of ``length`` pixels to ``size``, as PyTorch computes them."""
    steps = torch.arange(size, device=length.device)
    lower = (steps[None, :] * length[:, None]) // size
    upper = ((steps[None, :] + 1) * length[:, None] + size - 1) // size
    return start[:, None] + lower, start[:, None] + upper


def area_resize(table: torch.Tensor, height: int, width: int, out_height: int, out_width: int, channels_last: bool = False) -> torch.Tensor:
    """``interpolate(images, (out_height, out_width), mode="area")`` from the images' summed-area table, bit for bit.

    MTCNN's image pyramid was ~20 % of a photo's CPU time in PyTorch's adaptive-pooling loop. The pixels
    are integers, so each bin's sum is exact (in the table and in float32), and dividing it by the bin's
    height, then width, as PyTorch's kernel does, gives the same float32 values: two look-ups per bin
    edge replace the per-pixel loop (2.5× faster at the pyramid's sizes).
    """
    zero = torch.zeros(1, dtype=torch.long, device=table.device)
    row_lo, row_hi = _area_bins(zero, torch.tensor([height], device=table.device), out_height)
    col_lo, col_hi = _area_bins(zero, torch.tensor([width], device=table.device), out_width)
    row_lo, row_hi, col_lo, col_hi = row_lo[0], row_hi[0], col_lo[0], col_hi[0]
    rows = table.index_select(2, row_hi) - table.index_select(2, row_lo)
    sums = rows.index_select(3, col_hi) - rows.index_select(3, col_lo)
    means = sums.float() / (row_hi - row_lo).float()[:, None] / (col_hi - col_lo).float()[None, :]
    # interpolate() keeps its input's channels-last layout, and P-Net's convolutions round differently per layout
    return means.contiguous(memory_format=torch.channels_last) if channels_last else means


def crop_resample(
    table: torch.Tensor, image_ids: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, size: int
) -> torch.Tensor:
    """Every box ``[y0:y1, x0:x1]`` of its image resampled to size×size ("area" mode), in one gather.

    Equal to ``interpolate(image[:, :, y0:y1, x0:x1], (size, size), mode="area")`` box by box: each
    output pixel is the mean of its bin, and a bin's sum is four look-ups in the summed-area table.
    """
    row_lo, row_hi = _area_bins(y0, y1 - y0, size)
    col_lo, col_hi = _area_bins(x0, x1 - x0, size)
    ids = image_ids[:, None, None]

    def corner(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return table[ids, :, rows[:, :, None], cols[:, None, :]]  # K×size×size×3

    sums = corner(row_hi, col_hi) - corner(row_lo, col_hi) - corner(row_hi, col_lo) + corner(row_lo, col_lo)
    counts = (row_hi - row_lo)[:, :, None] * (col_hi - col_lo)[:, None, :]
    means = sums.double() / counts[..., None].double()
    return means.float().permute(0, 3, 1, 2)


def _box_windows(boxes: torch.Tensor, width: int | torch.Tensor, height: int | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """facenet-pytorch's ``pad``: integer windows (0-based start, end) clipped to the image.

    ``width``/``height`` are the image's size, or one size per box (letterboxed images: a box is
    clipped to its own image, never to the grey canvas around it).
    """
    ints = boxes[:, :4].trunc().int().long()
    x, y = ints[:, 0].clamp_min(1), ints[:, 1].clamp_min(1)
    ex, ey = torch.minimum(ints[:, 2], torch.as_tensor(width, device=ints.device)), torch.minimum(ints[:, 3], torch.as_tensor(height, device=ints.device))
    valid = (ey > y - 1) & (ex > x - 1)
    return y - 1, torch.where(valid, ey, y), x - 1, torch.where(valid, ex, x), valid


def _rerec(boxes: torch.Tensor) -> torch.Tensor:
    height = boxes[:, 3] - boxes[:, 1]
    width = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(width, height)
    boxes[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side.repeat(2, 1).permute(1, 0)
    return boxes


def _bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    shifted = torch.stack(
        [boxes[:, 0] + reg[:, 0] * width, boxes[:, 1] + reg[:, 1] * height, boxes[:, 2] + reg[:, 2] * width, boxes[:, 3] + reg[:, 3] * height]
    )
    boxes[:, :4] = shifted.permute(1, 0)
    return boxes


def _pyramid_levels(min_side: int, m: float, factor: float) -> int:
    """How many pyramid levels ``detect_face`` builds for an image of this short side (its own loop)."""
    count, side = 0, min_side * m
    while side >= 12:
        count, side = count + 1, side * factor
    return count


def resample_many(table: torch.Tensor, ids: torch.Tensor, sizes: torch.Tensor, out_sizes: torch.Tensor) -> torch.Tensor:
    """Whole images of different sizes, each resampled ("area" mode) to its own output size, in one gather.

    ``table``: summed-area tables of the canvas holding every image in its top-left corner; ``sizes``
    and ``out_sizes``: K×(height, width). Returns K×3×H×W (H, W the largest output size), each image's
    pixels equal to ``interpolate(image, out_size, mode="area")``, grey (127.5) beyond.
    One call for a whole pyramid level instead of one ``interpolate`` per image (which, on CUDA, made
    three quarters of the detector's time).
    """
    device = table.device
    out_h, out_w = int(out_sizes[:, 0].max()), int(out_sizes[:, 1].max())

    def bins(length: torch.Tensor, out: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps = torch.arange(count, device=device)[None, :]
        inside = steps < out[:, None]
        lower = (steps * length[:, None]) // out[:, None]
        upper = ((steps + 1) * length[:, None] + out[:, None] - 1) // out[:, None]
        return torch.where(inside, lower, 0), torch.where(inside, upper, 1), inside

    row_lo, row_hi, row_in = bins(sizes[:, 0], out_sizes[:, 0], out_h)
    col_lo, col_hi, col_in = bins(sizes[:, 1], out_sizes[:, 1], out_w)
    index = ids[:, None, None]

    def corner(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return table[index, :, rows[:, :, None], cols[:, None, :]]  # K×H×W×3

    sums = corner(row_hi, col_hi) - corner(row_lo, col_hi) - corner(row_hi, col_lo) + corner(row_lo, col_lo)
    # Divide by the bin's height, then its width, as PyTorch's kernel does: the same float32 values (see area_resize).
    means = sums.float() / (row_hi - row_lo).float()[:, :, None, None] / (col_hi - col_lo).float()[:, None, :, None]
    inside = (row_in[:, :, None] & col_in[:, None, :])[..., None]
    return torch.where(inside, means, torch.full_like(means, 127.5)).permute(0, 3, 1, 2)


def _pnet_padded(pnet: torch.nn.Module, batch: torch.Tensor, sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net over images of different sizes in one pass, each padded to the largest (``batch``, K×3×H×W,
    image ``k`` in the top-left ``sizes[k]``), with exactly the outputs it would get alone.

    P-Net is fully convolutional with unpadded convolutions, so a padded image's outputs over its own
    area are its own, except where the 2×2 ceil-mode pooling meets its right/bottom edge: there the
    padding would enter the max. Conv1 outputs outside each image are set to −∞ before pooling, so
    the max sees what it sees alone; outputs outside each image get probability 0.
    """
    height, width = batch.shape[2], batch.shape[3]
    inside = torch.zeros(len(sizes), 1, height - 2, width - 2, dtype=torch.bool, device=batch.device)
    for slot, (image_height, image_width) in enumerate(sizes):
        inside[slot, :, : image_height - 2, : image_width - 2] = True
    hidden = pnet.prelu1(pnet.conv1(batch))
    hidden = pnet.pool1(hidden.masked_fill(~inside, float("-inf")))
    hidden = pnet.prelu3(pnet.conv3(pnet.prelu2(pnet.conv2(hidden))))
    probs = pnet.softmax4_1(pnet.conv4_1(hidden))[:, 1]
    reg = pnet.conv4_2(hidden)
    valid = torch.zeros_like(probs, dtype=torch.bool)
    for slot, (image_height, image_width) in enumerate(sizes):
        valid[slot, : -(-(image_height - 2) // 2) - 4, : -(-(image_width - 2) // 2) - 4] = True
    return reg, torch.where(valid & torch.isfinite(probs), probs, torch.zeros_like(probs))


def mtcnn_detect(
    images: torch.Tensor, mtcnn: torch.nn.Module, sizes: list[tuple[int, int]] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """facenet-pytorch's ``detect_face`` over N same-size images (N×H×W×3 uint8 on the model's device).

    The same three stages, thresholds and NMS; only the R-Net/O-Net crops are vectorised. Returns,
    per image, boxes K×5 (x1, y1, x2, y2, probability) and landmarks K×5×2, as numpy arrays.
    ``sizes``: each image's own (height, width) when it was letterboxed into the top-left corner of
    the canvas; R-Net/O-Net windows are then clipped to the image, as they would be without the canvas.
    """
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, generateBoundingBox

    device = images.device
    imgs = images.permute(0, 3, 1, 2).float()
    batch, height, width = imgs.shape[0], imgs.shape[2], imgs.shape[3]
    threshold, factor = mtcnn.thresholds, mtcnn.factor
    m = 12.0 / mtcnn.min_face_size
    min_side = (max(min(size) for size in sizes) if sizes is not None else min(height, width)) * m
    scales, scale = [], m
    while min_side >= 12:
        scales.append(scale)
        scale, min_side = scale * factor, min_side * factor

    table = _summed_area(imgs)  # the pyramid's resampling and the R-Net/O-Net crops all read it
    channels_last = imgs.is_contiguous(memory_format=torch.channels_last)
    if sizes is not None:
        real = torch.tensor(sizes, device=device, dtype=torch.long)  # N×(height, width)
        level_counts = [_pyramid_levels(min(size), m, factor) for size in sizes]
    candidates, image_ids, picks, offset = [], [], [], 0
    for level, scale in enumerate(scales):
        if sizes is None:
            size = (int(height * scale + 1), int(width * scale + 1))
            data = (area_resize(table, height, width, *size, channels_last=channels_last) - 127.5) * 0.0078125
            reg, probs = mtcnn.pnet(data)
            boxes_scale, ids_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
        else:
            members = [index for index, count in enumerate(level_counts) if count > level]
            if not members:
                break
            out_sizes = [(int(sizes[index][0] * scale + 1), int(sizes[index][1] * scale + 1)) for index in members]
            member_ids = torch.tensor(members, device=device)
            data = resample_many(table, member_ids, real[member_ids], torch.tensor(out_sizes, device=device))
            reg, probs = _pnet_padded(mtcnn.pnet, (data - 127.5) * 0.0078125, out_sizes)
            boxes_scale, slots = generateBoundingBox(reg, probs, scale, threshold[0])
            ids_scale = member_ids[slots]
        candidates.append(boxes_scale)
        image_ids.append(ids_scale)
        picks.append(batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], ids_scale, 0.5) + offset)
        offset += boxes_scale.shape[0]
    boxes = torch.cat(candidates)[torch.cat(picks)]
    ids = torch.cat(image_ids)[torch.cat(picks)]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], ids, 0.7)
    boxes, ids = boxes[pick], ids[pick]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh, boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]]
    ).permute(1, 0)
    boxes = _rerec(boxes)

    if sizes is not None:
        image_height, image_width = real[:, 0], real[:, 1]
    else:
        image_height = image_width = None

    def windows(boxes: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if image_width is None:
            return _box_windows(boxes, width, height)
        return _box_windows(boxes, image_width[ids], image_height[ids])

    if len(boxes):  # R-Net
        y0, y1, x0, x1, valid = windows(boxes, ids)
        data = (crop_resample(table, ids, y0, y1, x0, x1, 24) - 127.5) * 0.0078125
        reg, prob = mtcnn.rnet(data)
        score = torch.where(valid, prob[:, 1], torch.zeros_like(prob[:, 1]))
        keep = score > threshold[1]
        boxes = torch.cat((boxes[keep, :4], score[keep].unsqueeze(1)), dim=1)
        ids, reg = ids[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], ids, 0.7)
        boxes, ids, reg = boxes[pick], ids[pick], reg[pick]
        boxes = _rerec(_bbreg(boxes, reg))

    points = torch.zeros(0, 5, 2, device=device)
    if len(boxes):  # O-Net
        y0, y1, x0, x1, valid = windows(boxes, ids)
        data = (crop_resample(table, ids, y0, y1, x0, x1, 48) - 127.5) * 0.0078125
        reg, landmarks, prob = mtcnn.onet(data)
        score = torch.where(valid, prob[:, 1], torch.zeros_like(prob[:, 1]))
        keep = score > threshold[2]
        landmarks = landmarks[keep].permute(1, 0)
        boxes = torch.cat((boxes[keep, :4], score[keep].unsqueeze(1)), dim=1)
        ids, reg = ids[keep], reg[keep]
        box_w = boxes[:, 2] - boxes[:, 0] + 1
        box_h = boxes[:, 3] - boxes[:, 1] + 1
        points_x = box_w.repeat(5, 1) * landmarks[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = box_h.repeat(5, 1) * landmarks[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = _bbreg(boxes, reg)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], ids, 0.7, "Min")
        boxes, ids, points = boxes[pick], ids[pick], points[pick]

    boxes_np, points_np, ids_np = boxes.float().cpu().numpy(), points.float().cpu().numpy(), ids.cpu().numpy()
    return [(boxes_np[ids_np == index], points_np[ids_np == index]) for index in range(batch)]


class ONetRefiner:
    """MTCNN's last stage (O-Net) on another detector's boxes: its face probability, box and five points.

    YuNet finds faces 2.5–20× faster than MTCNN's pyramid, but its five points sit elsewhere than O-Net's, and
    the aligned crop moves with them: through faceplugin-r512 that cost 6 points of TAR at FMR 1e-3 on the
    held-out wild photos. O-Net run on YuNet's boxes, squared as MTCNN squares R-Net's, gives the points, the
    box regression and the probability MTCNN's own last stage gives (the quality score's ``det_logit`` was
    fitted on that probability), for ~1 ms per face. The weights are facenet-pytorch's, as MTCNN's.
    """

    def __init__(self, device: str = "cpu"):
        from facenet_pytorch.models.mtcnn import ONet

        self.device = torch.device(device)
        self.onet = ONet().to(self.device).eval()

    def __call__(self, small: np.ndarray, raw: list[RawFace]) -> list[RawFace]:
        """The faces of one uint8 image (RGB or grey, at detection size) with O-Net's box, probability and points."""
        if not raw:
            return []
        rgb = np.stack([small] * 3, axis=-1) if small.ndim == 2 else small
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).to(self.device).permute(2, 0, 1)[None]
        table = _summed_area(pixels)
        height, width = rgb.shape[:2]
        boxes = torch.tensor(np.array([np.r_[box[:4], score] for box, score, _ in raw]), dtype=torch.float32, device=self.device)
        boxes = _rerec(boxes)
        ids = torch.zeros(len(raw), dtype=torch.long, device=self.device)
        y0, y1, x0, x1, valid = _box_windows(boxes, width, height)
        data = (crop_resample(table, ids, y0, y1, x0, x1, 48) - 127.5) * 0.0078125
        with torch.inference_mode():
            reg, landmarks, prob = self.onet(data)
        score = torch.where(valid, prob[:, 1], torch.zeros_like(prob[:, 1]))
        landmarks = landmarks.permute(1, 0)
        box_w = boxes[:, 2] - boxes[:, 0] + 1
        box_h = boxes[:, 3] - boxes[:, 1] + 1
        points_x = box_w.repeat(5, 1) * landmarks[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = box_h.repeat(5, 1) * landmarks[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0).float().cpu().numpy()
        boxes = _bbreg(torch.cat((boxes[:, :4], score[:, None]), dim=1), reg).float().cpu().numpy()
        return [(boxes[i, :4].astype(np.float32), float(boxes[i, 4]), points[i].astype(np.float32)) for i in range(len(raw))]


def _largest_area(raw: list[RawFace]) -> float:
    return max(((box[2] - box[0]) * (box[3] - box[1]) for box, _, _ in raw), default=0.0)


def choose_padded(raw: list[RawFace], padded: list[RawFace], tight: bool) -> list[RawFace]:
    """Keep the better of a plain and a padded detection: on a tight crop the padded one (whole-face
    landmarks); on a small image the padded one only when it finds a clearly larger face (the whole
    face where the plain pass saw a part of it)."""
    if not padded:
        return raw
    if not raw or tight:
        if raw:
            log.warning("Tight face crop: landmarks taken from a re-detection inside a padded border")
        return padded
    return padded if _largest_area(padded) > 1.5 * _largest_area(raw) else raw


def is_tight(raw: list[RawFace], shape: tuple[int, int]) -> bool:
    """No face, or a face box filling most of the frame: a tight face crop (see ``finish_detections``)."""
    small_h, small_w = shape
    return not raw or any((box[2] - box[0]) > TIGHT_CROP_SHARE * small_w or (box[3] - box[1]) > TIGHT_CROP_SHARE * small_h for box, _, _ in raw)


def needs_padded(raw: list[RawFace], shape: tuple[int, int]) -> bool:
    """Whether ``finish_detections`` will search the image again inside a grey border."""
    return is_tight(raw, shape) or min(shape) <= SMALL_IMAGE_SIDE


def padding_sides(shape: tuple[int, int]) -> tuple[int, int]:
    """The two borders tried, in order: a quarter of the long side, then half of it."""
    side = max(shape)
    return side // 4, side // 2


def pad_grey(small: np.ndarray, pad: int) -> np.ndarray:
    return cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127, 127, 127))


def finish_detections(
    small: np.ndarray,
    raw: list[RawFace],
    scale: float,
    size: tuple[int, int],
    redetect: Callable[[np.ndarray, int], list[RawFace]],
) -> list[Detection]:
    """Per-image post-processing: tight-crop re-detection, mapping to full-size pixels, largest first.

    A face that fills most of the frame (a tight crop) gets poor MTCNN landmarks, and sometimes no
    detection at all: then we detect again inside a grey border of a quarter of the image's side,
    which brought a 0.2-expanded crop's feature from cosine 0.77–0.93 to 0.96–0.99 of the full photo's.
    Small images (a 150 px face crop MTCNN may read as a mouth) are also searched padded; see ``choose_padded``.
    ``redetect(small, pad)`` runs the detector on ``small`` inside a grey border of ``pad`` pixels.
    """
    height, width = size
    small_h, small_w = small.shape[:2]
    tight = is_tight(raw, (small_h, small_w))
    if needs_padded(raw, (small_h, small_w)):
        # A quarter of the side suffices for most crops; faces cropped inside the hairline and
        # chin (Yale B) need half before MTCNN sees a whole head (6 → 15 of 24 found).
        quarter, half = padding_sides((small_h, small_w))
        padded = redetect(small, quarter) or redetect(small, half)
        raw = choose_padded(raw, padded, tight)
    faces: list[Detection] = []
    for box, prob, landmark in raw:
        outside = outside_share(landmark_box(landmark), (small_h, small_w))
        bbox = box / scale
        bbox[[0, 2]] = np.clip(bbox[[0, 2]], 0, width)
        bbox[[1, 3]] = np.clip(bbox[[1, 3]], 0, height)
        faces.append(Detection(bbox, prob, landmark / scale, outside))
    faces.sort(key=lambda face: face.area, reverse=True)
    return faces


class MTCNNDetector:
    """MTCNN from facenet-pytorch (its wheel ships pnet/rnet/onet weights), batched over images."""

    name = "mtcnn"

    def __init__(
        self,
        device: str = "cpu",
        max_side: int = 640,
        min_face_size: int = 20,
        min_score: float = 0.7,
        group_sizes: bool | None = None,
        letterbox: bool | None = None,
    ):
        """``group_sizes``: run equal-size images through MTCNN together (default: on CUDA only).
        ``letterbox``: images of any sizes share one pass (default: on CUDA only): each goes into the
        top-left corner of a grey canvas, P-Net runs per pyramid level over every image's own
        resampled copy padded to the largest (``_pnet_padded``: an image's outputs are its own), and
        R-Net/O-Net windows are clipped to each image, so every image gets the faces it gets alone.

        On a CPU a 640-px image already keeps the cores busy, and one image at a time keeps every
        image's boxes bit-identical to the single-image path (a conv's last bits depend on its batch
        size, and a landmark moved by 1e-5 px flips rounding in the aligned crop).
        """
        from facenet_pytorch import MTCNN

        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if cuda and torch.backends.cudnn.allow_tf32:
            # cuDNN's default TF32 convolutions round MTCNN's scores at 1e-3, and its cascade amplifies
            # that (measured on an H100: 15 % of photos moved below cosine 0.9999 between a batch and a
            # single photo). Full fp32 for every convolution in the process: the quality networks are
            # calibrated on fp32 outputs too, and the recognizer runs in fp16/bf16 regardless.
            log.info("CUDA: cuDNN TF32 convolutions turned off (MTCNN and the quality networks need full fp32)")
            torch.backends.cudnn.allow_tf32 = False
        self.letterbox = cuda if letterbox is None else letterbox
        self.group_sizes = self.letterbox or (cuda if group_sizes is None else group_sizes)
        self.chunk = CUDA_DETECT_CHUNK if cuda else DETECT_CHUNK
        self.max_side = max_side
        self.min_score = min_score
        self._mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=min_face_size, post_process=False, select_largest=True)
        self._mtcnn.eval()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([rgb])[0]

    def _stack(self, images: list[np.ndarray], indices: list[int], letterbox: bool) -> torch.Tensor:
        if not letterbox:
            return torch.from_numpy(np.stack([images[i] for i in indices])).to(self.device)
        height = max(images[i].shape[0] for i in indices)
        width = max(images[i].shape[1] for i in indices)
        canvas = np.full((len(indices), height, width, 3), LETTERBOX_GREY, np.uint8)
        for slot, index in enumerate(indices):
            image = images[index]
            canvas[slot, : image.shape[0], : image.shape[1]] = image
        return torch.from_numpy(canvas).to(self.device)

    def _raw_batch(self, images: list[np.ndarray]) -> list[list[RawFace]]:
        """Raw MTCNN faces (probability ≥ ``min_score``, largest first) of images given at detection size."""
        results: list[list[RawFace]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            key = (() if self.letterbox else image.shape) if self.group_sizes else (index,)
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.chunk):
                chunk = indices[start : start + self.chunk]
                # One image needs no canvas: the plain pass gives it the same faces (to float rounding).
                letterbox = self.letterbox and len(chunk) > 1
                stacked = self._stack(images, chunk, letterbox)
                sizes = [images[i].shape[:2] for i in chunk] if letterbox else None
                with torch.inference_mode():
                    outputs = mtcnn_detect(stacked, self._mtcnn, sizes)
                for index, (boxes, points) in zip(chunk, outputs):
                    order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
                    results[index] = [
                        (boxes[i, :4].astype(np.float32), float(boxes[i, 4]), points[i].astype(np.float32))
                        for i in order
                        if boxes[i, 4] >= self.min_score
                    ]
        return results

    def _padded_batch(self, smalls: list[np.ndarray], pads: list[int]) -> list[list[RawFace]]:
        """Several images, each inside its own grey border, detected in one batched pass."""
        raws = self._raw_batch([pad_grey(small, pad) for small, pad in zip(smalls, pads)])
        return [[(box - pad, prob, landmark - pad) for box, prob, landmark in raw] for raw, pad in zip(raws, pads)]

    def downscale(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale == 1.0:
            return rgb, scale
        return cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA), scale

    def _padded_detections(self, smalls: list[np.ndarray], raws: list[list[RawFace]]) -> dict[tuple[int, int], list[RawFace]]:
        """The re-detections ``finish_detections`` will ask for, run as two batched passes.

        First every image that needs it inside a quarter-side border; then, for those where that
        found nothing, inside a half-side border (``finish_detections``' order).
        """
        wanted = [index for index, (small, raw) in enumerate(zip(smalls, raws)) if needs_padded(raw, small.shape[:2])]
        found: dict[tuple[int, int], list[RawFace]] = {}
        for round_number in (0, 1):
            if round_number == 1:
                wanted = [index for index in wanted if not found[(index, padding_sides(smalls[index].shape[:2])[0])]]
            if not wanted:
                break
            pads = [padding_sides(smalls[index].shape[:2])[round_number] for index in wanted]
            for index, pad, raw in zip(wanted, pads, self._padded_batch([smalls[index] for index in wanted], pads)):
                found[(index, pad)] = raw
        return found

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detect in several images: each downscaled on its own, then batched through MTCNN (equal
        sizes together, or letterboxed on CUDA), tight-crop re-detections batched too."""
        smalls, scales = zip(*(self.downscale(rgb) for rgb in images)) if images else ((), ())
        raws = self._raw_batch(list(smalls))
        padded = self._padded_detections(list(smalls), raws)
        detections = []
        for index, (small, raw, scale, rgb) in enumerate(zip(smalls, raws, scales, images)):
            def redetect(_: np.ndarray, pad: int, index: int = index) -> list[RawFace]:
                return padded[(index, pad)]

            detections.append(finish_detections(small, raw, scale, rgb.shape[:2], redetect))
        return detections
