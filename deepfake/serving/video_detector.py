"""Is this video a deepfake? The whole path from a video file to a verdict, with the stages' own functions.

Frames are sampled and decoded as the frames stage does and seen through the same storage round trip
(`deepfake.images.StoredFrame`, made only where detection and crops look), faces found and cropped by the
faces stage's loop (`faces_in_frames`), crops passed through the crop storage round trip, so each crop is the
array the faces stage would have written and evaluation read back. Each is scored by the classifier,
calibrated with the temperature fitted at evaluation, and aggregated into a video score compared with the
threshold chosen on the validation split.
The video is streamed: a chunk of frames at a time is decoded, searched for faces and scored, then let go.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake.config import AggregationParams, FaceParams, FrameSampling
from deepfake.errors import DataError, VideoError
from deepfake.evaluation.aggregate import video_scores
from deepfake.images import stored
from deepfake.model.scores import FaceClassifier, p_fake
from deepfake.video.face_detection import faces_in_frames, link_tracks, load_face_detector
from deepfake.video.frames import FrameReadReport, read_frames, sample_frame_indices
from deepfake.video.probe import VideoInfo, probe_video

logger = logging.getLogger(__name__)

VERDICTS = ("REAL", "FAKE", "NO_FACE", "ERROR")
UNEXPECTED = "unexpected error while scoring"  # starts the reason of an ERROR row that is not the input's fault
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
    runtime: str = "onnx"  # the classifier's: onnx | torch (MTCNN's is faces.runtime)
    sampling: FrameSampling = field(default_factory=FrameSampling)
    faces: FaceParams = field(default_factory=FaceParams)
    aggregation: AggregationParams = field(default_factory=AggregationParams)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        """From `to_dict`'s output; keys a newer version added take their defaults (a model registered before
        crops' storage was recorded was trained on JPEG 95 frames and crops, which are the defaults)."""
        data = dict(data)
        sections = {"sampling": FrameSampling, "faces": FaceParams, "aggregation": AggregationParams}
        for key, section in sections.items():
            known = {f.name for f in fields(section)}
            data[key] = section(**{k: v for k, v in data.get(key, {}).items() if k in known})
        return cls(**data)


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
    """One face the verdict rests on: where it is in the video, whose track, its score, its crop."""

    frame_index: int
    face: int  # number within its frame, largest first (as in the faces table)
    time_s: float
    track: int
    logit: float  # FAKE-minus-REAL, before calibration
    p_fake: float  # calibrated
    crop: np.ndarray  # BGR, faces.crop_size square: what the classifier saw


@dataclass(eq=False)
class _Scan:
    """What one pass over a video's sampled frames found."""

    report: FrameReadReport
    detections: list = field(default_factory=list)  # per frame read, its faces
    frame_numbers: list[int] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)  # per scored batch
    scored: list[tuple[int, int, float, np.ndarray]] = field(default_factory=list)  # (frame, face, time, crop)


class VideoDetector:
    """`model`: the face classifier, a `Classifier` or an `OnnxClassifier` (`load_face_classifier`)."""

    def __init__(self, model: FaceClassifier, config: DetectorConfig, face_detector=None) -> None:
        self.model = model
        self.config = config
        self.face_detector = face_detector or load_face_detector(config.faces.runtime)

    def predict(self, path: str | os.PathLike) -> dict:
        """One result row; a bad file or a video without faces is a row saying so, never an exception."""
        return self.predict_with_faces(path, keep_faces=False)[0]

    def predict_with_faces(
        self, path: str | os.PathLike, *, keep_faces: bool = True
    ) -> tuple[dict, list[FaceEvidence]]:
        """The row, and with `keep_faces` every face scored, with its crop: the evidence behind the verdict."""
        faces: list[FaceEvidence] | None = [] if keep_faces else None
        try:
            row = self._predict(Path(path), faces)
        except (DataError, OSError) as error:
            return self.error_row(path, str(error) or type(error).__name__), []
        except Exception as error:  # one video's failure is its row, never the end of a batch
            # Not an input we know to be bad: a bug, or a case no check foresaw. The row names the exception,
            # and the traceback goes to the log so it can be fixed.
            logger.exception("unexpected error while scoring %s", path)
            return self.error_row(path, f"{UNEXPECTED}: {type(error).__name__}: {error}"), []
        return row, faces or []

    def error_row(self, path, reason: str) -> dict:
        return self._row(path, "ERROR", reason=reason)

    def _row(self, path, verdict: str, *, p_fake: float = float("nan"), reason: str = "", **counts) -> dict:
        return {
            "video": str(path),
            "verdict": verdict,
            "p_fake": p_fake,
            "threshold": self.config.threshold,
            "frames": counts.get("frames", 0),
            "frames_with_face": counts.get("frames_with_face", 0),
            "faces": counts.get("faces", 0),
            "tracks": counts.get("tracks", []),
            "reason": reason,
        }

    @staticmethod
    def _probe(path: Path, *, check_tail: bool) -> VideoInfo:
        try:
            return probe_video(path, check_tail=check_tail)
        except VideoError as error:
            raise VideoError(f"{path.name}: {error}") from None

    def _scan(self, path: Path, info: VideoInfo, evidence: list[FaceEvidence] | None) -> _Scan:
        """The sampled frames' faces and their logits."""
        config = self.config
        indices = sample_frame_indices(info.frames, info.fps, config.sampling)
        scan = _Scan(FrameReadReport())
        frames = read_frames(path, indices, report=scan.report, decoder=config.sampling.decoder)
        pending: list[tuple[int, int, float, np.ndarray]] = []  # (frame index, face, time, crop) not yet scored

        def score_pending() -> None:
            crops = [crop for *_, crop in pending]
            scan.logits.append(
                self.model.face_logits(crops, config.input_size, batch_size=config.batch_size, flip=config.flip)
            )
            if evidence is not None:
                scan.scored.extend(pending)
            pending.clear()

        # Faces are found and cut in the pixels the frames stage would have stored and the faces stage read back.
        for frame in faces_in_frames(self.face_detector, frames, config.faces, stored_as=config.sampling.jpeg_quality):
            scan.detections.append(frame.faces)
            scan.frame_numbers.append(frame.index)
            pending.extend(
                (frame.index, number, frame.time_s, stored(crop, config.faces.jpeg_quality))
                for number, crop in enumerate(frame.crops)
            )
            if len(pending) >= config.batch_size:
                score_pending()
        if pending:
            score_pending()
        return scan

    def _predict(self, path: Path, evidence: list[FaceEvidence] | None = None) -> dict:
        if not path.is_file():
            raise VideoError(f"{path}: no such file")
        # The header's frame count, trusted until decoding stops short: checking that the tail decodes costs a
        # decode from its last keyframe (a third of a DFDC clip's decoding), and only a damaged file needs it.
        info = self._probe(path, check_tail=False)
        scan = self._scan(path, info, evidence)
        if scan.report.read < scan.report.requested:
            checked = self._probe(path, check_tail=True)
            if checked.frames < info.frames:  # samples spread over the part that decodes, as the frames stage does
                scan = self._scan(path, checked, evidence)
        config, report, detections, logits = self.config, scan.report, scan.detections, scan.logits
        frame_numbers, scored = scan.frame_numbers, scan.scored
        counts = {"frames": report.read, "frames_with_face": sum(bool(f) for f in detections)}
        if report.read == 0:
            raise VideoError(f"{path.name}: no frame could be decoded ({report.note or 'empty stream'})")
        if not logits:
            return self._row(
                path,
                "NO_FACE",
                reason=f"no face passed the thresholds in {report.read} sampled frames"
                + (f"; {report.note}" if report.note else ""),
                **counts,
            )
        tracks = link_tracks(detections, config.faces.track_iou)
        face_logit = np.concatenate(logits)
        faces = pd.DataFrame(
            {
                "video_id": path.name,
                "frame_index": [n for n, found in zip(frame_numbers, detections) for _ in found],
                "track": [t for ids in tracks for t in ids],
                "p_fake": p_fake(face_logit, config.temperature),
            }
        )
        if evidence is not None:
            evidence.extend(
                FaceEvidence(int(index), int(number), float(seconds), int(track), float(logit), float(p), crop)
                for (index, number, seconds, crop), track, logit, p in zip(
                    scored, faces["track"], face_logit, faces["p_fake"]
                )
            )
        video = video_scores(faces, config.aggregation).iloc[0]
        per_track = [
            {"track": int(track), "faces": int(len(group)), "p_fake": round(float(group["p_fake"].mean()), 4)}
            for track, group in faces.groupby("track")
        ]
        p_video = float(video["p_fake"])
        return self._row(
            path,
            "FAKE" if p_video >= config.threshold else "REAL",
            p_fake=p_video,
            reason=report.note,
            faces=len(faces),
            tracks=per_track,
            **counts,
        )
