"""One face-to-tensor path: a clip through the frames, faces and evaluation stages' functions and through
`VideoDetector` gives the same crops, pixel for pixel, and the same per-face logits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepfake.config import EvaluateParams, FaceParams, FrameSampling, PoolSettings, SampleSpec
from deepfake.data.dataset import build_dataset
from deepfake.data.sample import make_sample
from deepfake.evaluation.evaluate import crop_logits
from deepfake.images import read_image
from deepfake.model.classifier import load_classifier
from deepfake.serving.video_detector import DetectorConfig, VideoDetector
from deepfake.video.extraction import update_faces, update_frames
from deepfake.video.face_detection import load_face_detector
from tests.conftest import random_weights

SIZE = 64


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    make_sample(root / "clips", SampleSpec(clips_per_face=1, fakes_per_real=1, frames=8, width=320, height=240))
    return root, build_dataset(root / "clips").videos


@pytest.fixture(scope="module")
def model(clips):
    return load_classifier(random_weights(clips[0] / "model.pt"), "resnet18")


def detector_faces(model, videos: pd.DataFrame, sampling: FrameSampling, faces: FaceParams) -> pd.DataFrame:
    detector = VideoDetector(
        model,
        DetectorConfig(backbone="resnet18", input_size=SIZE, sampling=sampling, faces=faces),
        load_face_detector(),
    )
    rows = []
    for video in videos.itertuples():
        row, evidence = detector.predict_with_faces(video.path)
        assert row["verdict"] in ("REAL", "FAKE"), row
        rows += [
            {
                "video_id": video.video_id,
                "frame_index": e.frame_index,
                "face": e.face,
                "logit": e.logit,
                "crop_array": e.crop,
            }
            for e in evidence
        ]
    return pd.DataFrame(rows)


def stage_faces(
    root, tag: str, model, videos: pd.DataFrame, sampling: FrameSampling, faces: FaceParams
) -> pd.DataFrame:
    pool = PoolSettings(workers=1)
    update_frames(videos, root / tag / "frames", sampling, pool)
    table = update_faces(videos, root / tag / "frames", root / tag / "faces", faces, pool).table
    logits = crop_logits(model, list(table["crop"]), root / tag / "faces", SIZE, EvaluateParams())
    return table.assign(logit=logits, crop_array=[read_image(root / tag / "faces" / crop) for crop in table["crop"]])


@pytest.mark.parametrize("jpeg_quality", [95, None], ids=["jpeg95", "lossless"])
def test_stages_and_the_video_detector_see_the_same_pixels_and_give_the_same_logits(clips, model, jpeg_quality):
    root, videos = clips
    sampling = FrameSampling(per_video=4, jpeg_quality=jpeg_quality)
    faces = FaceParams(crop_size=SIZE, jpeg_quality=jpeg_quality)
    stages = stage_faces(root, str(jpeg_quality), model, videos, sampling, faces)
    inference = detector_faces(model, videos, sampling, faces)
    assert len(stages) >= 2 * len(videos)
    merged = stages.merge(
        inference, on=["video_id", "frame_index", "face"], suffixes=("_stage", "_detector"), how="outer", indicator=True
    )
    assert (merged["_merge"] == "both").all(), "the two paths found different faces"
    for stage_crop, detector_crop in zip(merged["crop_array_stage"], merged["crop_array_detector"]):
        assert np.array_equal(stage_crop, detector_crop)
    assert np.abs(merged["logit_stage"] - merged["logit_detector"]).max() < 1e-4


def test_without_the_storage_round_trip_inference_would_see_other_pixels(clips, model):
    """The control that gives the parity test its teeth: JPEG-stored crops differ from unstored ones."""
    root, videos = clips
    stored = stage_faces(root, "control", model, videos.head(1), FrameSampling(per_video=4), FaceParams(crop_size=SIZE))
    unstored = detector_faces(
        model,
        videos.head(1),
        FrameSampling(per_video=4, jpeg_quality=None),
        FaceParams(crop_size=SIZE, jpeg_quality=None),
    )
    merged = stored.merge(unstored, on=["video_id", "frame_index", "face"], suffixes=("_stage", "_detector"))
    assert len(merged) and not all(
        np.array_equal(a, b) for a, b in zip(merged["crop_array_stage"], merged["crop_array_detector"])
    )
