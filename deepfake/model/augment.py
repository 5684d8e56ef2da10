"""Training-time image changes: the degradations real uploads suffer, and self-blended pseudo-fakes.

All take and return BGR uint8 crops and draw from an explicit numpy Generator, so a sample's augmentation
depends only on its seed: the same run gives the same images whatever the worker scheduling, which is what
lets an interrupted training resume to the identical result.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from deepfake.images import down_up, h264, sharpen, stored


@dataclass(frozen=True)
class Degrade:
    """Flip, colour jitter, a small shift, downscale-upscale, sharpening, sensor noise, JPEG and H.264
    recompression, each by chance."""

    flip: float = 0.5
    colour: float = 0.5
    # Uploads are often recompressed hard or upscaled from a small original; half the training faces are, so that
    # a soft or blocky face alone does not read as fake (a real face and its pseudo-fake share the degradation).
    jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    rescale: float = 0.5
    rescale_factor: tuple[float, float] = (0.3, 0.9)
    shift: float = 0.3
    max_shift: float = 0.04
    # Video faces carry H.264's artefacts, photos do not: re-encoding (both faces of a pair alike) keeps
    # "looks like a video frame" from meaning anything, whichever kind the real faces come from.
    h264: float = 0.0
    h264_crf: tuple[int, int] = (23, 38)
    # Phones, face enhancers (GFPGAN, CodeFormer) and talking-head generators sharpen faces; without this a sharp
    # face reads as real, a soft one as fake (blending mostly softens the pasted face), and enhanced fakes pass.
    sharpen: float = 0.0
    sharpen_amount: tuple[float, float] = (0.3, 2.0)
    sharpen_sigma: tuple[float, float] = (0.7, 2.0)
    # Cameras differ in noise (sensor, gain, denoising) far more than reals differ from fakes; without this a few
    # grey levels of noise move a face's fake logit by several units, so every source gets its own offset.
    noise: float = 0.0
    noise_sigma: tuple[float, float] = (1.0, 8.0)

    def __call__(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.with_seam(crop, None, rng)[0]

    def with_seam(
        self, crop: np.ndarray, seam: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The degraded crop, and `seam` (a map over the crop's pixels, or None) flipped and shifted as the crop
        was; the same draws as `__call__`, so a pair degraded alike stays alike."""
        if rng.random() < self.flip:
            crop = crop[:, ::-1]
            seam = None if seam is None else np.ascontiguousarray(seam[:, ::-1])
        if rng.random() < self.colour:
            crop = jitter_colour(crop, rng, gain=0.1, brightness=15, hue=4, saturation=0.15)
        if rng.random() < self.shift:
            matrix = shift_matrix(crop.shape[:2], rng, self.max_shift)
            crop = warp(crop, matrix)
            seam = None if seam is None else warp(seam, matrix)
        if rng.random() < self.rescale:
            crop = down_up(crop, rng.uniform(*self.rescale_factor))
        if self.sharpen and rng.random() < self.sharpen:  # drawn only when enabled: other settings' draws unchanged
            crop = sharpen(crop, rng.uniform(*self.sharpen_amount), rng.uniform(*self.sharpen_sigma))
        if self.noise and rng.random() < self.noise:  # before compression, as a camera's noise is
            crop = sensor_noise(crop, rng.uniform(*self.noise_sigma), rng)
        if rng.random() < self.jpeg:
            crop = stored(crop, int(rng.integers(*self.jpeg_quality)))
        if self.h264 and rng.random() < self.h264:  # drawn only when enabled: other settings' draws unchanged
            crop = h264(crop, int(rng.integers(self.h264_crf[0], self.h264_crf[1] + 1)))
        return np.ascontiguousarray(crop), seam


def sensor_noise(crop: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of `sigma` grey levels, mostly shared by the channels (brightness noise) with a third as
    much in each channel alone (colour noise), as a demosaiced camera frame carries."""
    height, width = crop.shape[:2]
    noise = rng.normal(0.0, sigma, (height, width, 1)) + rng.normal(0.0, sigma / 3, (height, width, 3))
    return np.clip(crop + noise, 0, 255).astype(np.uint8)


def jitter_colour(
    crop: np.ndarray, rng: np.random.Generator, *, gain: float, brightness: float, hue: float, saturation: float
) -> np.ndarray:
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue)) % 180
    hsv[..., 1] *= rng.uniform(1 - saturation, 1 + saturation)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    out = out * rng.uniform(1 - gain, 1 + gain, size=3) + rng.uniform(-brightness, brightness)
    return np.clip(out, 0, 255).astype(np.uint8)


def shift_matrix(shape: tuple[int, int], rng: np.random.Generator, fraction: float) -> np.ndarray:
    """A move by up to `fraction` of the image's size each way."""
    height, width = shape
    dx, dy = rng.uniform(-fraction, fraction, size=2) * (width, height)
    return np.float32([[1, 0, dx], [0, 1, dy]])


def warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT101)


def smooth(image: np.ndarray, rng: np.random.Generator, colour: tuple[float, float]) -> np.ndarray:
    """Noise and fine texture averaged away, edges kept: a bilateral filter only averages across grey-level steps
    smaller than about `colour`, so skin turns smooth while eyes, lips and the face's outline stay crisp."""
    return cv2.bilateralFilter(image, int(rng.choice([5, 7, 9])), rng.uniform(*colour), 5.0)


def bend(image: np.ndarray, rng: np.random.Generator, amount: float, grid: int = 4) -> np.ndarray:
    """The image resampled through a smooth random displacement field moving each point by up to `amount` px."""
    height, width = image.shape[:2]
    field = cv2.resize(
        rng.uniform(-amount, amount, size=(grid, grid, 2)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )  # linear: no overshoot past `amount`
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(image, xs + field[..., 0], ys + field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


# ---------------------------------------------------------------- self-blended images


@dataclass(frozen=True)
class SelfBlend:
    """A pseudo-fake from one real face (Shiohara & Yamasaki, CVPR 2022): a colour- and geometry-jittered
    copy of the face blended back over it inside a soft mask built from the landmarks.

    The model sees the traces blending leaves (a boundary, a colour and sharpness mismatch) without any one
    manipulation method's fingerprint. The source is blurred, sharpened or resampled at a lower resolution
    (the paper's source augmentation); sharpening too, so that "blurry face" alone never means fake. It may
    also be smoothed with edges kept: a generated face lacks the camera noise and skin texture around it
    while its eyes and mouth stay crisp, a mismatch plain blur does not make.
    """

    scale: tuple[float, float] = (0.95, 1.05)
    max_shift: float = 0.03
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    downscale: tuple[float, float] = (0.25, 0.7)
    # Chance the source is sharpened; blur, smoothing and a lower resolution share what is left of 85% in their
    # proportions. Swaps through a face enhancer paste a face sharper than the frame around it, not softer.
    sharpen: float = 0.15
    smooth: float = 0.2  # chance of edge-preserving smoothing (bilateral filter)...
    smooth_colour: tuple[float, float] = (20.0, 60.0)  # ...averaging across grey-level steps up to about this size
    bend: float = 0.5  # chance the source's inner geometry is bent by a smooth random displacement field...
    bend_amount: tuple[float, float] = (0.02, 0.1)  # ...moving points by up to this many eye distances
    mask_blur: tuple[float, float] = (0.03, 0.2)  # the edge's Gaussian sigma in eye distances: crisp to very soft
    # Chance the mask's outline is made irregular by a fine random displacement field: swappers paste through
    # segmentation masks (DeepFaceLab's XSeg, face parsers) that follow hair, hands and shadows, not a smooth hull.
    mask_bend: float = 0.0
    mask_bend_amount: tuple[float, float] = (0.05, 0.15)  # ...moving the outline by up to this many eye distances
    amplitudes: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)

    def __call__(
        self,
        crop: np.ndarray,
        landmarks: np.ndarray,
        rng: np.random.Generator,
        donor: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """`donor`, another person's (crop, landmarks): their face is pasted instead of this face's own copy."""
        return self.with_seam(crop, landmarks, rng, donor)[0]

    def with_seam(
        self,
        crop: np.ndarray,
        landmarks: np.ndarray,
        rng: np.random.Generator,
        donor: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The pseudo-fake, and where its seam runs: Face X-ray's boundary 4 m (1 - m) of the mask's shape m
        (before its blend amplitude), 1 where the pasted face and the frame mix half and half, 0 where either
        is untouched. The same draws as `__call__`."""
        if donor is None:
            source = self._source(crop, landmarks, rng)
        else:
            source = self._swapped(crop, landmarks, *donor, rng)
        shape, amplitude = self._mask(crop.shape[:2], landmarks, rng)
        mask = (shape * amplitude)[..., None]
        blended = source.astype(np.float32) * mask + crop.astype(np.float32) * (1 - mask)
        return np.clip(blended, 0, 255).astype(np.uint8), 4 * shape * (1 - shape)

    def _source(self, crop: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        source = self._resample(jitter_colour(crop, rng, gain=0.15, brightness=20, hue=6, saturation=0.2), rng)
        height, width = crop.shape[:2]
        scale = rng.uniform(*self.scale)
        dx, dy = rng.uniform(-self.max_shift, self.max_shift, size=2) * (width, height)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
        matrix[:, 2] += (dx, dy)
        source = cv2.warpAffine(source, matrix, (width, height), borderMode=cv2.BORDER_REFLECT101)
        if rng.random() < self.bend:
            # A generated face never lines up with the one beneath it everywhere: eyes, mouth and jaw drift apart
            # locally (re-enactment, imperfect alignment), not only by one global scale and shift.
            source = bend(source, rng, rng.uniform(*self.bend_amount) * eye_distance(landmarks))
        return source

    def _swapped(
        self,
        crop: np.ndarray,
        landmarks: np.ndarray,
        donor: np.ndarray,
        donor_landmarks: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Another person's face on this one's landmarks, its colours matched inside the face (as face swappers
        do), made with the same source changes as a self-blend: what is left is a different skin, texture and
        capture inside the mask than around it (the blended images of Face X-ray, Li et al., CVPR 2020)."""
        aligned = align_face(donor, donor_landmarks, landmarks, crop.shape[:2])
        inside = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillConvexPoly(inside, cv2.convexHull(face_outline(landmarks, rng).astype(np.int32)), 1)
        source = self._resample(match_colour(aligned, crop, inside.astype(bool)), rng)
        if rng.random() < self.bend:
            source = bend(source, rng, rng.uniform(*self.bend_amount) * eye_distance(landmarks))
        return source

    def _resample(self, source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        soft = (0.85 - self.sharpen) / 0.7  # 1 at the default 15% sharpened: the shares below as measured
        change = np.searchsorted(
            np.cumsum([0.25 * soft, self.sharpen, self.smooth * soft, 0.25 * soft]), rng.random(), "right"
        )
        if change == 0:
            source = cv2.GaussianBlur(source, (0, 0), rng.uniform(*self.blur_sigma))
        elif change == 1:
            source = sharpen(source)
        elif change == 2:
            source = smooth(source, rng, self.smooth_colour)
        elif change == 3:
            # Generated faces are made at a lower resolution than the frame they are pasted into.
            source = down_up(source, rng.uniform(*self.downscale))
        return source

    def rendered(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The whole crop as a talking-head generator renders a face: made at a lower resolution and upscaled
        (by chance), noise and skin texture smoothed away with edges kept, often sharpened after (face
        enhancers). No blend and no boundary: a head generated whole leaves none, only this too-clean look,
        which blended pseudo-fakes never teach and real footage, noisy or compressed, does not have."""
        if rng.random() < 0.5:
            crop = down_up(crop, rng.uniform(*self.downscale))
        crop = smooth(smooth(crop, rng, self.smooth_colour), rng, self.smooth_colour)  # smoother than one pass
        return sharpen(crop) if rng.random() < 0.5 else crop

    def _mask(
        self, shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, float]:
        """The mask's shape (0 to 1, soft-edged) and the blend amplitude it is pasted with."""
        points = face_outline(landmarks, rng)
        mask = np.zeros(shape, np.float32)
        if rng.random() < 0.5:
            cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.int32)), 1.0)
        else:
            (cx, cy), (w, h), angle = cv2.minAreaRect(points.astype(np.float32))
            cv2.ellipse(mask, ((cx, cy), (w * 1.05, h * 1.05), angle), 1.0, -1)
        if rng.random() < 0.5:
            size = int(rng.integers(3, 15))
            kernel = np.ones((size, size), np.uint8)
            mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
        if self.mask_bend and rng.random() < self.mask_bend:  # drawn only when enabled: other draws unchanged
            mask = bend(mask, rng, rng.uniform(*self.mask_bend_amount) * eye_distance(landmarks), grid=8)
        # Swaps are pasted through anything from a crisp hull to a wide feather: the width scales with the face.
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(*self.mask_blur) * eye_distance(landmarks))
        return mask, float(rng.choice(self.amplitudes))


def face_outline(landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points around the face from MTCNN's five landmarks: those plus forehead, chin and cheeks, pushed out
    0.6-1.0 eye distances so the mask covers the face, not just the eyes-nose-mouth triangle."""
    points = np.asarray(landmarks, np.float32).reshape(5, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    distance = eye_distance(points)
    across = (right_eye - left_eye) / distance
    down = np.array([-across[1], across[0]], np.float32)
    centre = points.mean(axis=0)
    reach = lambda: rng.uniform(0.6, 1.0) * distance  # noqa: E731 - a fresh distance per point
    extra = [
        (left_eye + right_eye) / 2 - down * reach(),  # forehead
        (mouth_left + mouth_right) / 2 + down * reach(),  # chin
        left_eye - across * reach() * 0.8,
        right_eye + across * reach() * 0.8,  # temples
        mouth_left - across * reach() * 0.6,
        mouth_right + across * reach() * 0.6,  # cheeks
        centre + (down - across) * reach(),
        centre + (down + across) * reach(),  # jaw
    ]
    return np.vstack([points, np.array(extra, np.float32)])


def eye_distance(landmarks: np.ndarray) -> float:
    left_eye, right_eye = np.asarray(landmarks, np.float32).reshape(5, 2)[:2]
    return max(1.0, float(np.linalg.norm(right_eye - left_eye)))


def align_face(image: np.ndarray, landmarks: np.ndarray, onto: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`image` rotated, scaled and moved so that its five landmarks best cover `onto` (least squares)."""
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, np.float32).reshape(5, 2), np.asarray(onto, np.float32).reshape(5, 2)
    )
    if matrix is None:  # degenerate landmarks: no similarity fits, keep the image where it is
        matrix = np.float32([[1, 0, 0], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, (shape[1], shape[0]), borderMode=cv2.BORDER_REFLECT101)


def match_colour(image: np.ndarray, reference: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: each Lab channel of `image` shifted and scaled so that inside `region` its mean
    and spread are the reference's there."""
    if not region.any():
        return image
    source = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    target = cv2.cvtColor(reference, cv2.COLOR_BGR2LAB).astype(np.float32)
    mean_s, std_s = source[region].mean(axis=0), source[region].std(axis=0) + 1e-3
    mean_t, std_t = target[region].mean(axis=0), target[region].std(axis=0)
    moved = (source - mean_s) * (std_t / std_s) + mean_t
    return cv2.cvtColor(np.clip(moved, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def pose(landmarks: np.ndarray) -> np.ndarray:
    """The five landmarks centred and scaled to unit eye distance: faces turned alike have nearby poses."""
    points = np.asarray(landmarks, np.float32).reshape(5, 2)
    return ((points - points.mean(axis=0)) / eye_distance(points)).ravel()
