"""DVC stage `source@<name>`: probe and hash one source folder's labelled videos and photos (not yet split)."""

from __future__ import annotations

import sys

from deepfake.atomic import write_csv
from deepfake.config import Config
from deepfake.data.dataset import scan_source
from deepfake.errors import ConfigError
from stages import run


def main(config: Config, name: str) -> None:
    if name not in config.dataset.sources:
        raise ConfigError(f"no source {name!r} in dataset.sources (have: {', '.join(config.dataset.sources)})")
    source = config.dataset.sources[name]
    scan = scan_source(
        source.root,
        source.metadata,
        label=source.label,
        min_frames=config.dataset.min_frames,
        workers=config.dataset.workers,
    )
    write_csv(scan.videos, config.paths.source_table(name))
    write_csv(scan.rejects, config.paths.source_rejects(name))
    print(f"{name}: {len(scan.videos)} files accepted, {len(scan.rejects)} rejected ({scan.metadata})")


if __name__ == "__main__":
    run("source", lambda config: main(config, sys.argv[1] if len(sys.argv) > 1 else ""))
