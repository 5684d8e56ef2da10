"""DVC stages: each module reads the config, calls the library and writes its outputs atomically.

The rule for imports is flows -> stages -> deepfake: a stage never imports a flow, the library never
imports a stage. `run` gives every stage the same shell: log lines on stderr, and a DeepfakeError (bad
input, settings or environment) ends the stage with its one-line message instead of a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from deepfake.config import Config, load_config
from deepfake.errors import DeepfakeError


def run(name: str, main: Callable[[Config], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main(load_config())
    except DeepfakeError as error:
        raise SystemExit(f"{name}: {error}") from None
