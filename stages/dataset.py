"""DVC stage `dataset`: the scanned sources as one table, grouped and split; and one rejects table."""

from __future__ import annotations

import pandas as pd

from deepfake.config import Config
from deepfake.data.dataset import Dataset, combine
from stages import run


def main(config: Config) -> None:
    paths = config.paths
    # Only the configured sources: a table left by a source since removed from params.yaml is not read.
    scans = {
        name: Dataset(
            videos=pd.read_csv(
                paths.source_table(name), dtype={"given_split": str, "given_group": str}, keep_default_na=False
            ),
            rejects=pd.read_csv(paths.source_rejects(name), dtype=str, keep_default_na=False),
            metadata=source.root,
        )
        for name, source in config.dataset.sources.items()
    }
    dataset = combine(scans, config.dataset.split)
    videos_path, rejects_path = dataset.write(paths.interim)
    print(dataset.summary())
    print(f"wrote {videos_path} and {rejects_path}")


if __name__ == "__main__":
    run("dataset", main)
