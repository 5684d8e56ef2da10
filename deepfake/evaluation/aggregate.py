"""From face scores to frame and video scores.

A frame is as fake as its most fake face. A video's score comes from one of three rules, all computed so
they can be compared: `mean` of its frame scores; `confident`, the DFDC winner's rule (Seferbekov, 2020):
when enough frames are confidently fake average only those, else when nearly all are confidently real
average those, else the mean; and `max_track`, the mean score of each person's track, then the most fake
person — a video with one swapped face among several people is fake.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepfake.config import STRATEGIES, AggregationParams


def confident_mean(frame_scores: np.ndarray, params: AggregationParams) -> float:
    scores = np.asarray(frame_scores, dtype=float)
    fakes = scores > params.fake_threshold
    if fakes.sum() > len(scores) / 2.5 and fakes.sum() >= params.min_fake_frames:
        return float(scores[fakes].mean())
    reals = scores < params.real_threshold
    if reals.sum() > 0.9 * len(scores):
        return float(scores[reals].mean())
    return float(scores.mean())


def max_track_mean(face_scores: pd.DataFrame, params: AggregationParams) -> float:
    """face_scores: one video's faces with `track` and `p_fake`."""
    tracks = face_scores.groupby("track")["p_fake"].agg(["mean", "size"])
    long_enough = tracks[tracks["size"] >= params.min_track_faces]
    return float((long_enough if len(long_enough) else tracks)["mean"].max())


def frame_scores(faces: pd.DataFrame) -> pd.DataFrame:
    """faces: `video_id`, `frame_index`, `p_fake` per face -> one row per frame with its most fake face."""
    return faces.groupby(["video_id", "frame_index"], sort=False, as_index=False)["p_fake"].max()


def video_scores(faces: pd.DataFrame, params: AggregationParams) -> pd.DataFrame:
    """One row per video with a face: its score under every strategy, `p_fake` under the chosen one."""
    frames = frame_scores(faces)
    rows = []
    for video_id, video_faces in faces.groupby("video_id", sort=False):
        scores = frames.loc[frames["video_id"] == video_id, "p_fake"].to_numpy()
        rows.append(
            {
                "video_id": video_id,
                "mean": float(scores.mean()),
                "confident": confident_mean(scores, params),
                "max_track": max_track_mean(video_faces, params),
                "frames_with_face": len(scores),
                "faces": len(video_faces),
                "tracks": video_faces["track"].nunique(),
            }
        )
    table = pd.DataFrame(rows, columns=["video_id", *STRATEGIES, "frames_with_face", "faces", "tracks"])
    table["p_fake"] = table[params.strategy]
    return table
