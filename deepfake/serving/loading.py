"""Loading the registered video-level model for scoring, by alias or version."""

from __future__ import annotations

import time
from dataclasses import dataclass

from deepfake.errors import RegistryError, WeightsUnavailable, first_line
from deepfake.serving.video_detector import VideoDetector
from deepfake.tracking import resolve_version


@dataclass
class LoadedDetector:
    detector: VideoDetector
    uri: str
    version: str
    seconds: float  # time to resolve and load from the registry


def load_detector_model(model_uri: str) -> LoadedDetector:
    """The registered video-level model, ready to call; errors say what exists instead."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    started = time.perf_counter()
    version = resolve_version(model_uri)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as error:
        raise RegistryError(f"cannot load {model_uri}: {first_line(error)}") from None
    except WeightsUnavailable as error:
        raise RegistryError(f"{model_uri}: refused its weights: {error}") from None
    detector = model.unwrap_python_model().detector
    return LoadedDetector(detector, model_uri, version, time.perf_counter() - started)
