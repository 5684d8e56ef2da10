"""DVC stages: each module reads the config, calls the library and writes its outputs atomically.

The rule for imports is flows -> stages -> deepfake: a stage never imports a flow, the library never
imports a stage. `run` gives every stage the same shell: log lines on stderr, and a DeepfakeError (bad
input, settings or environment) or an OSError (disk full, a folder that cannot be written) ends the stage
with a one-line message instead of a traceback. Outputs are written atomically, so none is left half-written.
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
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        raise SystemExit(f"{name}: {error.strerror or error}{where}") from None
