"""Sampling frames from a video: which indices, and reading just those without holding the video in memory."""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.config import FrameSampling
from deepfake.errors import VideoError, first_line
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
    path: str | os.PathLike,
    indices: list[int],
    *,
    report: FrameReadReport | None = None,
    decoder_threads: int = 0,
    decoder: str = "pyav",
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (index, time in seconds, BGR frame) for each distinct requested index in order, decoding forward.

    Frames are upright (the container's rotation applied) and only one is held at a time; frames between
    samples are decoded but never converted. (Seeking instead re-decodes from the previous keyframe for every
    sample: 2-8x slower on this project's clips.) A decode error part way stops the iteration; `report.note`
    says where. `decoder`: pyav (FFmpeg through PyAV, frame-threaded) or opencv; both give the same pixels.
    """
    report = report if report is not None else FrameReadReport()
    indices = sorted(set(indices))
    report.requested = len(indices)
    read = _pyav_frames if decoder == "pyav" else _opencv_frames
    yield from read(Path(path), indices, report, decoder_threads)


def _stopped(report: FrameReadReport, position: int) -> None:
    report.note = f"decoding stopped at frame {position}; kept {report.read} of {report.requested} frames"


def _pyav_frames(path: Path, indices: list[int], report: FrameReadReport, threads: int):
    if not indices:
        return
    last = -1
    try:
        for position, seconds, frame in _pyav_skipping(path, indices, threads):
            report.read += 1
            last = position
            yield position, seconds, upright(frame.to_ndarray(format="bgr24"), frame.rotation)
        return
    except _Unsure:
        pass  # decoded again from the start, every frame, counting them: the reference way
    yield from _pyav_counting(path, [index for index in indices if index > last], report, threads)


class _Unsure(Exception):
    """The stream's timestamps or structure leave a frame's position in doubt: decode it the counting way."""


# Packets read ahead of the one being decoded, to rank its timestamp among those that follow it in decoding
# order: more than any H.264/HEVC reordering depth (at most 16 frames).
LOOKAHEAD = 24


def _pyav_skipping(path: Path, indices: list[int], threads: int):
    """(position, seconds, frame) of each sampled frame, decoding every frame others refer to but, of the rest, only
    the sampled ones: with B-frames no frame refers to (x264's default; 148 of the DFDC clip's 300 frames)
    that is about 40% less decoding. A frame's position is its timestamp's rank among the packets' timestamps,
    checked as frames come out in display order; any doubt raises _Unsure, before or after frames were given.
    A file FFmpeg cannot open, or one without video, raises VideoError as counting would."""
    import av

    container, stream = _open_video(path, threads)
    with container:
        context = stream.codec_context
        if not context.has_b_frames:
            raise _Unsure  # every frame is a reference frame: nothing to skip
        wanted, targets = set(indices), iter(indices)
        target = next(targets)
        stamps: list[int] = []  # sorted timestamps of the packets read so far
        ahead: deque = deque()

        def decode(packet):
            if packet is not None:
                # Frames no other frame refers to are dropped unless this one is sampled.
                context.skip_frame = "DEFAULT" if bisect.bisect_left(stamps, packet.pts) in wanted else "NONREF"
            for frame in context.decode(packet):
                if frame.pts is None:
                    raise _Unsure
                yield bisect.bisect_left(stamps, frame.pts), frame

        try:
            packets = container.demux(stream)
            while target is not None:
                packet = next(packets, None)
                if packet is not None and packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet is not None:
                    if packet.pts is None or packet.is_discard:
                        raise _Unsure
                    place = bisect.bisect_left(stamps, packet.pts)
                    if place < len(stamps) and stamps[place] == packet.pts:
                        raise _Unsure  # two packets with one timestamp
                    stamps.insert(place, packet.pts)
                    ahead.append(packet)
                    if len(ahead) <= LOOKAHEAD:
                        continue
                flushing = not ahead
                decoded = decode(None if flushing else ahead.popleft())  # None: the frames the decoder holds
                for position, frame in decoded:
                    if position > target:
                        raise _Unsure  # the sampled frame was skipped or never came out
                    if position == target:
                        # From the stream's time base: frames the flush returns carry none of their own.
                        yield position, float(frame.pts * stream.time_base), frame
                        target = next(targets, None)
                        if target is None:
                            return
                if flushing:
                    raise _Unsure  # the stream ended before every sampled frame: counting says where it stopped
        except av.FFmpegError:
            raise _Unsure from None


def _open_video(path: Path, threads: int):
    """(container, its first video stream) set for frame-threaded decoding; VideoError when there is none."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise VideoError(f"{path.name}: FFmpeg cannot open it ({first_line(error)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path.name}: no video stream")
    stream = container.streams.video[0]
    # Frame threads decode several frames at once: most of a 1080p clip's time goes to decoding.
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    return container, stream


def _pyav_counting(path: Path, indices: list[int], report: FrameReadReport, threads: int):
    import av

    container, stream = _open_video(path, threads)
    with container:
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        wanted = iter(indices)
        target = next(wanted, None)
        if target is None:
            return
        position = 0
        try:
            for frame in container.decode(stream):
                if position == target:
                    report.read += 1
                    seconds = frame.time if frame.time is not None else position / (rate or 1.0)
                    yield position, float(seconds), upright(frame.to_ndarray(format="bgr24"), frame.rotation)
                    target = next(wanted, None)
                    if target is None:
                        return  # no frame past the last sample is decoded
                position += 1
        except av.FFmpegError:
            pass  # a damaged stream: the frames before the damage are kept, and the note says so
        if target is not None:
            _stopped(report, position)


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """The frame as it is meant to be shown: `rotation` is the display matrix's angle, counter-clockwise."""
    turns = round(rotation / 90) % 4
    if turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, turns))


def _opencv_frames(path: Path, indices: list[int], report: FrameReadReport, threads: int):
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        raise VideoError(f"{path.name}: OpenCV cannot open it")
    try:
        position = 0
        for index in indices:
            while position < index:
                if not capture.grab():
                    _stopped(report, position)
                    return
                position += 1
            ok, frame = capture.read()
            position += 1
            if not ok or frame is None:
                _stopped(report, index)
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
