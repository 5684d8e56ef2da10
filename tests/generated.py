"""Generated videos for property-based tests: hypothesis strategies of odd but legal (and broken) video files.

A strategy draws a recipe (a small dict); `write_recipe` turns it into a file. Recipes cover every codec
OpenCV writes here, sizes from 1x1 to 4K and extreme aspect ratios, 1-3 frames and longer clips, absurd
frame rates, rotation metadata (remuxed with the ffmpeg that imageio-ffmpeg ships), and byte-level damage
to a real clip with a face: cut at a random point, flipped bytes, zeroed ranges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from hypothesis import strategies as st

# (fourcc, suffix): every writer this OpenCV build can open, lossless ones included.
CODECS = [
    ("mp4v", ".mp4"),
    ("MJPG", ".avi"),
    ("XVID", ".avi"),
    ("VP80", ".webm"),
    ("VP90", ".webm"),
    ("FFV1", ".mkv"),
    ("HFYU", ".avi"),
    ("png ", ".avi"),
]
ODD_SIZES = [(1, 1), (2, 3), (3, 2), (7, 5), (2000, 16), (16, 2000), (641, 479), (3840, 2160)]
ODD_FPS = [0.01, 0.1, 0.5, 1.0, 23.976, 240.0, 1000.0, 100000.0]

sizes = st.one_of(st.sampled_from(ODD_SIZES), st.tuples(st.integers(1, 96), st.integers(1, 96)))


@st.composite
def written(draw) -> dict:
    width, height = draw(sizes)
    large = width * height > 1_000_000
    frames = draw(st.integers(1, 2) if large else st.one_of(st.integers(1, 3), st.integers(4, 40)))
    return {
        "kind": "written",
        "codec": draw(st.sampled_from(CODECS)),
        "size": (width, height),
        "frames": frames,
        "fps": draw(st.one_of(st.sampled_from(ODD_FPS), st.floats(0.1, 120.0))),
        "pattern": draw(st.sampled_from(["noise", "flat", "face"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@st.composite
def damaged(draw) -> dict:
    damage = draw(st.sampled_from(["truncate", "flip", "zero"]))
    return {
        "kind": "damaged",
        "damage": damage,
        "at": draw(st.floats(0.0, 1.0)),
        "length": draw(st.integers(1, 4096)),
        "seed": draw(st.integers(0, 2**16)),
    }


@st.composite
def rotated(draw) -> dict:
    return {
        "kind": "rotated",
        "rotation": draw(st.sampled_from([90, 180, 270, 45, -90])),
        "size": draw(st.sampled_from([(64, 48), (320, 240), (2, 3)])),
    }


videos = st.one_of(written(), damaged(), rotated())


def describe(recipe: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in recipe.items())


def write_recipe(recipe: dict, path: Path, face_clip: Path, ffmpeg: str | None) -> Path:
    """Write the recipe's file at `path` (its suffix may be changed to the codec's); returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if recipe["kind"] == "written":
        # In a child process: FFmpeg's muxers abort the whole process on some size and frame-rate mixes. Whatever
        # it wrote before aborting is kept: a half-written file is one more odd input.
        path = path.with_suffix(recipe["codec"][1])
        subprocess.run(
            [sys.executable, "-m", "tests.generated", json.dumps(recipe), str(path), str(face_clip)],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            timeout=300,
            check=False,
        )
        if not path.exists():  # a codec that refuses the size writes nothing: the input is then an empty file
            path.write_bytes(b"")
        return path
    if recipe["kind"] == "damaged":
        data = bytearray(face_clip.read_bytes())
        at = int(recipe["at"] * (len(data) - 1))
        if recipe["damage"] == "truncate":
            data = data[:at]
        elif recipe["damage"] == "flip":
            rng = np.random.default_rng(recipe["seed"])
            for offset in rng.integers(0, len(data), size=min(recipe["length"], 64)):
                data[offset] ^= 0xFF
        else:
            data[at : at + recipe["length"]] = bytes(len(data[at : at + recipe["length"]]))
        path = path.with_suffix(".mp4")
        path.write_bytes(bytes(data))
        return path
    # rotated: a clip remuxed with a rotation in its metadata (the frames are not touched)
    path = path.with_suffix(".mp4")
    source = path.with_name(path.stem + ".source.mp4")
    width, height = recipe["size"]
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for frame in _face_frames(face_clip, 4, (width, height)):
        writer.write(frame)
    writer.release()
    if ffmpeg is None:
        os.replace(source, path)
        return path
    subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "quiet",
            "-y",
            "-display_rotation",
            str(recipe["rotation"]),
            "-i",
            str(source),
            "-c",
            "copy",
            str(path),
        ],
        check=False,
        timeout=60,
    )
    if not path.exists():
        os.replace(source, path)
    source.unlink(missing_ok=True)
    return path


def write_frames(recipe: dict, path: Path, face_clip: Path) -> None:
    fourcc, _ = recipe["codec"]
    width, height = recipe["size"]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), recipe["fps"], (width, height))
    rng = np.random.default_rng(recipe["seed"])
    face = _face_frames(face_clip, recipe["frames"], (width, height)) if recipe["pattern"] == "face" else None
    if writer.isOpened():
        for number in range(recipe["frames"]):
            if face is not None:
                frame = face[number % len(face)]
            elif recipe["pattern"] == "flat":
                frame = np.full((height, width, 3), (number * 37) % 256, np.uint8)
            else:
                frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            writer.write(frame)
    writer.release()


def _face_frames(clip: Path, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    capture.release()
    return frames or [np.zeros((size[1], size[0], 3), np.uint8)]


if __name__ == "__main__":  # python -m tests.generated RECIPE_JSON PATH FACE_CLIP: one written recipe
    recipe = json.loads(sys.argv[1])
    recipe["codec"], recipe["size"] = tuple(recipe["codec"]), tuple(recipe["size"])
    write_frames(recipe, Path(sys.argv[2]), Path(sys.argv[3]))
