"""Pixel operations shared by the stages, training, evaluation and inference: one place for each.

`stored` is what makes training and inference see the same pixels: frames and face crops are written to
disk as JPEG (or lossless PNG) by the stages, and inference passes the frames and crops it makes in memory
through the very same encoder and decoder. `write_image` and `stored` use one codec call each, so a crop
read back from the faces stage and a crop made by `VideoDetector` are the same array.
"""

from __future__ import annotations

import io
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


# libjpeg codes 4:2:0 images in 16-pixel blocks, each on its own, and decoding smooths colour across a block's
# edge by a pixel or two. So a window on the 16-pixel grid reaching at least 16 pixels past what is read on each
# side decodes, where it is read, to exactly the pixels of the whole frame's round trip (tests/test_images.py).
JPEG_BLOCK = 16


class StoredFrame:
    """A decoded frame as the frames stage stores it and the faces stage reads it back (`stored`), made only
    where it is read: `window` makes the stored pixels of a rectangle (a face's surroundings) for the cost of
    that rectangle, `whole` of the whole frame. Both return the frame's pixels, exact wherever either was asked."""

    def __init__(self, frame: np.ndarray, jpeg_quality: int | None) -> None:
        self.frame, self.jpeg_quality = frame, jpeg_quality
        # PNG is lossless: the frame is its stored pixels.
        self._pixels: np.ndarray | None = frame if jpeg_quality is None else None
        self._whole = jpeg_quality is None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.frame.shape

    def whole(self) -> np.ndarray:
        if not self._whole:
            self._pixels, self._whole = stored(self.frame, self.jpeg_quality), True
        return self._pixels

    def window(self, left: float, top: float, right: float, bottom: float) -> np.ndarray:
        """The frame's pixels, made exact in this rectangle (frame pixels, clipped to the frame)."""
        if self._whole:
            return self._pixels
        height, width = self.frame.shape[:2]
        left, top = max(0, int(np.floor(left))), max(0, int(np.floor(top)))
        right, bottom = min(width, int(np.ceil(right))), min(height, int(np.ceil(bottom)))
        if self._pixels is None:
            self._pixels = self.frame.copy()
        if right <= left or bottom <= top:
            return self._pixels
        block = JPEG_BLOCK
        x0, y0 = max(0, left - block) // block * block, max(0, top - block) // block * block
        x1, y1 = min(width, -(-(right + block) // block) * block), min(height, -(-(bottom + block) // block) * block)
        if (x1 - x0) * (y1 - y0) >= 0.5 * width * height:
            return self.whole()  # most of the frame: one round trip of it all costs no more
        window = stored(np.ascontiguousarray(self.frame[y0:y1, x0:x1]), self.jpeg_quality)
        # Only the asked-for part is written: the window's own edge is not exact, and may overlap another's.
        self._pixels[top:bottom, left:right] = window[top - y0 : bottom - y0, left - x0 : right - x0]
        return self._pixels


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


def sharpen(image: np.ndarray, amount: float = 0.6, sigma: float = 1.0) -> np.ndarray:
    """Unsharp masking, as phones and face enhancers do: edges and detail finer than about `sigma` px
    exaggerated by `amount` of their difference from a blur."""
    soft = cv2.GaussianBlur(image, (0, 0), sigma)
    return np.clip(image.astype(np.float32) * (1 + amount) - soft.astype(np.float32) * amount, 0, 255).astype(np.uint8)


def h264(image: np.ndarray, crf: int) -> np.ndarray:
    """The pixels after one H.264 intra frame at `crf` (x264, 4:2:0; via PyAV, in memory): video compression's
    16-px macroblocks, deblocking and chroma loss, which JPEG's 8-px blocks only approximate.

    Even sides are needed for 4:2:0: an odd last row or column is cut and restored by edge replication.
    """
    import av

    height, width = image.shape[:2]
    even = np.ascontiguousarray(image[: height - height % 2, : width - width % 2])
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = even.shape[1], even.shape[0]
        stream.pix_fmt = "yuv420p"
        # One thread: deterministic output, and training's loader processes already share out the cores.
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1"}
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(even, format="bgr24")), *stream.encode()]:
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r", format="h264") as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="bgr24")
    return cv2.copyMakeBorder(decoded, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
