"""MTCNN face detection over a batch of frames, computing what facenet-pytorch's `detect_face` does.

facenet-pytorch batches its first stage (the P-Net pyramid) but cuts every candidate box for
the second and third stages one at a time: a slice and an `interpolate` per box, each with a
host round-trip. With many streams' frames in one call that is thousands of tiny operations
(on a GPU, thousands of kernel launches), and it dominated the detection time.

Here every candidate's 24x24 / 48x48 input is made at once from an integral image of the batch:
PyTorch's area interpolation is adaptive average pooling (output cell i averages input rows
floor(i*h/n) to ceil((i+1)*h/n)), and the sum over any such rectangle is four look-ups in the
integral image. Pixels are integers, so the float64 sums are exact and the crops equal the
library's to the last bit of float32 rounding. The stages, thresholds, NMS and box arithmetic
are the library's own functions, called in the same order, so the faces found are the same.
"""
from __future__ import annotations

import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (bbreg, batched_nms_numpy, fixed_batch_process,
                                                      generateBoundingBox, imresample, rerec)
from torchvision.ops.boxes import batched_nms


def pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """The image scales of the P-Net pyramid (the library's rule: down to a 12-pixel side)."""
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scales = []
    scale = m
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def integral_image(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H+1, W+1) float64 sums of every top-left rectangle (exact for pixels)."""
    s = torch.nn.functional.pad(images.double(), (1, 0, 1, 0))
    return s.cumsum(2).cumsum(3)


def area_crops(integral: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crops [y0, y1) x [x0, x1) of the integrated images, each area-resized to size x size.

    boxes: (N, 4) int64 rows y0, y1, x0, x1 (non-empty, inside the image). Returns (N, C, size, size)
    float32: the values `interpolate(image[:, y0:y1, x0:x1], (size, size), mode="area")` gives."""
    cells = torch.arange(size, device=boxes.device)

    def edges(lo, hi):  # (N, size) first and one-past-last input index of each output cell
        n = (hi - lo)[:, None]
        return lo[:, None] + torch.div(cells * n, size, rounding_mode="floor"), \
            lo[:, None] + torch.div((cells + 1) * n + size - 1, size, rounding_mode="floor")

    r0, r1 = edges(boxes[:, 0], boxes[:, 1])
    c0, c1 = edges(boxes[:, 2], boxes[:, 3])
    b = image_index[:, None, None]
    ys0, ys1, xs0, xs1 = r0[:, :, None], r1[:, :, None], c0[:, None, :], c1[:, None, :]
    total = integral[b, :, ys1, xs1] - integral[b, :, ys0, xs1] - integral[b, :, ys1, xs0] + integral[b, :, ys0, xs0]
    count = ((ys1 - ys0) * (xs1 - xs0)).to(total.dtype)[..., None]
    return (total / count).float().permute(0, 3, 1, 2).contiguous()  # (N, size, size, C) -> (N, C, size, size)


def _crop_boxes(boxes: torch.Tensor, w: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The library's `pad` and its non-empty test, on the device: (y0, y1, x0, x1) rows and a keep mask."""
    b = boxes[:, :4].trunc().long()
    x, y = b[:, 0].clamp(min=1), b[:, 1].clamp(min=1)
    ex, ey = b[:, 2].clamp(max=w), b[:, 3].clamp(max=h)
    keep = (ey > y - 1) & (ex > x - 1)
    return torch.stack([y - 1, ey, x - 1, ex], dim=1), keep


def _refine_inputs(integral, image_inds, boxes, w, h, size):
    rows, keep = _crop_boxes(boxes, w, h)
    if not bool(keep.all()):  # the library would misalign scores and boxes here; drop such boxes
        boxes, image_inds, rows = boxes[keep], image_inds[keep], rows[keep]
    data = area_crops(integral, image_inds, rows, size)
    return (data - 127.5) * 0.0078125, boxes, image_inds


def detect_faces(images: torch.Tensor, min_face_size: int, pnet, rnet, onet, thresholds, factor: float):
    """images: (B, H, W, 3) RGB uint8 on the detector's device. Returns (boxes, points) per image:
    numpy (n, 5) [x1, y1, x2, y2, prob] and (n, 5, 2), as facenet-pytorch's `detect_face`.

    cuDNN autotuning is off here: the R-Net and O-Net batches (candidate counts) change every call,
    and tuning each new shape cost more than the networks themselves."""
    cudnn = torch.backends.cudnn
    with torch.no_grad(), cudnn.flags(enabled=cudnn.enabled, benchmark=False, deterministic=cudnn.deterministic,
                                      allow_tf32=cudnn.allow_tf32):
        return _detect(images, min_face_size, pnet, rnet, onet, thresholds, factor)


def _detect(images, min_face_size, pnet, rnet, onet, thresholds, factor):
    imgs = images.permute(0, 3, 1, 2).float()
    batch, (h, w) = len(imgs), imgs.shape[2:4]
    device = imgs.device

    # Stage 1: P-Net over the pyramid (the library's code), NMS per scale, then per image.
    boxes, image_inds, picks, offset = [], [], [], 0
    for scale in pyramid_scales(h, w, min_face_size, factor):
        data = (imresample(imgs, (int(h * scale + 1), int(w * scale + 1))) - 127.5) * 0.0078125
        reg, probs = pnet(data)
        boxes_scale, inds_scale = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        boxes.append(boxes_scale)
        image_inds.append(inds_scale)
        picks.append(batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], inds_scale, 0.5) + offset)
        offset += boxes_scale.shape[0]
    pick = torch.cat(picks)
    boxes, image_inds = torch.cat(boxes)[pick], torch.cat(image_inds)[pick]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                         boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], dim=1)
    boxes = rerec(boxes)

    integral = integral_image(imgs) if len(boxes) else None
    # Stage 2: R-Net on 24x24 crops of every candidate.
    if len(boxes):
        data, boxes, image_inds = _refine_inputs(integral, image_inds, boxes, w, h, 24)
    if len(boxes):
        reg, scores = (o.permute(1, 0) for o in fixed_batch_process(data, rnet))
        ipass = scores[1] > thresholds[1]
        boxes = torch.cat((boxes[ipass, :4], scores[1, ipass].unsqueeze(1)), dim=1)
        image_inds, mv = image_inds[ipass], reg[:, ipass].permute(1, 0)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes = rerec(bbreg(boxes[pick], mv[pick]))
        image_inds = image_inds[pick]

    # Stage 3: O-Net on 48x48 crops: scores, box regression, landmarks; NMS by the "Min" overlap.
    points = torch.zeros(0, 5, 2, device=device)
    if len(boxes):
        data, boxes, image_inds = _refine_inputs(integral, image_inds, boxes, w, h, 48)
    if len(boxes):
        reg, landmarks, scores = (o.permute(1, 0) for o in fixed_batch_process(data, onet))
        ipass = scores[1] > thresholds[2]
        landmarks = landmarks[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], scores[1, ipass].unsqueeze(1)), dim=1)
        image_inds, mv = image_inds[ipass], reg[:, ipass].permute(1, 0)
        w_i, h_i = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * landmarks[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * landmarks[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, mv)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

    boxes, points, image_inds = boxes.cpu().numpy(), points.cpu().numpy(), image_inds.cpu().numpy()
    order = np.argsort(image_inds, kind="stable")
    starts = np.searchsorted(image_inds[order], np.arange(batch + 1))
    return ([boxes[order[starts[i]:starts[i + 1]]] for i in range(batch)],
            [points[order[starts[i]:starts[i + 1]]] for i in range(batch)])
