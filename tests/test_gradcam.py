"""The evidence behind a verdict: per-face details from the detector, and Grad-CAM heatmaps over the crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake.config import SampleSpec
from deepfake.data.sample import make_sample
from deepfake.model.classifier import build_classifier, load_classifier
from deepfake.serving.gradcam import gradcam, last_conv_block, overlay
from deepfake.serving.video_detector import VideoDetector
from tests.conftest import CONFIG, random_weights


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2"])
def test_gradcam_gives_one_normalised_map_per_crop_and_leaves_the_model_untouched(backbone):
    torch.manual_seed(0)
    model, _ = build_classifier(backbone, "none")
    model = model.to(memory_format=torch.channels_last).eval()
    crops = [np.random.default_rng(i).integers(0, 256, (48, 48, 3), dtype=np.uint8) for i in range(3)]
    before = model(torch.zeros(1, 3, 64, 64)).detach()
    heatmaps = gradcam(model, crops, 64)
    assert heatmaps.shape == (3, 48, 48) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert all(p.grad is None for p in model.parameters())  # no gradients left in the shared model
    assert not last_conv_block(model)._forward_hooks  # the hook is gone
    assert torch.equal(model(torch.zeros(1, 3, 64, 64)).detach(), before)
    blended = overlay(crops[0], heatmaps[0])
    assert blended.shape == crops[0].shape and blended.dtype == np.uint8


def test_gradcam_is_hottest_where_the_fake_evidence_is():
    """A head that reads "fake" as feature energy, and a crop with texture only in its top-left quarter."""
    torch.manual_seed(0)
    model, _ = build_classifier("resnet18", "none")
    with torch.no_grad():
        model.head[1].weight.zero_()
        model.head[1].weight[1] = 1.0  # FAKE logit = sum of the pooled features
        model.head[1].bias.zero_()
    crop = np.full((128, 128, 3), 128, np.uint8)
    crop[:64, :64] = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    heatmap = gradcam(model.eval(), [crop], 128)[0]
    row, column = np.unravel_index(heatmap.argmax(), heatmap.shape)
    assert row < 64 and column < 64
    assert heatmap[:64, :64].mean() > heatmap[64:, 64:].mean() + 0.1


@pytest.fixture(scope="module")
def detector_and_clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    make_sample(root / "clips", spec=SampleSpec(clips_per_face=1, fakes_per_real=0, frames=8, width=320, height=240))
    detector = VideoDetector(load_classifier(random_weights(root / "model.pt"), "resnet18"), CONFIG)
    return detector, sorted((root / "clips").glob("*.mp4"))[0]


def test_predict_with_faces_returns_the_same_row_and_every_face_scored(detector_and_clip):
    detector, clip = detector_and_clip
    row, faces = detector.predict_with_faces(clip)
    assert row == detector.predict(clip)  # the opt-in changes nothing in the verdict
    assert len(faces) == row["faces"] >= 4
    assert [f.frame_index for f in faces] == sorted(f.frame_index for f in faces)
    assert all(f.time_s >= 0 and 0 <= f.p_fake <= 1 and f.crop.shape == (64, 64, 3) for f in faces)
    for track in row["tracks"]:
        scores = [f.p_fake for f in faces if f.track == track["track"]]
        assert len(scores) == track["faces"] and round(float(np.mean(scores)), 4) == track["p_fake"]


def test_predict_with_faces_on_a_bad_file_is_an_error_row_and_no_faces(detector_and_clip, tmp_path):
    detector, _ = detector_and_clip
    (tmp_path / "notes.mp4").write_text("not a video")
    row, faces = detector.predict_with_faces(tmp_path / "notes.mp4")
    assert row["verdict"] == "ERROR" and "not a readable video" in row["reason"] and faces == []
