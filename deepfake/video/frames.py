"""Sampling frames from a video: which indices, and reading just those without holding the video in memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.config import FrameSampling
from deepfake.errors import VideoError
from deepfake.video.probe import read_photo


def sample_frame_indices(frame_count: int, fps: float, sampling: FrameSampling) -> list[int]:
    """Sorted, distinct frame indices spread over the whole video (all frames when it is shorter)."""
    if frame_count <= 0:
        return []
    if sampling.per_second is not None:
        duration = frame_count / fps if fps > 0 else 0.0
        wanted = max(1, int(round(duration * sampling.per_second)))
    else:
        wanted = sampling.per_video
    if wanted >= frame_count:
        return list(range(frame_count))
    # Centre each sample in its slice of the video, so the first and last frames (often fades) are avoided.
    positions = (np.arange(wanted) + 0.5) * frame_count / wanted
    return sorted(set(np.minimum(frame_count - 1, positions.astype(int)).tolist()))


@dataclass
class FrameReadReport:
    requested: int = 0
    read: int = 0
    note: str = ""


def read_frames(
    path: str | os.PathLike, indices: list[int], *, report: FrameReadReport | None = None, decoder_threads: int = 0
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (index, time in seconds, BGR frame) for each distinct requested index in order, decoding forward.

    Frames between samples are grabbed, not converted, and only one frame is held at a time. (Seeking with
    CAP_PROP_POS_FRAMES re-decodes from the previous keyframe for every sample: 2-8x slower on this
    project's clips.) A decode error part way stops the iteration; `report.note` says where.
    """
    report = report if report is not None else FrameReadReport()
    indices = sorted(set(indices))
    report.requested = len(indices)
    params = [cv2.CAP_PROP_N_THREADS, decoder_threads] if decoder_threads > 0 else []
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        raise VideoError(f"{Path(path).name}: OpenCV cannot open it")
    try:
        position = 0
        for index in indices:
            while position < index:
                if not capture.grab():
                    report.note = f"decoding stopped at frame {position}; kept {report.read} of {len(indices)} frames"
                    return
                position += 1
            ok, frame = capture.read()
            position += 1
            if not ok or frame is None:
                report.note = f"decoding stopped at frame {index}; kept {report.read} of {len(indices)} frames"
                return
            report.read += 1
            # The frame's own timestamp, right for variable-frame-rate video where index / fps is not.
            yield index, capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, frame
    finally:
        capture.release()


def read_still(
    path: str | os.PathLike, report: FrameReadReport | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """A photo as the one frame of a one-frame video: (0, 0.0, BGR image)."""
    report = report if report is not None else FrameReadReport()
    report.requested = 1
    image = read_photo(path)
    report.read = 1
    yield 0, 0.0, image
