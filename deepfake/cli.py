"""The `deepfake` command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

app = typer.Typer(
    help="Deepfake video detection pipeline: make sample data, ingest labelled videos, and more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.callback()
def _setup() -> None:
    """Library modules log to their own loggers; the command shows their messages as plain lines."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def _config():
    """params.yaml when run from the project root, else the defaults (which equal the shipped params.yaml)."""
    from deepfake.config import project_config

    return _domain(project_config)


def _domain(action):
    """Run `action`; a DeepfakeError (bad input, settings or registry) becomes a one-line message, exit 2."""
    from deepfake.errors import DeepfakeError

    try:
        return action()
    except DeepfakeError as error:
        _fail(str(error))


@app.command("make-sample")
def make_sample_command(
    out: Path = typer.Argument(
        None, help="Folder to write the clips and metadata.json to (replaced); default: paths.sample."
    ),
    faces: Path = typer.Option(
        None, "--faces", help="Folder of face photos; default: sample.faces, else portraits bundled with dependencies."
    ),
    seed: int = typer.Option(None, help="Random seed (default: sample.seed): the same seed gives the same clips."),
) -> None:
    """Make labelled sample clips offline: animated real faces and face-swap-style fakes (settings: params.yaml's sample)."""
    from dataclasses import replace

    from deepfake.data.sample import make_sample

    config = _config()
    spec = replace(
        config.sample, **{k: v for k, v in {"faces": faces and str(faces), "seed": seed}.items() if v is not None}
    )
    _domain(lambda: make_sample(out or config.paths.sample, spec))


@app.command()
def ingest(
    root: Path = typer.Argument(
        ..., help="Folder of videos and/or face photos (metadata.json, a CSV, real/ and fake/)."
    ),
    metadata: str = typer.Option("auto", help="auto, or the metadata file under the root (e.g. faces.csv)."),
    label: str = typer.Option("", help="Label of files the metadata leaves unlabelled (REAL for real face photos)."),
    out_dir: Path = typer.Option(None, help="Where videos.csv and rejects.csv are written; default: paths.interim."),
) -> None:
    """Validate and split one folder as the pipeline's source and dataset stages do (settings: params.yaml's dataset)."""
    from deepfake.data.dataset import build_dataset

    config = _config()
    params = config.dataset
    dataset = _domain(
        lambda: build_dataset(
            root, metadata, label=label, split=params.split, min_frames=params.min_frames, workers=params.workers
        )
    )
    videos_path, rejects_path = dataset.write(out_dir or config.paths.interim)
    typer.echo(dataset.summary())
    for row in dataset.rejects.itertuples():
        typer.echo(f"rejected {row.path}: {row.reason}")
    typer.echo(f"wrote {videos_path} and {rejects_path}")


@app.command()
def summary(project: Path = typer.Option(Path("."), help="Project root (its params.yaml names the folders).")) -> None:
    """Summarise what the pipeline has produced: videos per split and label, rejects, frames and faces."""
    import pandas as pd

    from deepfake.config import project_config

    paths = _domain(lambda: project_config(project / "params.yaml")).paths
    interim = project / paths.interim
    videos_path = interim / "videos.csv"
    if not videos_path.is_file():
        _fail(f"{videos_path} not found: run `dvc repro` first")
    videos = pd.read_csv(videos_path)
    rejects = pd.read_csv(interim / "rejects.csv")
    typer.echo(videos.groupby(["split", "label"]).size().unstack(fill_value=0).to_string())
    typer.echo(f"{len(videos)} videos accepted, {len(rejects)} rejected ({interim})")
    for name, unit, folder in (("frames", "frames", paths.frames), ("faces", "face crops", paths.faces)):
        report_path = project / folder / "report.csv"
        if report_path.is_file():
            report = pd.read_csv(report_path)
            count = report["faces" if name == "faces" else "frames"].sum()
            problems = report[report["status"] != "ok"]
            typer.echo(
                f"{count} {unit} from {len(report) - len(problems)} videos ({project / folder})"
                + "".join(f"\n  {row.status} {row.video_id}: {row.reason}" for row in problems.itertuples())
            )
    reports = project / paths.reports
    train_path = reports / "train.json"
    if train_path.is_file():
        train = json.loads(train_path.read_text())
        kept = train.get("kept", f"best epoch {train['best_epoch']}")  # older reports lack it
        typer.echo(
            f"model: {train['backbone']} ({train['weights_used']} weights), {kept} of "
            f"{train['epochs_run']}, val loss {train['val_loss']:.3f}, val AUC {train['val_auc']:.3f} "
            f"({project / paths.model_file})"
        )
    metrics_path = reports / "metrics.json"
    if metrics_path.is_file():
        typer.echo(_evaluation_summary(json.loads(metrics_path.read_text())))
    promotion_path = reports / "promotion.json"
    if promotion_path.is_file():
        promotion = json.loads(promotion_path.read_text())
        typer.echo(
            f"registry: {promotion['name']} version {promotion['version']} -> @{promotion['alias']} "
            f"({promotion['reason']})"
        )


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _evaluation_summary(metrics: dict) -> str:
    video, calibration = metrics["video"], metrics["calibration"]
    lines = [f"test ({metrics['strategy']} aggregation, thresholds from {video['threshold_source']}):"]
    for level in ("face", "frame", "video"):
        m = metrics[level]
        lines.append(
            f"  {level:5} n={m['count']:<5} AUC {_number(m.get('auc'))}  accuracy {_number(m.get('accuracy'))}  "
            f"balanced {_number(m.get('balanced_accuracy'))}  F1 {_number(m.get('f1'))}  "
            f"log loss {_number(m.get('log_loss'))}"
        )
    lines.append(
        f"  video AUC 95% interval {_number(video.get('auc_ci_low'))}-{_number(video.get('auc_ci_high'))}; "
        f"{video['no_face_videos']} test videos without a face"
    )
    lines.append(
        f"  calibration: temperature {_number(calibration['temperature'])}, test face ECE "
        f"{_number(calibration['ece_face_before'])} -> {_number(calibration['ece_face_after'])}"
    )
    lines.append(
        "  robustness (video AUC): "
        + ", ".join(f"{name} {_number(row.get('video_auc'))}" for name, row in metrics["robustness"].items())
    )
    return "\n".join(lines)


def _registry(action):
    """Run a registry action; its errors (unreachable server, unknown name) become one-line messages."""
    from deepfake.tracking import connect

    def connected():
        connect(experiment=False)
        return action()

    return _domain(connected)


def _video_paths(paths: list[Path]) -> list[tuple[Path, str]]:
    """Files as given, folders expanded to the videos under them; a path with nothing to score carries why."""
    from deepfake.video.probe import is_video_file

    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            videos = sorted(p for p in path.rglob("*") if p.is_file() and is_video_file(p))
            found += [(video, "") for video in videos] or [(path, f"{path}: folder holds no video files")]
        elif path.exists():
            found.append((path, ""))
        else:
            found.append((path, f"{path}: no such file or folder"))
    return found


@app.command()
def predict(
    paths: list[Path] = typer.Argument(..., help="Video files and/or folders of videos."),
    model: str = typer.Option(
        None,
        help="Registered model URI (models:/NAME@ALIAS or models:/NAME/VERSION); default: the champion of register.name.",
    ),
    format: str = typer.Option("json", "--format", help="json (one record per line) or csv."),
) -> None:
    """Is each video a deepfake? Prints one row per video: verdict, P(fake), faces and per-person scores.

    Exit code 0 when every video was scored, 1 when any row is an ERROR, 2 when the model cannot be loaded.
    """
    import sys

    from tqdm import tqdm

    from deepfake.serving.loading import load_detector_model
    from deepfake.serving.video_detector import json_row, result_table

    if format not in ("json", "csv"):
        _fail(f"--format must be json or csv (got {format!r})")
    model = model or _config().register.model_uri
    # Not _registry: a model in the local SQLite registry loads without importing MLflow (1.7 s here);
    # load_detector_model connects to MLflow itself when it needs it.
    loaded = _domain(lambda: load_detector_model(model))
    typer.echo(f"model {model} (version {loaded.version}) loaded in {loaded.seconds:.1f} s", err=True)
    errors = 0
    items = _video_paths(paths)
    for number, (path, problem) in enumerate(
        tqdm(items, desc="videos", unit="video", disable=None if len(items) > 1 else True, file=sys.stderr)
    ):
        # predict() turns any failure of one video into its ERROR row; each row is written as soon as it is
        # made, so a batch stopped part way keeps every row made before.
        row = loaded.detector.predict(path) if not problem else loaded.detector.error_row(path, problem)
        row |= {"model": model, "model_version": loaded.version}
        errors += row["verdict"] == "ERROR"
        if format == "json":
            typer.echo(json.dumps(json_row(row)))
        else:
            typer.echo(result_table([row]).to_csv(index=False, header=number == 0), nl=False)
    raise typer.Exit(code=1 if errors else 0)


@app.command()
def models(name: str = typer.Option(None, help="Registered model name; default: register.name.")) -> None:
    """List the registered versions with their aliases, test metrics and promotion decisions."""
    from deepfake.tracking import model_versions

    table = _registry(lambda: model_versions(name or _config().register.name))
    typer.echo(table.to_string(index=False))


@app.command()
def promote(
    version: str = typer.Argument(..., help="Version to move the alias to (also how to roll back)."),
    name: str = typer.Option(None, help="Registered model name; default: register.name."),
    alias: str = typer.Option("champion", help="Alias to move."),
) -> None:
    """Move an alias (default: champion) to a version by hand: promotion or rollback."""
    from deepfake.tracking import promote as move_alias

    name = name or _config().register.name
    previous = _registry(lambda: move_alias(version, name, alias))
    typer.echo(f"{name}@{alias}: version {previous or '(none)'} -> {version}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    model: str = typer.Option(
        None, help="Registered model URI; an @alias is followed when it moves. Default: the champion of register.name."
    ),
    max_upload_mb: float = typer.Option(200.0, min=0.001, help="Largest upload accepted, in MB (413 beyond)."),
    timeout: float = typer.Option(
        120.0, min=0.001, help="Seconds from the end of an upload to its answer (504 beyond)."
    ),
    workers: int = typer.Option(2, min=1, help="Videos scored at once; more requests wait their turn."),
    max_pending: int = typer.Option(
        32, min=1, help="Requests in progress at once (uploading, waiting, scoring); 503 beyond."
    ),
    refresh: float = typer.Option(5.0, min=0.05, help="Seconds between checks of where the alias points."),
    upload_dir: Path = typer.Option(
        None, help="Where each upload's private temporary folder goes; default: the system temp dir."
    ),
) -> None:
    """Serve the web page (/) and the REST API (/v1/predict, /v1/health, /v1/model, docs at /docs)."""
    import uvicorn

    from deepfake.serving.app import ServeSettings, create_app
    from deepfake.serving.live_model import LiveModel
    from deepfake.serving.upload import MB

    model = model or _config().register.model_uri
    settings = ServeSettings(
        model_uri=model,
        max_upload_bytes=int(max_upload_mb * MB),
        timeout_s=timeout,
        workers=workers,
        max_pending=max_pending,
        refresh_s=refresh,
        upload_dir=upload_dir,
    )
    live = _registry(lambda: LiveModel.load(model, refresh))
    typer.echo(
        f"model {model} (version {live.current.version}) loaded in {live.current.seconds:.1f} s; "
        f"serving http://{host}:{port}/",
        err=True,
    )
    uvicorn.run(create_app(live, settings), host=host, port=port, log_level="info")


if __name__ == "__main__":
    app()
