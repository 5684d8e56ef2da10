"""Reading videos and face photos with OpenCV: probing, content hashing and writing clips."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import VideoError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
# Still photos are one-frame media: the same frames and faces stages turn them into face crops.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

# OpenCV's frame count comes from container metadata and can overshoot by a few frames on valid files,
# so a file is only called truncated when none of the last few frames it promises can be decoded.
_TAIL_FRAMES_TRIED = 8


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    header_frames: int = 0  # what the container claims; more than `frames` when the tail does not decode

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_media_file(path: Path) -> bool:
    return is_video_file(path) or is_image_file(path)


def media_kind(path: str | os.PathLike) -> str:
    return "photo" if is_image_file(Path(path)) else "video"


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """A photo as a BGR array (EXIF orientation applied); VideoError when it is empty or cannot be decoded."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError("not a readable image: OpenCV cannot decode it (corrupt, truncated or not an image)")
    return image


def probe_media(path: str | os.PathLike, *, min_frames: int = 2) -> VideoInfo:
    """probe_video for a video; for a photo, a one-frame VideoInfo once it decodes (min_frames does not apply)."""
    if media_kind(path) == "photo":
        height, width = read_photo(path).shape[:2]
        return VideoInfo(frames=1, fps=0.0, width=width, height=height, header_frames=1)
    return probe_video(path, min_frames=min_frames)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Content hash, streamed so a large video never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def probe_video(path: str | os.PathLike, *, min_frames: int = 2, check_tail: bool = True) -> VideoInfo:
    """Open a video and check it decodes from its first to (about) its last frame.

    Raises VideoError with the reason when the file is empty, not a video, has no video stream,
    has fewer than `min_frames` frames, or is cut short. Without `check_tail` the header's frame count is
    taken as it is (no decode from the last keyframe), and a cut-short file is found only by reading it.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("not a readable video: OpenCV cannot open it (not a video, no video stream, or truncated)")
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            raise VideoError("no video stream (audio-only or unsupported codec)")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoError("no decodable frame (corrupt data or unsupported codec)")
        # Orientation metadata is applied by OpenCV when decoding, so report the size frames really have.
        height, width = frame.shape[:2]
        if frames <= 0:
            frames = _count_frames(capture)
        decodable = _frames_decodable(capture, frames) if check_tail else frames
        if decodable < frames - _TAIL_FRAMES_TRIED:
            raise VideoError(
                f"truncated or corrupt: header promises {frames} frames but decoding stops at frame {decodable}"
            )
        header_frames, frames = frames, min(frames, decodable)
        if frames < min_frames:
            raise VideoError(f"too few frames: {frames} (at least {min_frames} needed)")
        if fps <= 0 or not np.isfinite(fps):
            raise VideoError("no frame rate in the container")
        return VideoInfo(frames=frames, fps=fps, width=int(width), height=int(height), header_frames=header_frames)
    finally:
        capture.release()


def _count_frames(capture: cv2.VideoCapture) -> int:
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    count = 0
    while capture.grab():
        count += 1
    return count


def _frames_decodable(capture: cv2.VideoCapture, frames: int) -> int:
    """How far decoding gets, tried at the last few frames the header promises.

    Seeking past the end of a cut-short stream lands on its last frame, so the position after the read,
    not the read's success, tells how far the data goes.
    """
    reached = 1  # the first frame has been read already
    for index in range(frames - 1, max(-1, frames - 1 - _TAIL_FRAMES_TRIED), -1):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        if ok and frame is not None:
            reached = max(reached, int(capture.get(cv2.CAP_PROP_POS_FRAMES)))
            if reached > index:
                break
    return reached


def write_video(path: str | os.PathLike, frames: list[np.ndarray], fps: float) -> None:
    """Write BGR frames as an MPEG-4 Part 2 mp4 (the codec OpenCV's wheels can always write)."""
    if not frames:
        raise ValueError("no frames to write")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    # A codec OpenCV cannot use leaves the writer closed and every write() silently does nothing.
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot open an mp4v video writer")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
