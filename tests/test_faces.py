"""Face detection, margin crops and tracks: MTCNN on real photos, geometry on synthetic frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from deepfake.config import FaceParams
from deepfake.video.face_detection import (
    Face,
    box_iou,
    crop_with_margin,
    detect_faces,
    detect_faces_batch,
    link_tracks,
    load_face_detector,
)
from tests.conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "face-photos"


@pytest.fixture(scope="module")
def detector():
    return load_face_detector()


@pytest.fixture(scope="module")
def astronaut_rgb():
    return data.astronaut()


def _face(box, prob=0.99):
    x1, y1, x2, y2 = box
    points = np.array(
        [
            [x1 + 0.3 * (x2 - x1), y1 + 0.4 * (y2 - y1)],
            [x1 + 0.7 * (x2 - x1), y1 + 0.4 * (y2 - y1)],
            [(x1 + x2) / 2, (y1 + y2) / 2],
            [x1 + 0.35 * (x2 - x1), y1 + 0.75 * (y2 - y1)],
            [x1 + 0.65 * (x2 - x1), y1 + 0.75 * (y2 - y1)],
        ],
        np.float32,
    )
    return Face(box=tuple(map(float, box)), prob=prob, landmarks=points)


def photo(name):
    path = PHOTOS / name
    if not path.is_file():
        pytest.skip(f"shared face photo {path} not found")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_detects_the_astronaut_with_landmarks_inside_the_box(detector, astronaut_rgb):
    [face] = detect_faces(detector, astronaut_rgb, FaceParams())
    assert face.prob > 0.99
    x1, y1, x2, y2 = face.box
    assert 150 < x1 < x2 < 300 and 50 < y1 < y2 < 250  # her face is in the upper middle of the 512 px photo
    assert ((face.landmarks >= [x1, y1]) & (face.landmarks <= [x2, y2])).all()
    assert face.landmarks[0, 0] < face.landmarks[1, 0]  # left eye left of right eye


def test_detection_on_a_downscaled_frame_maps_back_to_full_resolution(detector, astronaut_rgb):
    big = cv2.resize(astronaut_rgb, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    [small_run] = detect_faces(detector, big, FaceParams(max_side=512))
    [full_run] = detect_faces(detector, big, FaceParams(max_side=4000))
    assert box_iou(small_run.box, full_run.box) > 0.85
    assert np.abs(small_run.landmarks - full_run.landmarks).max() < 25  # pixels of a 1536 px frame


def test_bgr_frames_give_the_faces_their_rgb_copies_give(detector, astronaut_rgb):
    big = cv2.resize(astronaut_rgb, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    frames_rgb = [big, astronaut_rgb]
    from_rgb = detect_faces_batch(detector, frames_rgb, FaceParams(max_side=768))
    from_bgr = detect_faces_batch(
        detector, [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames_rgb], FaceParams(max_side=768), bgr=True
    )
    assert [len(faces) for faces in from_bgr] == [len(faces) for faces in from_rgb] == [1, 1]
    for [rgb_face], [bgr_face] in zip(from_rgb, from_bgr):
        assert bgr_face.box == pytest.approx(rgb_face.box) and bgr_face.prob == pytest.approx(rgb_face.prob)
    # Colour order matters to MTCNN: BGR pixels passed as RGB score differently, so the flag is doing the work.
    [swapped] = detect_faces_batch(detector, [cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)], FaceParams())
    assert [face.prob for face in swapped] != pytest.approx([from_rgb[1][0].prob], abs=1e-7)


def test_probability_size_and_count_thresholds(detector):
    many = photo("data_multiface.jpg")
    every = detect_faces(detector, many, FaceParams(max_faces=50, min_size=0, min_prob=0.9))
    assert len(every) >= 5
    assert [f.size for f in every] == sorted((f.size for f in every), reverse=True)
    capped = detect_faces(detector, many, FaceParams(max_faces=2, min_size=0))
    assert [f.box for f in capped] == [f.box for f in every[:2]]  # the cap keeps the largest
    threshold = (every[0].size + every[-1].size) / 2  # pixels; min_size is a fraction of the shorter side
    large_only = detect_faces(detector, many, FaceParams(max_faces=50, min_size=threshold / min(many.shape[:2])))
    assert 0 < len(large_only) < len(every) and all(f.size >= threshold - 0.01 for f in large_only)
    assert detect_faces(detector, many, FaceParams(min_prob=1.01)) == []


def test_a_frame_without_faces_gives_no_faces(detector):
    assert detect_faces(detector, np.full((240, 320, 3), 127, np.uint8), FaceParams()) == []
    assert detect_faces(detector, data.coffee(), FaceParams()) == []


def test_two_people_are_two_faces(detector):
    assert len(detect_faces(detector, photo("two_people.jpg"), FaceParams())) == 2


def test_crop_is_square_with_margin_and_landmarks_follow():
    frame = np.zeros((400, 600, 3), np.uint8)
    face = _face((200, 100, 300, 240))  # 100 wide, 140 high
    frame[100:240, 200:300] = 255
    crop, landmarks = crop_with_margin(frame, face, margin=0.3, size=182)  # side 140 * 1.3 = 182: no resize
    assert crop.shape == (182, 182, 3)
    # The box is centred: white spans 100 x 140 px in the middle of the crop.
    white = np.argwhere(crop[..., 0] > 128)
    assert abs(white[:, 1].min() - 41) <= 1 and abs(white[:, 1].max() - 140) <= 1
    assert abs(white[:, 0].min() - 21) <= 1 and abs(white[:, 0].max() - 160) <= 1
    assert np.allclose(landmarks[2], [91, 91], atol=0.6)  # the nose at the box centre is the crop centre
    resized, resized_landmarks = crop_with_margin(frame, face, margin=0.3, size=91)
    assert resized.shape == (91, 91, 3)
    assert np.allclose(resized_landmarks, landmarks / 2, atol=0.01)


def test_a_face_at_the_frame_edge_keeps_its_place_in_the_crop():
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[:, :100] = 200
    face = _face((0, 50, 100, 150))
    crop, landmarks = crop_with_margin(frame, face, margin=1.0, size=200)
    assert crop.shape == (200, 200, 3)
    assert crop[100, 100, 0] == 200 and crop[100, 160, 0] == 0  # the frame's left half is the crop's middle
    assert crop[100, 5, 0] == 200  # outside the frame: its border replicated, not black
    assert np.allclose(landmarks[2], [100, 100], atol=0.6)


def test_tracks_follow_overlapping_boxes_and_start_for_new_faces():
    left = [(10 + 5 * i, 10, 60 + 5 * i, 70) for i in range(4)]
    right = [(200 - 5 * i, 20, 250 - 5 * i, 80) for i in range(4)]
    frames = [
        [_face(left[0])],
        [_face(right[1]), _face(left[1])],  # a second person appears, listed first
        [],  # nobody detected in this frame
        [_face(left[3]), _face(right[3])],
    ]
    ids = link_tracks(frames, iou_threshold=0.2)
    assert ids == [[0], [1, 0], [], [0, 1]]


def test_tracks_do_not_merge_far_apart_faces():
    frames = [[_face((0, 0, 50, 50))], [_face((300, 300, 350, 350))]]
    assert link_tracks(frames, iou_threshold=0.2) == [[0], [1]]
