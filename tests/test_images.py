"""`StoredFrame`: the storage round trip made only where it is read gives the whole frame's round trip there."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from deepfake.images import StoredFrame, stored


def photo_frame(width: int, height: int) -> np.ndarray:
    """A natural image at an awkward size (not a multiple of JPEG's 16-pixel blocks), with sensor-like noise."""
    image = cv2.resize(np.ascontiguousarray(data.astronaut()[..., ::-1]), (width, height))
    noise = np.random.default_rng(0).normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(1920, 1080), (1279, 719), (481, 361)])
def test_a_window_is_exactly_the_whole_round_trip_where_asked(size):
    frame = photo_frame(*size)
    whole = stored(frame, 95)
    rng = np.random.default_rng(1)
    width, height = size
    for _ in range(60):
        view = StoredFrame(frame, 95)
        left, top = rng.uniform(-20, width - 40), rng.uniform(-20, height - 40)
        right, bottom = left + rng.uniform(8, width / 4), top + rng.uniform(8, height / 4)
        pixels = view.window(left, top, right, bottom)
        x0, y0 = max(0, int(np.floor(left))), max(0, int(np.floor(top)))
        x1, y1 = min(width, int(np.ceil(right))), min(height, int(np.ceil(bottom)))
        assert np.array_equal(pixels[y0:y1, x0:x1], whole[y0:y1, x0:x1])
        assert pixels.shape == frame.shape and not np.array_equal(pixels, whole)  # the rest: not made


def test_windows_that_overlap_stay_exact_and_whole_after_windows_is_the_round_trip():
    frame = photo_frame(1280, 720)
    whole = stored(frame, 95)
    view = StoredFrame(frame, 95)
    view.window(100, 100, 300, 300)
    pixels = view.window(250, 250, 450, 420)
    assert np.array_equal(pixels[100:300, 100:300], whole[100:300, 100:300])
    assert np.array_equal(pixels[250:420, 250:450], whole[250:420, 250:450])
    assert np.array_equal(view.whole(), whole)
    assert not np.array_equal(frame, whole)  # the control: the round trip changes pixels; the frame is left as it was
    assert np.array_equal(frame, photo_frame(1280, 720))


def test_lossless_storage_is_the_frame_itself():
    frame = photo_frame(320, 240)
    view = StoredFrame(frame, None)
    assert view.window(0, 0, 50, 50) is frame and view.whole() is frame
