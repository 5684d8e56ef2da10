"""DVC stage `dataset`: validate labelled videos, group fakes with originals, split, write the two tables."""

from __future__ import annotations

from deepfake.data import MetadataError, SplitParams, build_dataset
from deepfake.params import load_params

OUT_DIR = "data/interim"


def main() -> None:
    params = load_params()["dataset"]
    try:
        dataset = build_dataset(
            params["root"], params["metadata"], split=SplitParams(**params["split"]),
            min_frames=params["min_frames"], workers=params["workers"],
        )
    except MetadataError as error:
        raise SystemExit(f"dataset: {error}") from None
    videos_path, rejects_path = dataset.write(OUT_DIR)
    print(dataset.summary())
    print(f"wrote {videos_path} and {rejects_path}")


if __name__ == "__main__":
    main()
