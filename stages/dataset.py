"""DVC stage `dataset`: validate labelled videos, group fakes with originals, split, write the two tables."""

from __future__ import annotations

from deepfake.config import Config
from deepfake.data.dataset import build_dataset
from stages import run


def main(config: Config) -> None:
    params = config.dataset
    dataset = build_dataset(
        params.root, params.metadata, split=params.split, min_frames=params.min_frames, workers=params.workers
    )
    videos_path, rejects_path = dataset.write(config.paths.interim)
    print(dataset.summary())
    print(f"wrote {videos_path} and {rejects_path}")


if __name__ == "__main__":
    run("dataset", main)
