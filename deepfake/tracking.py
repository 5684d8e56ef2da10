"""MLflow: where runs are tracked, logging the video-level model, the promotion gate, and registry lookups.

Training and evaluation import this module, so it imports nothing of the inference stack: the registered
model's code is named by its file path (deepfake/serving/pyfunc_model.py), and loading it for scoring lives
in `deepfake.serving.loading`.

The default store is a SQLite file in the project (`mlflow.db`) with artifacts under `mlruns/`: nothing to
start, and `mlflow ui --backend-store-uri sqlite:///mlflow.db` shows it. `MLFLOW_TRACKING_URI` points
everything at a server instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from deepfake.config import CHALLENGER, CHAMPION
from deepfake.errors import RegistryError

EXPERIMENT = "deepfake-detector"
PYFUNC_MODEL_CODE = Path(__file__).parent / "serving" / "pyfunc_model.py"
# What the registered model needs installed to run; the versions are the ones it was logged with.
RUNTIME_PACKAGES = (
    "torch",
    "torchvision",
    "facenet-pytorch",
    "efficientnet-lite-pytorch",
    "opencv-python-headless",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "mlflow",
)


def tracking_uri(project: str | os.PathLike = ".") -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(project) / 'mlflow.db').resolve()}"


def connect(project: str | os.PathLike = ".", *, experiment: bool = True) -> str:
    """Point MLflow at the tracking store (checked reachable) and the project's experiment; returns the URI."""
    import mlflow

    uri = tracking_uri(project)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr for our own progress
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if experiment and mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # With the SQLite default, artifacts go to the project's mlruns/; a server decides for itself.
        location = None if uri.startswith(("http://", "https://")) else (Path(project) / "mlruns").resolve().as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    if experiment:
        mlflow.set_experiment(EXPERIMENT)
    return uri


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with the URI in the message, instead of MLflow's minutes of retries and a traceback."""
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as error:
        raise RegistryError(
            f"MLflow tracking server {uri} is not reachable ({type(error).__name__}): start it, "
            "or unset MLFLOW_TRACKING_URI to use the project's mlflow.db"
        ) from None


def flatten(params: dict, prefix: str = "") -> dict:
    """Nested params or metrics as dotted keys: {"faces": {"margin": 0.3}} -> {"faces.margin": 0.3}."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def numeric(values: dict) -> dict:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def git_commit(project: str | os.PathLike = ".") -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dvc_output_hash(output: str, project: str | os.PathLike = ".") -> str:
    """The content hash DVC recorded for an output in dvc.lock: which exact data a model was trained on."""
    import yaml

    try:
        lock = yaml.safe_load((Path(project) / "dvc.lock").read_text())
    except (OSError, yaml.YAMLError):
        return "unknown"
    for stage in (lock or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") == output:
                return out.get("md5", "unknown")
    return "unknown"


def start_run(run_id: str | None = None, **kwargs):
    """Continue `run_id` when the store still has it (the train stage's run), else start a new run."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if run_id:
        try:
            mlflow.get_run(run_id)
            return mlflow.start_run(run_id=run_id)
        except MlflowException:
            pass
    return mlflow.start_run(**kwargs)


# ---------------------------------------------------------------- the registered model


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    output = (
        [ColSpec("string", name) for name in ("video", "verdict", "tracks", "reason")]
        + [ColSpec("double", name) for name in ("p_fake", "threshold")]
        + [ColSpec("long", name) for name in ("frames", "frames_with_face", "faces")]
    )
    return ModelSignature(inputs=Schema([ColSpec("string", "video")]), outputs=Schema(output))


def pip_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def log_detector(weights: str | os.PathLike, config: dict, model_card: str):
    """Log the video-level model (weights plus a DetectorConfig's dict) into the active run; returns MLflow's
    ModelInfo. The whole package goes with it as code, so the version runs the code it was evaluated with."""
    import mlflow.pyfunc

    import deepfake

    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "detector.json"
        config_path.write_text(json.dumps(config, indent=2))
        card_path = Path(folder) / "model_card.md"
        card_path.write_text(model_card)
        return mlflow.pyfunc.log_model(
            name="detector",
            python_model=str(PYFUNC_MODEL_CODE),
            artifacts={"weights": str(weights), "config": str(config_path), "model_card": str(card_path)},
            code_paths=[str(Path(deepfake.__file__).parent)],
            pip_requirements=pip_requirements(),
            signature=signature(),
            # A path that exists nowhere: the example shows the request's shape (and logging checks it
            # returns an ERROR row rather than running a whole video through the model).
            input_example=pd.DataFrame({"video": ["/path/to/video.mp4"]}),
        )


@dataclass
class GateDecision:
    version: str
    alias: str
    metric: str
    value: float | None
    champion_version: str | None
    champion_value: float | None
    reason: str

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def gate(name: str, version: str, metric: str, value: float | None, *, min_improvement: float = 0.0) -> GateDecision:
    """Give `version` the champion alias only if it beats the champion on `metric`; else challenger."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    champion_value = None
    if champion is not None:
        tagged = champion.tags.get(f"gate.{metric}")
        champion_value = float(tagged) if tagged not in (None, "", "None") else None
    if champion is None:
        alias, reason = CHAMPION, "no champion yet"
    elif value is None:
        alias, reason = CHALLENGER, f"{metric} could not be measured (one class in the test split)"
    elif champion_value is None or value > champion_value + min_improvement:
        alias, reason = (
            CHAMPION,
            (
                f"{metric} {value:.4f} beats champion v{champion.version}'s "
                + ("(none recorded)" if champion_value is None else f"{champion_value:.4f}")
            ),
        )
    else:
        alias, reason = (
            CHALLENGER,
            f"{metric} {value:.4f} does not beat champion v{champion.version}'s {champion_value:.4f}",
        )
    version = str(version)
    client.set_registered_model_alias(name, alias, version)
    decision = GateDecision(
        version, alias, metric, value, str(champion.version) if champion else None, champion_value, reason
    )
    client.set_model_version_tag(name, version, f"gate.{metric}", "None" if value is None else f"{value:.6f}")
    client.set_model_version_tag(name, version, "gate.decision", f"{alias}: {reason}")
    return decision


# ---------------------------------------------------------------- reading the registry


def require_registered(client, name: str) -> None:
    names = [m.name for m in client.search_registered_models()]
    if name not in names:
        raise RegistryError(
            f"no registered model {name!r} in {tracking_uri()}; registered: {', '.join(names) or 'none'}"
        )


def model_versions(name: str) -> pd.DataFrame:
    from mlflow import MlflowClient

    client = MlflowClient()
    require_registered(client, name)
    aliases = client.get_registered_model(name).aliases  # alias -> version
    rows = []
    for version in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        rows.append(
            {
                "version": int(version.version),
                "aliases": ",".join(sorted(a for a, v in aliases.items() if str(v) == str(version.version))),
                "created": pd.Timestamp(version.creation_timestamp, unit="ms").strftime("%Y-%m-%d %H:%M"),
                **{column: version.tags.get(f"test.{column.replace('_', '.', 1)}", "") for column in SUMMARY_METRICS},
                "decision": version.tags.get("gate.decision", ""),
            }
        )
    return pd.DataFrame(rows)


SUMMARY_METRICS = ("video_auc", "video_accuracy", "video_log_loss", "face_auc")


def tag_metrics(name: str, version: str, metrics: dict) -> None:
    """The test metrics on the version itself, so listing versions needs no run lookups."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for column in SUMMARY_METRICS:
        level, metric = column.split("_", 1)
        value = metrics.get(level, {}).get(metric)
        client.set_model_version_tag(name, version, f"test.{level}.{metric}", "" if value is None else f"{value:.4f}")


def promote(version: str, name: str, alias: str = CHAMPION) -> str | None:
    """Move `alias` to `version` by hand (promotion or rollback); returns the version it left."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    versions = model_versions(name)["version"].astype(str).tolist()
    if str(version) not in versions:
        raise RegistryError(f"{name} has no version {version}; versions: {', '.join(versions)}")
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, alias, str(version))
    client.set_model_version_tag(name, str(version), "gate.decision", f"{alias}: set by hand (was v{previous})")
    return None if previous is None else str(previous)


@dataclass(frozen=True)
class ModelReference:
    """A registry URI taken apart: `models:/name@alias` or `models:/name/version`."""

    name: str
    alias: str | None = None
    version: str | None = None


def split_model_uri(model_uri: str) -> ModelReference | None:
    """The name and alias or version of a models:/ URI; None for anything else (a run or file URI)."""
    if not model_uri.startswith("models:/"):
        return None
    reference = model_uri[len("models:/") :]
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return ModelReference(name, alias=alias)
    name, _, version = reference.partition("/")
    return ModelReference(name, version=version)


def resolve_version(model_uri: str) -> str:
    """The version a models:/ URI points at; unknown names or aliases list what exists."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    reference = split_model_uri(model_uri)
    if reference is None:
        return ""
    name, rest = reference.name, reference.alias or reference.version
    client = MlflowClient()
    require_registered(client, name)
    if reference.alias is not None:
        try:
            return str(client.get_model_version_by_alias(name, rest).version)
        except MlflowException:
            aliases = client.get_registered_model(name).aliases
            listed = ", ".join(f"@{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
            raise RegistryError(f"{name} has no alias {rest!r}; aliases: {listed}") from None
    versions = [str(v.version) for v in client.search_model_versions(f"name='{name}'")]
    if rest not in versions:
        raise RegistryError(f"{name} has no version {rest!r}; versions: {', '.join(sorted(versions, key=int))}")
    return rest
