"""The project's errors. Each says, in words a user can act on, what is wrong and with which file or setting.

Stages and the CLI catch `DeepfakeError` and print its message; anything else is a bug and keeps its
traceback. The second base class of each keeps the built-in family it belongs to (a bad value, a missing
resource), so callers that only know Python's exceptions still catch it.
"""

from __future__ import annotations


class DeepfakeError(Exception):
    """A problem with the input, the settings or the environment that the message explains."""


class ConfigError(DeepfakeError, ValueError):
    """A setting in params.yaml that is unknown or out of range; the message names the key and what is allowed."""


class DataError(DeepfakeError, ValueError):
    """Input data that cannot be used as it is: the message names the file and the reason."""


class VideoError(DataError):
    """A file that is not a usable video."""


class MetadataError(DataError):
    """The metadata file as a whole cannot be read; the message names the file and, where known, the line."""


class LabelError(DataError):
    """A label that is neither REAL nor FAKE in any accepted spelling."""


class SampleError(DataError):
    """The demo's sample clips cannot be made from the photos given."""


class PermanentError(DataError):
    """A per-video job failure that retrying cannot fix (the input itself is bad)."""


class WeightsUnavailable(DeepfakeError, RuntimeError):
    """Asked-for weights that cannot be had here; the message says how to get them."""


class RegistryError(DeepfakeError, RuntimeError):
    """The MLflow registry cannot give what was asked; the message names the URI and what exists."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (an empty EOFError)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
