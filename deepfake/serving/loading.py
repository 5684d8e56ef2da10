"""Loading the registered video-level model for scoring, by alias or version.

A registered version is an MLflow pyfunc model: its weights, its `DetectorConfig` (detector.json) and the
package's code. With the default local registry (SQLite, artifacts in the project's mlruns/) the lookup is
two rows of SQL and two files, so `load_detector_model` reads them directly and builds the detector with the
installed package: no MLflow import on the path to the first frame (it costs seconds). Any other registry
(a tracking server, a remote artifact store), or a lookup that fails, goes through MLflow, whose errors
list what exists.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from deepfake.errors import RegistryError, WeightsUnavailable, first_line
from deepfake.serving.video_detector import DetectorConfig, VideoDetector


@dataclass
class LoadedDetector:
    detector: VideoDetector
    uri: str
    version: str
    seconds: float  # time to resolve and load from the registry


def load_detector_model(model_uri: str) -> LoadedDetector:
    """The registered video-level model, ready to call; errors say what exists instead."""
    started = time.perf_counter()
    local = local_model(model_uri)
    if local is not None:
        version, folder = local
        try:
            detector = detector_from_model_dir(folder)
        except WeightsUnavailable as error:
            raise RegistryError(f"{model_uri}: refused its weights: {error}") from None
        return LoadedDetector(detector, model_uri, version, time.perf_counter() - started)

    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from deepfake.tracking import connect, resolve_version

    connect(experiment=False)
    version = resolve_version(model_uri)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as error:
        raise RegistryError(f"cannot load {model_uri}: {first_line(error)}") from None
    except WeightsUnavailable as error:
        raise RegistryError(f"{model_uri}: refused its weights: {error}") from None
    detector = model.unwrap_python_model().detector
    return LoadedDetector(detector, model_uri, version, time.perf_counter() - started)


def detector_from_artifacts(weights: str | os.PathLike, config: str | os.PathLike) -> VideoDetector:
    """The detector from a registered version's two artifacts: the classifier's weights and detector.json."""
    from deepfake.model.onnx_classifier import load_face_classifier

    settings = DetectorConfig.from_dict(json.loads(Path(config).read_text()))
    model = load_face_classifier(weights, settings.backbone, settings.input_size, settings.runtime)
    return VideoDetector(model, settings)


def detector_from_model_dir(folder: Path) -> VideoDetector:
    """The detector from a logged model's folder (its MLmodel file names the artifacts)."""
    import yaml

    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    artifacts = {name: folder / entry["path"] for name, entry in flavor["artifacts"].items()}
    return detector_from_artifacts(artifacts["weights"], artifacts["config"])


def local_model(model_uri: str) -> tuple[str, Path] | None:
    """(version, model folder) of `models:/name@alias` or `models:/name/version` in a SQLite registry whose
    artifacts are local files; None whenever that does not hold or the lookup finds nothing (MLflow then
    loads it, or says what exists)."""
    from deepfake.tracking import split_model_uri, tracking_uri

    uri = tracking_uri()
    reference = split_model_uri(model_uri)
    if reference is None or not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///") :])
    name, version = reference.name, reference.version
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            if reference.alias is not None:
                row = connection.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (name, reference.alias),
                ).fetchone()
                if row is None:
                    return None
                version = str(row[0])
            row = connection.execute(
                "SELECT storage_location FROM model_versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
    except (sqlite3.Error, ValueError):
        return None
    if row is None or not row[0]:
        return None
    location = urlparse(row[0])
    folder = Path(unquote(location.path)) if location.scheme in ("file", "") else None
    if folder is None or not (folder / "MLmodel").is_file():
        return None
    return version, folder
