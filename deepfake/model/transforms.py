"""From face crop to network input: the one path for training, evaluation and inference.

Pixel-level changes (storage round trip, downscale) live in `deepfake.images`; training's random ones in
`deepfake.model.augment`. Everything ends here: crop (BGR uint8) -> RGB, input size, ImageNet normalisation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tensor(crops_bgr: list[np.ndarray], size: int) -> torch.Tensor:
    """`to_array` as a torch tensor."""
    import torch

    return torch.from_numpy(to_array(crops_bgr, size))


def to_array(crops_bgr: list[np.ndarray], size: int) -> np.ndarray:
    """Face crops (BGR uint8, as OpenCV reads them) to a normalised RGB (N, 3, size, size) float32 batch: the
    one input path for training, evaluation and inference (on ONNX Runtime without importing torch)."""
    batch = (
        np.stack(
            [
                cv2.cvtColor(
                    crop if crop.shape[0] == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA),
                    cv2.COLOR_BGR2RGB,
                )
                for crop in crops_bgr
            ]
        ).astype(np.float32)
        / 255.0
    )
    batch = (batch - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
