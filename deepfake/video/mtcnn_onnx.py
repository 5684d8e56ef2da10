"""MTCNN (Zhang et al. 2016) on ONNX Runtime: facenet-pytorch's networks and weights, its detection steps in
NumPy.

The steps follow facenet-pytorch's `detect_face` (image pyramid, P-Net proposals, R-Net and O-Net
refinement, the same thresholds, regressions and non-maximum suppressions), so the faces found agree with
it (tests/test_mtcnn_onnx.py: same faces, boxes within IoU 0.9, probabilities within 0.01). What differs is
the cost: the three networks run on ONNX Runtime, and R-Net's and O-Net's inputs are cut with one
OpenCV resize per candidate rather than a PyTorch call each. `detect` has facenet-pytorch's `MTCNN.detect`
signature, so `deepfake.video.face_detection` drives either.
"""

from __future__ import annotations

from importlib.metadata import version

import cv2
import numpy as np

from deepfake.onnx_runtime import cached_export, export_module, file_key, session

THRESHOLDS = (0.6, 0.7, 0.7)  # facenet-pytorch's defaults for P-Net, R-Net, O-Net
FACTOR = 0.709  # pyramid scale step


def mtcnn_onnx_files() -> dict[str, str]:
    """The three networks as ONNX files, exported once from the weights inside facenet-pytorch."""
    key = file_key("mtcnn", version("facenet-pytorch"), "opset17")
    dynamic = {"image": {0: "n", 2: "h", 3: "w"}}

    def exporter(name: str, size: int, outputs: list[str]):
        def export(path):
            import torch
            from facenet_pytorch.models import mtcnn

            network = {"pnet": mtcnn.PNet, "rnet": mtcnn.RNet, "onet": mtcnn.ONet}[name]()
            axes = dynamic if name == "pnet" else {"image": {0: "n"}}
            axes = {**axes, **{out: {0: "n"} for out in outputs}}
            export_module(network, torch.zeros(1, 3, size, size), path, ["image"], outputs, axes)

        return export

    return {
        "pnet": str(cached_export("mtcnn-pnet", key, exporter("pnet", 24, ["reg", "prob"]))),
        "rnet": str(cached_export("mtcnn-rnet", key, exporter("rnet", 24, ["reg", "prob"]))),
        "onet": str(cached_export("mtcnn-onet", key, exporter("onet", 48, ["reg", "points", "prob"]))),
    }


class OnnxMTCNN:
    """Face boxes, probabilities and five landmarks per image, as facenet-pytorch's `MTCNN(keep_all=True)`."""

    def __init__(self, min_face_size: int = 20, threads: int = 0) -> None:
        self.min_face_size = min_face_size
        files = mtcnn_onnx_files()
        self.pnet, self.rnet, self.onet = (session(files[name], threads) for name in ("pnet", "rnet", "onet"))

    def detect(self, images, landmarks: bool = True):
        """`images`: one RGB uint8 image or a batch of one size (B, H, W, 3). Per image: boxes (N, 4) or None,
        probabilities, landmarks (N, 5, 2) or None; the largest face first."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        found = detect_batch(self, images.astype(np.float32))
        boxes, probs, points = [], [], []
        for image_boxes, image_points in found:
            if len(image_boxes) == 0:
                boxes.append(None)
                probs.append([None])
                points.append(None)
                continue
            order = np.argsort((image_boxes[:, 2] - image_boxes[:, 0]) * (image_boxes[:, 3] - image_boxes[:, 1]))[::-1]
            boxes.append(image_boxes[order, :4])
            probs.append(image_boxes[order, 4])
            points.append(image_points[order])
        return (boxes, probs, points) if landmarks else (boxes, probs)


def detect_batch(detector: OnnxMTCNN, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes (N, 5) with probability last, landmarks (N, 5, 2)) per image of a float32 (B, H, W, 3) batch."""
    count, height, width = images.shape[:3]
    empty = (np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32))

    # Stage 1: P-Net slides over an image pyramid whose largest level finds faces of min_face_size.
    proposals, owners = [], []
    for scale in _scales(height, width, detector.min_face_size):
        size = (int(width * scale + 1), int(height * scale + 1))
        level = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images])
        reg, prob = detector.pnet.run(None, {"image": _normalise(level).transpose(0, 3, 1, 2)})
        boxes, image_ids = _proposals(reg, prob[:, 1], scale, THRESHOLDS[0])
        keep = _nms_per_image(boxes[:, :4], boxes[:, 4], image_ids, 0.5)
        proposals.append(boxes[keep])
        owners.append(image_ids[keep])
    if not proposals:
        return [empty] * count
    boxes, image_ids = np.concatenate(proposals), np.concatenate(owners)
    keep = _nms_per_image(boxes[:, :4], boxes[:, 4], image_ids, 0.7)
    boxes, image_ids = boxes[keep], image_ids[keep]
    side = boxes[:, 2:4] - boxes[:, 0:2]
    boxes = np.concatenate(
        [boxes[:, 0:2] + boxes[:, 5:7] * side, boxes[:, 2:4] + boxes[:, 7:9] * side, boxes[:, 4:5]], 1
    )
    boxes = _square(boxes)

    # Stage 2: R-Net rescores each candidate at 24 px and refines its box.
    if len(boxes):
        patches, boxes, image_ids = _patches(images, boxes, image_ids, 24)
        reg, prob = detector.rnet.run(None, {"image": patches})
        passed = prob[:, 1] > THRESHOLDS[1]
        boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], 1)
        image_ids, reg = image_ids[passed], reg[passed]
        keep = _nms_per_image(boxes[:, :4], boxes[:, 4], image_ids, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        image_ids = image_ids[keep]

    # Stage 3: O-Net at 48 px: final probability, box and the five landmarks.
    points = np.zeros((0, 5, 2), np.float32)
    if len(boxes):
        patches, boxes, image_ids = _patches(images, boxes, image_ids, 48)
        reg, marks, prob = detector.onet.run(None, {"image": patches})
        passed = prob[:, 1] > THRESHOLDS[2]
        boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], 1)
        image_ids, reg, marks = image_ids[passed], reg[passed], marks[passed]
        box_w = boxes[:, 2:3] - boxes[:, 0:1] + 1
        box_h = boxes[:, 3:4] - boxes[:, 1:2] + 1
        points = np.stack([box_w * marks[:, :5] + boxes[:, 0:1] - 1, box_h * marks[:, 5:] + boxes[:, 1:2] - 1], 2)
        boxes = _regress(boxes, reg)
        keep = _nms_per_image(boxes[:, :4], boxes[:, 4], image_ids, 0.7, by_smaller=True)
        boxes, image_ids, points = boxes[keep], image_ids[keep], points[keep]
    return [(boxes[image_ids == n], points[image_ids == n]) for n in range(count)] if len(boxes) else [empty] * count


def _scales(height: int, width: int, min_face_size: int) -> list[float]:
    scale = 12.0 / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= FACTOR
        shorter *= FACTOR
    return scales


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return ((pixels - 127.5) * 0.0078125).astype(np.float32)


def _proposals(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """P-Net's cells above the threshold as boxes in image pixels: (x1, y1, x2, y2, score, 4 regressions)."""
    image_ids, rows, cols = np.nonzero(prob >= threshold)
    cells = np.stack([cols, rows], 1).astype(np.float32)  # 12 px windows at a stride of 2
    top_left = np.floor((2 * cells + 1) / scale)
    bottom_right = np.floor((2 * cells + 12) / scale)
    offsets = reg[image_ids, :, rows, cols]
    boxes = np.concatenate([top_left, bottom_right, prob[image_ids, rows, cols][:, None], offsets], 1)
    return boxes.astype(np.float32), image_ids


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    size = np.concatenate([boxes[:, 2:4] - boxes[:, 0:2] + 1] * 2, 1)
    out = boxes.copy()
    out[:, :4] = boxes[:, :4] + reg[:, :4] * size
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square about its centre."""
    out = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    out[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _patches(
    images: np.ndarray, boxes: np.ndarray, image_ids: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each box's pixels (clipped to its image, as facenet-pytorch does) resized to size x size; boxes with
    nothing inside their image are dropped."""
    height, width = images.shape[1:3]
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    x1, y1 = np.maximum(corners[:, 0], 1), np.maximum(corners[:, 1], 1)
    x2, y2 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
    inside = (x2 > x1 - 1) & (y2 > y1 - 1)
    patches = [
        cv2.resize(images[n, top - 1 : bottom, left - 1 : right], (size, size), interpolation=cv2.INTER_AREA)
        for n, left, top, right, bottom in zip(image_ids[inside], x1[inside], y1[inside], x2[inside], y2[inside])
    ]
    batch = _normalise(np.stack(patches)).transpose(0, 3, 1, 2) if patches else np.zeros((0, 3, size, size), np.float32)
    return np.ascontiguousarray(batch), boxes[inside], image_ids[inside]


def _nms_per_image(
    boxes: np.ndarray, scores: np.ndarray, image_ids: np.ndarray, threshold: float, *, by_smaller: bool = False
) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each image, best score first. Overlap is
    intersection over union (torchvision's `batched_nms`), or over the smaller box with `by_smaller`
    (facenet-pytorch's final "Min" step, which counts pixels inclusively)."""
    keep = []
    for image in np.unique(image_ids):
        members = np.nonzero(image_ids == image)[0]
        keep.extend(members[_nms(boxes[members], scores[members], threshold, by_smaller)])
    return np.asarray(sorted(keep, key=lambda i: -scores[i]), dtype=np.int64)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_smaller: bool) -> list[int]:
    pad = 1.0 if by_smaller else 0.0
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + pad) * (y2 - y1 + pad)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + pad) * np.maximum(
            0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + pad
        )
        overlap = inter / (np.minimum(area[best], area[rest]) if by_smaller else area[best] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return keep
