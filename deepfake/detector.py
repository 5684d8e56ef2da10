"""Is this video a deepfake? The whole path from a video file to a verdict, with the stages' own functions.

Frames are sampled and decoded as the frames stage does, faces found and cropped as the faces stage does,
each crop scored by the classifier, face scores calibrated with the temperature fitted at evaluation, and
aggregated into a video score compared with the threshold chosen on the validation split. The video is
streamed: a chunk of frames at a time is decoded, searched for faces and scored, then let go.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from deepfake.aggregate import AggregationParams, video_scores
from deepfake.faces import DETECTION_BATCH, FaceParams, crop_with_margin, detect_faces_batch, link_tracks, load_detector
from deepfake.frames import FrameReadReport, FrameSampling, read_frames, sample_frame_indices
from deepfake.metrics import sigmoid
from deepfake.models import face_logits
from deepfake.video import VideoError, probe_video

VERDICTS = ("REAL", "FAKE", "NO_FACE", "ERROR")
# Decoded frames held at once: up to DETECTION_BATCH, and no more than 8 full-HD frames' worth (50 MB),
# which keeps a 1080p video's peak memory ~160 MB lower than 16 frames at no cost in speed.
CHUNK_BYTES = 8 * 1920 * 1080 * 3
RESULT_COLUMNS = ["video", "verdict", "p_fake", "threshold", "frames", "frames_with_face", "faces", "tracks", "reason"]


@dataclass(frozen=True)
class DetectorConfig:
    """Everything besides the weights that turns a video into a verdict: saved with the registered model."""

    backbone: str
    input_size: int = 224
    temperature: float = 1.0
    threshold: float = 0.5
    flip: bool = True
    batch_size: int = 16
    sampling: FrameSampling = field(default_factory=FrameSampling)
    faces: FaceParams = field(default_factory=FaceParams)
    aggregation: AggregationParams = field(default_factory=AggregationParams)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        data = dict(data)
        return cls(**data | {"sampling": FrameSampling(**data["sampling"]), "faces": FaceParams(**data["faces"]),
                             "aggregation": AggregationParams(**data["aggregation"])})


def json_row(row: dict) -> dict:
    """A result row for JSON: a missing score (NaN) becomes null."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}


def result_table(rows: list[dict]) -> pd.DataFrame:
    """Result rows as a table for CSV, each row's per-person `tracks` as a JSON cell."""
    table = pd.DataFrame(rows)
    if "tracks" in table:
        table["tracks"] = table["tracks"].map(json.dumps)
    return table


@dataclass(eq=False)
class FaceEvidence:
    """One face the verdict rests on: where it is in the video, whose track, its calibrated score, its crop."""

    frame_index: int
    time_s: float
    track: int
    p_fake: float
    crop: np.ndarray  # BGR, faces.crop_size square: what the classifier saw


class VideoDetector:
    def __init__(self, model: nn.Module, config: DetectorConfig, face_detector=None) -> None:
        self.model = model.eval()
        self.config = config
        self.face_detector = face_detector or load_detector()

    def predict(self, path: str | os.PathLike) -> dict:
        """One result row; a bad file or a video without faces is a row saying so, never an exception."""
        return self.predict_with_faces(path, keep_faces=False)[0]

    def predict_with_faces(self, path: str | os.PathLike, *, keep_faces: bool = True) -> tuple[dict, list[FaceEvidence]]:
        """The row, and with `keep_faces` every face scored, with its crop: the evidence behind the verdict."""
        faces: list[FaceEvidence] | None = [] if keep_faces else None
        try:
            row = self._predict(Path(path), faces)
        except (VideoError, OSError) as error:
            return self.error_row(path, str(error) or type(error).__name__), []
        return row, faces or []

    def error_row(self, path, reason: str) -> dict:
        return self._row(path, "ERROR", reason=reason)

    def _row(self, path, verdict: str, *, p_fake: float = float("nan"), reason: str = "", **counts) -> dict:
        return {"video": str(path), "verdict": verdict, "p_fake": p_fake, "threshold": self.config.threshold,
                "frames": counts.get("frames", 0), "frames_with_face": counts.get("frames_with_face", 0),
                "faces": counts.get("faces", 0), "tracks": counts.get("tracks", []), "reason": reason}

    def _predict(self, path: Path, evidence: list[FaceEvidence] | None = None) -> dict:
        if not path.is_file():
            raise VideoError(f"{path}: no such file")
        try:
            info = probe_video(path)
        except VideoError as error:
            raise VideoError(f"{path.name}: {error}") from None
        config = self.config
        indices = sample_frame_indices(info.frames, info.fps, config.sampling)
        report = FrameReadReport()
        detections, logits, frame_numbers = [], [], []
        kept = []  # (frame index, time, crop) per face, only when evidence is asked for
        chunk = []

        def flush() -> None:
            found = detect_faces_batch(self.face_detector, [frame for _, _, frame in chunk], config.faces, bgr=True)
            crops = []
            for (index, seconds, frame), faces in zip(chunk, found):
                detections.append(faces)
                frame_numbers.append(index)
                face_crops = [crop_with_margin(frame, face, margin=config.faces.margin, size=config.faces.crop_size)[0]
                              for face in faces]
                crops += face_crops
                if evidence is not None:
                    kept.extend((index, seconds, crop) for crop in face_crops)
            if crops:
                logits.append(face_logits(self.model, crops, config.input_size, batch_size=config.batch_size, flip=config.flip))
            chunk.clear()

        for index, seconds, frame in read_frames(path, indices, report=report):
            chunk.append((index, seconds, frame))
            if len(chunk) == DETECTION_BATCH or len(chunk) * frame.size >= CHUNK_BYTES:
                flush()
        if chunk:
            flush()
        counts = {"frames": report.read, "frames_with_face": sum(bool(f) for f in detections)}
        if report.read == 0:
            raise VideoError(f"{path.name}: no frame could be decoded ({report.note or 'empty stream'})")
        if not logits:
            return self._row(path, "NO_FACE", reason=f"no face passed the thresholds in {report.read} sampled frames"
                             + (f"; {report.note}" if report.note else ""), **counts)
        tracks = link_tracks(detections, config.faces.track_iou)
        faces = pd.DataFrame({
            "video_id": path.name,
            "frame_index": [n for n, found in zip(frame_numbers, detections) for _ in found],
            "track": [t for ids in tracks for t in ids],
            "p_fake": sigmoid(np.concatenate(logits) / config.temperature),
        })
        if evidence is not None:
            evidence.extend(FaceEvidence(int(index), float(seconds), int(track), float(p), crop)
                            for (index, seconds, crop), track, p in zip(kept, faces["track"], faces["p_fake"]))
        video = video_scores(faces, config.aggregation).iloc[0]
        per_track = [{"track": int(track), "faces": int(len(group)), "p_fake": round(float(group["p_fake"].mean()), 4)}
                     for track, group in faces.groupby("track")]
        p_fake = float(video["p_fake"])
        return self._row(path, "FAKE" if p_fake >= config.threshold else "REAL", p_fake=p_fake, reason=report.note,
                         faces=len(faces), tracks=per_track, **counts)
