"""Pixel operations shared by the stages, training, evaluation and inference: one place for each.

`stored` is what makes training and inference see the same pixels: frames and face crops are written to
disk as JPEG (or lossless PNG) by the stages, and inference passes the frames and crops it makes in memory
through the very same encoder and decoder. `write_image` and `stored` use one codec call each, so a crop
read back from the faces stage and a crop made by `VideoDetector` are the same array.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from deepfake.errors import DataError


def encode(image: np.ndarray, jpeg_quality: int | None) -> tuple[str, np.ndarray]:
    """(file suffix, encoded bytes): JPEG at `jpeg_quality`, or PNG (lossless, fast level 1) when it is None."""
    suffix = image_suffix(jpeg_quality)
    options = (
        [cv2.IMWRITE_PNG_COMPRESSION, 1] if jpeg_quality is None else [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    )
    ok, data = cv2.imencode(suffix, image, options)
    if not ok:
        raise DataError(f"cannot encode a {image.shape} image as {suffix}")
    return suffix, data


def stored(image: np.ndarray, jpeg_quality: int | None) -> np.ndarray:
    """The pixels a reader gets back after `write_image(..., jpeg_quality)`: the storage round trip, in memory."""
    if jpeg_quality is None:
        return image  # PNG is lossless
    return cv2.imdecode(encode(image, jpeg_quality)[1], cv2.IMREAD_COLOR)


def image_suffix(jpeg_quality: int | None) -> str:
    return ".png" if jpeg_quality is None else ".jpg"


def write_image(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int | None) -> None:
    """Write `image` with the suffix `image_suffix(jpeg_quality)` gives (the caller names the file)."""
    _, data = encode(image, jpeg_quality)
    with open(path, "wb") as handle:
        handle.write(data.tobytes())


def read_image(path: str | os.PathLike) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read the image (missing, empty or not an image)")
    return image


def down_up(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrunk by `factor` and enlarged back: the softness of an upscaled low-resolution original."""
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(8, round(width * factor)), max(8, round(height * factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
