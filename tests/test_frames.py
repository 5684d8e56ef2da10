"""Frame sampling: which indices are picked, and reading exactly those frames (with their timestamps) from a video."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake.config import FrameSampling
from deepfake.errors import ConfigError, VideoError
from deepfake.video.frames import FrameReadReport, read_frames, sample_frame_indices
from deepfake.video.probe import probe_video, write_video
from tests.conftest import SHARED_VIDEOS

BITS = 6  # frames carry their own index as 6 black/white vertical stripes: survives lossy mp4v/H.264 exactly


def run_ffmpeg(ffmpeg: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg, "-v", "error", "-y", *map(str, args)], check=True, capture_output=True, timeout=60)


def ffmpeg_stream_info(ffmpeg: str, path: Path) -> str:
    """What `ffmpeg -i` says about a file (it exits 1 for want of an output; the description is on stderr)."""
    return subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=60).stderr


def index_frame(index: int, *, width: int = 96, height: int = 48) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    stripe = width // BITS
    for bit in range(BITS):
        if (index >> bit) & 1:
            frame[:, bit * stripe : (bit + 1) * stripe] = 255
    return frame


def frame_index(frame: np.ndarray) -> int:
    """Read back the index drawn by index_frame (stripe interiors only, away from block edges)."""
    stripe = frame.shape[1] // BITS
    return sum(1 << bit for bit in range(BITS) if frame[:, bit * stripe + 2 : (bit + 1) * stripe - 2].mean() > 128)


def write_indexed_clip(path: Path, frames: int, fps: float) -> Path:
    write_video(path, [index_frame(i) for i in range(frames)], fps)
    return path


# ---------------------------------------------------------------- FrameSampling / sample_frame_indices

COUNTS = [1, 2, 3, 5, 10, 31, 32, 33, 64, 100, 301, 1000, 12345]
PER_VIDEO = [1, 2, 3, 7, 32, 100]


def assert_spread(indices: list[int], count: int, wanted: int) -> None:
    """`wanted` (< count) distinct sorted indices in [0, count), evenly spread from start to end."""
    assert len(indices) == wanted
    assert all(isinstance(i, int) for i in indices)
    assert indices == sorted(set(indices))
    assert 0 <= indices[0] and indices[-1] < count
    step = count / wanted
    assert indices[0] < step, f"first sample {indices[0]} is not in the first 1/{wanted} of {count} frames"
    assert indices[-1] >= count - step, f"last sample {indices[-1]} is not in the last 1/{wanted} of {count} frames"
    gaps = np.diff(indices)
    assert all(math.floor(step) <= gap <= math.ceil(step) for gap in gaps), (count, wanted, gaps.tolist())


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("per_video", PER_VIDEO)
def test_per_video_picks_n_evenly_spaced_frames(count, per_video):
    indices = sample_frame_indices(count, 30.0, FrameSampling(per_video=per_video))
    if per_video >= count:
        assert indices == list(range(count))
    else:
        assert_spread(indices, count, per_video)


@pytest.mark.parametrize("fps", [0.0, 1.0, 29.97, 60.0])
def test_per_video_does_not_depend_on_fps(fps):
    assert sample_frame_indices(300, fps, FrameSampling(per_video=4)) == [37, 112, 187, 262]


def test_per_video_known_values():
    assert sample_frame_indices(10, 10.0, FrameSampling(per_video=2)) == [2, 7]
    assert sample_frame_indices(100, 25.0, FrameSampling(per_video=4)) == [12, 37, 62, 87]
    assert sample_frame_indices(5, 25.0, FrameSampling(per_video=5)) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(5, 25.0, FrameSampling(per_video=32)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("count", "fps", "per_second", "expected"),
    [
        (300, 30.0, 2.0, 20),  # 10 s at 2/s
        (300, 30.0, 0.5, 5),
        (90, 30.0, 1.0, 3),
        (1000, 25.0, 1.0, 40),
        (250, 25.0, 3.0, 30),
        (600, 29.97, 1.0, 20),  # 20.02 s
        (30, 30.0, 60.0, 30),  # asks for more frames than there are: all of them
        (100, 10.0, 10.0, 100),
    ],
)
def test_per_second_gives_duration_times_rate(count, fps, per_second, expected):
    indices = sample_frame_indices(count, fps, FrameSampling(per_second=per_second))
    if expected >= count:
        assert indices == list(range(count))
    else:
        assert_spread(indices, count, expected)


@pytest.mark.parametrize(
    ("count", "fps", "per_second"), [(1, 30.0, 1.0), (5, 30.0, 1.0), (10, 30.0, 1.0), (2, 60.0, 0.1), (50, 0.0, 2.0)]
)
def test_per_second_very_short_video_still_gives_one_frame(count, fps, per_second):
    indices = sample_frame_indices(count, fps, FrameSampling(per_second=per_second))
    assert len(indices) == 1
    assert 0 <= indices[0] < count


def test_per_second_overrides_per_video():
    sampling = FrameSampling(per_video=3, per_second=2.0)
    assert len(sample_frame_indices(300, 30.0, sampling)) == 20


@pytest.mark.parametrize("count", [0, -1, -100])
@pytest.mark.parametrize("sampling", [FrameSampling(), FrameSampling(per_video=1), FrameSampling(per_second=5.0)])
def test_no_frames_gives_no_indices(count, sampling):
    assert sample_frame_indices(count, 30.0, sampling) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"per_video": 0}, "per_video"),
        ({"per_video": -3}, "per_video"),
        ({"per_second": 0}, "per_second"),
        ({"per_second": 0.0}, "per_second"),
        ({"per_second": -1}, "per_second"),
        ({"per_second": -0.5}, "per_second"),
    ],
)
def test_invalid_sampling_is_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FrameSampling(**kwargs)


def test_default_sampling():
    assert FrameSampling() == FrameSampling(per_video=16, per_second=None)
    assert len(sample_frame_indices(300, 30.0, FrameSampling())) == 16


# ---------------------------------------------------------------- read_frames


@pytest.fixture
def indexed_clip(tmp_path):
    """50 frames at 25 fps, each showing its own index."""
    return write_indexed_clip(tmp_path / "indexed.mp4", 50, 25.0)


def test_index_encoding_round_trips():
    assert [frame_index(index_frame(i)) for i in range(2**BITS)] == list(range(2**BITS))


@pytest.mark.parametrize(
    "indices",
    [
        [0, 1, 2, 17, 49],
        list(range(50)),
        [49],
        [0],
        [],
        sample_frame_indices(50, 25.0, FrameSampling(per_video=7)),
    ],
    ids=["sparse", "all", "last", "first", "none", "sampled"],
)
def test_read_frames_yields_the_requested_frames_in_order(indexed_clip, indices):
    report = FrameReadReport()
    got = list(read_frames(indexed_clip, indices, report=report))
    assert [index for index, _, _ in got] == indices
    assert [frame_index(frame) for _, _, frame in got] == indices, "a yielded frame is not the frame it claims to be"
    for index, time_s, frame in got:
        assert time_s == pytest.approx(index / 25.0, abs=1e-3)
        assert frame.shape == (48, 96, 3) and frame.dtype == np.uint8
    assert (report.requested, report.read, report.note) == (len(indices), len(indices), "")


def test_read_frames_works_without_a_report_and_with_decoder_threads(indexed_clip):
    indices = [3, 10, 40]
    assert [frame_index(f) for _, _, f in read_frames(indexed_clip, indices)] == indices
    assert [frame_index(f) for _, _, f in read_frames(indexed_clip, indices, decoder_threads=2)] == indices


def test_read_frames_is_lazy(indexed_clip):
    report = FrameReadReport()
    frames = read_frames(indexed_clip, [1, 2, 3], report=report)
    assert report.requested == 0, "nothing should be decoded before iteration starts"
    assert next(frames)[0] == 1
    assert (report.requested, report.read) == (3, 1)
    frames.close()
    assert report.read == 1


def test_gray_level_clip_frames_match_their_index(tmp_path):
    """The same check with plain gray frames (level 10 x index): brightness says which frame came back."""
    path = tmp_path / "gray.mp4"
    write_video(path, [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(20)], 10.0)
    indices = [0, 3, 7, 12, 19]
    got = list(read_frames(path, indices))
    assert [index for index, _, _ in got] == indices
    for index, time_s, frame in got:
        assert frame.mean() == pytest.approx(10 * index, abs=4.9)  # nearer its own level than any other
        assert time_s == pytest.approx(index / 10.0, abs=1e-3)


def test_indices_past_the_end_stop_with_a_note_and_keep_what_was_read(tmp_path):
    path = write_indexed_clip(tmp_path / "short.mp4", 20, 10.0)
    report = FrameReadReport()
    got = list(read_frames(path, [5, 18, 25, 30], report=report))
    assert [index for index, _, _ in got] == [5, 18]
    assert [frame_index(frame) for _, _, frame in got] == [5, 18]
    assert report.requested == 4 and report.read == 2
    assert "decoding stopped" in report.note
    assert report.note == "decoding stopped at frame 20; kept 2 of 4 frames"


def test_index_just_past_the_end(tmp_path):
    path = write_indexed_clip(tmp_path / "short.mp4", 20, 10.0)
    report = FrameReadReport()
    assert [i for i, _, _ in read_frames(path, [19, 20], report=report)] == [19]
    assert report.read == 1 and report.note.startswith("decoding stopped at frame 20")


def test_truncated_faststart_h264_stops_part_way_without_raising(tmp_path, clip_factory, ffmpeg):
    source = clip_factory("source.mp4", frames=40)
    full = tmp_path / "full.mp4"
    run_ffmpeg(ffmpeg, "-i", source, "-c:v", "libx264", "-movflags", "+faststart", full)
    data = full.read_bytes()
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat"), "ffmpeg did not write a faststart mp4"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])

    capture = cv2.VideoCapture(str(cut))
    header_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert header_frames == 40, "the cut file should still carry the full index"

    report = FrameReadReport()
    got = list(read_frames(cut, list(range(header_frames)), report=report))
    kept = len(got)
    assert 0 < kept < 40
    assert [index for index, _, _ in got] == list(range(kept))
    assert report.requested == 40 and report.read == kept
    assert report.note == f"decoding stopped at frame {kept}; kept {kept} of 40 frames"
    # What was kept is the real picture: the same as decoding the whole file.
    whole = {index: frame for index, _, frame in read_frames(full, list(range(kept)))}
    for index, _, frame in got:
        np.testing.assert_array_equal(frame, whole[index])
    assert_decoders_agree(cut, list(range(header_frames)))


@pytest.mark.parametrize("kind", ["text", "missing", "empty", "garbage"])
def test_not_a_video_raises_video_error(tmp_path, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "text":
        path.write_text("this is not a video, just some notes\n" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=f"{kind}.mp4"):
        list(read_frames(path, [0, 1]))


# ---------------------------------------------------------------- orientation and variable frame rate


def test_rotated_video_comes_out_portrait(tmp_path, ffmpeg):
    # Landscape 64x48; the left quarter white, so a rotation turns it into a horizontal band.
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :16] = 255
    source = tmp_path / "landscape.mp4"
    write_video(source, [frame] * 10, 10.0)
    rotated = tmp_path / "portrait.mp4"
    # Stream copy keeps the coded 64x48 picture and only adds a display matrix. (Re-encoding with
    # -display_rotation would make ffmpeg rotate the pixels itself, and there would be no metadata to test.)
    attempts = [
        ["-display_rotation", "90", "-i", source, "-c", "copy", rotated],
        ["-i", source, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated],
    ]
    for args in attempts:
        try:
            run_ffmpeg(ffmpeg, *args)
        except subprocess.CalledProcessError:
            continue
        info = ffmpeg_stream_info(ffmpeg, rotated)
        if "64x48" in info and ("rotation of" in info or "rotate" in info):
            break
    else:
        pytest.skip("this ffmpeg cannot write a rotation tag on a stream-copied mp4")

    plain = cv2.VideoCapture(str(rotated))
    plain.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    ok, raw = plain.read()
    plain.release()
    assert ok and raw.shape == (48, 64, 3), "the file should store landscape pixels"

    report = FrameReadReport()
    got = list(read_frames(rotated, [0, 4, 9], report=report))
    assert [index for index, _, _ in got] == [0, 4, 9] and report.read == 3
    for _, _, frame in got:
        assert frame.shape == (64, 48, 3), "rotation metadata was not applied: frame is not 48 wide, 64 high"
        gray = frame.mean(axis=2)
        row_means = gray.mean(axis=1)
        # After a quarter turn the stripe runs across: rows are uniform, 16 of them white at one end.
        assert gray.std(axis=1).max() < 20
        white = row_means > 128
        assert white.sum() == pytest.approx(16, abs=2)
        assert white[:12].all() or white[-12:].all()
    assert_decoders_agree(rotated, [0, 4, 9])


def test_variable_frame_rate_times_come_from_timestamps(tmp_path, ffmpeg):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(40):
        cv2.imwrite(str(images / f"{i:03d}.png"), index_frame(i))
    vfr = tmp_path / "vfr.mp4"
    # First 10 frames 0.1 s apart, the other 30 frames 1/30 s apart: 40 frames over about 2 s.
    try:
        run_ffmpeg(
            ffmpeg,
            "-framerate",
            "30",
            "-i",
            images / "%03d.png",
            "-vf",
            "setpts='if(lt(N,10),N/10,1+(N-10)/30)/TB'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            vfr,
        )
    except subprocess.CalledProcessError as error:
        pytest.skip(
            f"this ffmpeg cannot make a variable-frame-rate mp4: {error.stderr.decode(errors='replace')[-300:]}"
        )

    capture = cv2.VideoCapture(str(vfr))
    frames, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    assert frames == 40

    report = FrameReadReport()
    got = list(read_frames(vfr, list(range(40)), report=report))
    assert report.read == 40 and report.note == ""
    assert [frame_index(frame) for _, _, frame in got] == list(range(40))
    times = np.array([time_s for _, time_s, _ in got])
    gaps = np.diff(times)
    if np.allclose(gaps, gaps[0], atol=1e-3):
        pytest.skip("ffmpeg wrote constant-frame-rate timestamps")
    assert (gaps > 0).all(), "timestamps must increase"
    assert times[0] == pytest.approx(0.0, abs=1e-3)
    assert gaps[:9] == pytest.approx(np.full(9, 0.1), abs=2e-3)  # early frames: 10 fps
    assert gaps[10:] == pytest.approx(np.full(29, 1 / 30), abs=2e-3)  # late frames: 30 fps
    assert times[39] == pytest.approx(1 + 29 / 30, abs=2e-3)
    # index / average fps would be wrong here: the container's single fps cannot describe both rates.
    assert abs(39 / fps - times[39]) > 0.05

    # Skipping frames (grab without decode) keeps the timestamps right too.
    sparse = [(index, time_s) for index, time_s, _ in read_frames(vfr, [2, 15, 39])]
    assert [index for index, _ in sparse] == [2, 15, 39]
    assert [time_s for _, time_s in sparse] == pytest.approx([0.2, 1 + 5 / 30, 1 + 29 / 30], abs=2e-3)
    assert_decoders_agree(vfr, [2, 15, 39])


def assert_decoders_agree(path, indices):
    """PyAV and OpenCV decode the same frames: indices, times, pixels, and the same note when decoding stops."""
    reports = FrameReadReport(), FrameReadReport()
    pyav, opencv = (
        list(read_frames(path, indices, report=report, decoder=decoder))
        for report, decoder in zip(reports, ("pyav", "opencv"))
    )
    assert [i for i, _, _ in pyav] == [i for i, _, _ in opencv]
    assert [t for _, t, _ in pyav] == pytest.approx([t for _, t, _ in opencv], abs=1e-3)
    for (_, _, ours), (_, _, theirs) in zip(pyav, opencv):
        np.testing.assert_array_equal(ours, theirs)
    assert reports[0].note == reports[1].note and reports[0].read == reports[1].read


@pytest.mark.parametrize(
    "name", ["deepfake-detect--abofeumbvv.mp4", "ffpp-c40--orig_183.mp4", "sadtalker--still_full_e.mp4"]
)
def test_pyav_decodes_the_frames_opencv_decodes(name):
    path = SHARED_VIDEOS / "videos" / name
    if not path.is_file():
        pytest.skip(f"shared clip {path} not found")
    info = probe_video(path)
    assert_decoders_agree(path, sample_frame_indices(info.frames, info.fps, FrameSampling(per_video=8)))


def test_the_decoder_is_a_setting_with_a_clear_error():
    with pytest.raises(ConfigError, match="frames.decoder must be one of pyav, opencv"):
        FrameSampling(decoder="gstreamer")


def _decoded(generator):
    return [(index, round(seconds, 6), image) for index, seconds, image in generator]


@pytest.mark.parametrize("name", ["deepfake-detect--abofeumbvv.mp4", "ffpp-c40--orig_183.mp4"])
def test_skipping_unsampled_b_frames_gives_the_frames_counting_gives(name):
    from deepfake.video import frames

    path = SHARED_VIDEOS / "videos" / name
    if not path.is_file():
        pytest.skip(f"shared clip {path} not found")
    info = probe_video(path)
    indices = sample_frame_indices(info.frames, info.fps, FrameSampling())
    # The skipping path itself, not its fallback: these H.264 clips have B-frames and clean timestamps.
    skipped = _decoded(frames._pyav_skipping(path, indices, 0))
    counted = _decoded(frames._pyav_counting(path, indices, FrameReadReport(), 0))
    assert [i for i, _, _ in skipped] == [i for i, _, _ in counted] == indices
    assert [t for _, t, _ in skipped] == [t for _, t, _ in counted]
    for (_, _, ours), (_, _, theirs) in zip(skipped, counted):
        np.testing.assert_array_equal(ours.to_ndarray(format="bgr24"), theirs)


def test_skipping_falls_back_to_counting_without_repeating_a_frame(tmp_path, ffmpeg):
    """A stream that ends before its header says: the frames given before the doubt are not given again, and
    the note says where decoding stopped, as counting alone says it."""
    from deepfake.video import frames

    source = tmp_path / "whole.mp4"
    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25:duration=4",
            "-c:v",
            "libx264",
            "-bf",
            "3",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            str(source),
        ],
        check=True,
    )
    whole = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: int(len(whole) * 0.6)])
    indices = list(range(0, 100, 7))
    report = FrameReadReport()
    got = list(read_frames(cut, indices, report=report))
    positions = [i for i, _, _ in got]
    assert positions == sorted(set(positions)) and positions == indices[: len(positions)]
    counted = FrameReadReport(requested=len(indices))
    assert positions == [i for i, _, _ in frames._pyav_counting(cut, indices, counted, 0)]
    assert report.read == counted.read == len(positions) < len(indices)
    assert report.note == counted.note and report.note.startswith("decoding stopped at frame")
    # All of the clip when nothing is cut: every sample from the skipping path, with B-frames in the stream.
    assert [i for i, _, _ in frames._pyav_skipping(source, indices, 0)] == indices
