"""The `deepfake` command."""

from __future__ import annotations

import json
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


@app.command("make-sample")
def make_sample_command(
    out: Path = typer.Argument(Path("data/sample"), help="Folder to write the clips and metadata.json to (replaced)."),
    faces: Path = typer.Option(None, "--faces", help="Folder of face photos; default: portraits bundled with dependencies."),
    clips_per_face: int = typer.Option(3, min=1, help="Real clips per face photo."),
    fakes_per_real: int = typer.Option(1, min=0, help="Manipulated clips per real clip."),
    frames: int = typer.Option(48, min=2, help="Frames per clip."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same clips."),
) -> None:
    """Make labelled sample clips offline: animated real faces and face-swap-style fakes."""
    from deepfake.sample import SampleError, SampleSpec, make_sample

    spec = SampleSpec(clips_per_face=clips_per_face, fakes_per_real=fakes_per_real, frames=frames, seed=seed)
    try:
        make_sample(out, faces=faces, spec=spec, log=typer.echo)
    except SampleError as error:
        _fail(str(error))


@app.command()
def ingest(
    root: Path = typer.Argument(..., help="Folder of videos (with metadata.json, metadata.csv, or real/ and fake/)."),
    metadata: str = typer.Option("auto", help="Metadata file under ROOT, or 'auto'."),
    out_dir: Path = typer.Option(Path("data/interim"), help="Where videos.csv and rejects.csv are written."),
    val: float = typer.Option(0.15, help="Fraction of videos for validation."),
    test: float = typer.Option(0.15, help="Fraction of videos for test."),
    seed: int = typer.Option(42, help="Split seed."),
    use_given_split: bool = typer.Option(False, help="Honour the metadata's split column where set."),
    min_frames: int = typer.Option(2, min=1, help="Reject videos with fewer frames."),
) -> None:
    """Validate and split a labelled video dataset, as the pipeline's dataset stage does."""
    from deepfake.data import MetadataError, SplitParams, build_dataset

    try:
        dataset = build_dataset(
            root, metadata, split=SplitParams(val=val, test=test, seed=seed, use_given=use_given_split),
            min_frames=min_frames,
        )
    except (MetadataError, ValueError) as error:
        _fail(str(error))
    videos_path, rejects_path = dataset.write(out_dir)
    typer.echo(dataset.summary())
    for row in dataset.rejects.itertuples():
        typer.echo(f"rejected {row.path}: {row.reason}")
    typer.echo(f"wrote {videos_path} and {rejects_path}")


@app.command()
def summary(project: Path = typer.Option(Path("."), help="Project root holding data/.")) -> None:
    """Summarise what the pipeline has produced: videos per split and label, rejects, frames and faces."""
    import pandas as pd

    data = project / "data"
    videos_path = data / "interim" / "videos.csv"
    if not videos_path.is_file():
        _fail(f"{videos_path} not found: run `dvc repro` first")
    videos = pd.read_csv(videos_path)
    rejects = pd.read_csv(data / "interim" / "rejects.csv")
    typer.echo(videos.groupby(["split", "label"]).size().unstack(fill_value=0).to_string())
    typer.echo(f"{len(videos)} videos accepted, {len(rejects)} rejected ({data / 'interim'})")
    for name, unit in (("frames", "frames"), ("faces", "face crops")):
        report_path = data / name / "report.csv"
        if report_path.is_file():
            report = pd.read_csv(report_path)
            count = report["faces" if name == "faces" else "frames"].sum()
            problems = report[report["status"] != "ok"]
            typer.echo(f"{count} {unit} from {len(report) - len(problems)} videos ({data / name})"
                       + "".join(f"\n  {row.status} {row.video_id}: {row.reason}" for row in problems.itertuples()))
    train_path = project / "reports" / "train.json"
    if train_path.is_file():
        train = json.loads(train_path.read_text())
        typer.echo(f"model: {train['backbone']} ({train['weights_used']} weights), best epoch {train['best_epoch']} of "
                   f"{train['epochs_run']}, val loss {train['val_loss']:.3f}, val AUC {train['val_auc']:.3f} "
                   f"({project / 'models' / 'model.pt'})")
    metrics_path = project / "reports" / "metrics.json"
    if metrics_path.is_file():
        typer.echo(_evaluation_summary(json.loads(metrics_path.read_text())))
    promotion_path = project / "reports" / "promotion.json"
    if promotion_path.is_file():
        promotion = json.loads(promotion_path.read_text())
        typer.echo(f"registry: {promotion['name']} version {promotion['version']} -> @{promotion['alias']} "
                   f"({promotion['reason']})")


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _evaluation_summary(metrics: dict) -> str:
    video, calibration = metrics["video"], metrics["calibration"]
    lines = [f"test ({metrics['strategy']} aggregation, thresholds from {video['threshold_source']}):"]
    for level in ("face", "frame", "video"):
        m = metrics[level]
        lines.append(f"  {level:5} n={m['count']:<5} AUC {_number(m.get('auc'))}  accuracy {_number(m.get('accuracy'))}  "
                     f"balanced {_number(m.get('balanced_accuracy'))}  F1 {_number(m.get('f1'))}  "
                     f"log loss {_number(m.get('log_loss'))}")
    lines.append(f"  video AUC 95% interval {_number(video.get('auc_ci_low'))}-{_number(video.get('auc_ci_high'))}; "
                 f"{video['no_face_videos']} test videos without a face")
    lines.append(f"  calibration: temperature {_number(calibration['temperature'])}, test face ECE "
                 f"{_number(calibration['ece_face_before'])} -> {_number(calibration['ece_face_after'])}")
    lines.append("  robustness (video AUC): " + ", ".join(
        f"{name} {_number(row.get('video_auc'))}" for name, row in metrics["robustness"].items()))
    return "\n".join(lines)


def _registry(action):
    """Run a registry action; its errors (unreachable server, unknown name) become one-line messages."""
    from deepfake.registry import RegistryError, connect

    try:
        connect(experiment=False)
        return action()
    except RegistryError as error:
        _fail(str(error))


def _video_paths(paths: list[Path]) -> list[tuple[Path, str]]:
    """Files as given, folders expanded to the videos under them; a path with nothing to score carries why."""
    from deepfake.video import is_video_file

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
    model: str = typer.Option("models:/deepfake-detector@champion", help="Registered model URI (models:/NAME@ALIAS or models:/NAME/VERSION)."),
    format: str = typer.Option("json", "--format", help="json (one record per line) or csv."),
) -> None:
    """Is each video a deepfake? Prints one row per video: verdict, P(fake), faces and per-person scores.

    Exit code 0 when every video was scored, 1 when any row is an ERROR, 2 when the model cannot be loaded.
    """
    import sys

    from tqdm import tqdm

    from deepfake.detector import json_row, result_table
    from deepfake.registry import load_detector_model

    if format not in ("json", "csv"):
        _fail(f"--format must be json or csv (got {format!r})")
    loaded = _registry(lambda: load_detector_model(model))
    typer.echo(f"model {model} (version {loaded.version}) loaded in {loaded.seconds:.1f} s", err=True)
    rows = []
    items = _video_paths(paths)
    for path, problem in tqdm(items, desc="videos", unit="video", disable=None if len(items) > 1 else True, file=sys.stderr):
        row = loaded.detector.predict(path) if not problem else loaded.detector.error_row(path, problem)
        row |= {"model": model, "model_version": loaded.version}
        rows.append(row)
        if format == "json":
            typer.echo(json.dumps(json_row(row)))
    if format == "csv":
        typer.echo(result_table(rows).to_csv(index=False), nl=False)
    raise typer.Exit(code=1 if any(row["verdict"] == "ERROR" for row in rows) else 0)


@app.command()
def models(name: str = typer.Option("deepfake-detector", help="Registered model name.")) -> None:
    """List the registered versions with their aliases, test metrics and promotion decisions."""
    from deepfake.registry import model_versions

    table = _registry(lambda: model_versions(name))
    typer.echo(table.to_string(index=False))


@app.command()
def promote(
    version: str = typer.Argument(..., help="Version to move the alias to (also how to roll back)."),
    name: str = typer.Option("deepfake-detector", help="Registered model name."),
    alias: str = typer.Option("champion", help="Alias to move."),
) -> None:
    """Move an alias (default: champion) to a version by hand: promotion or rollback."""
    from deepfake.registry import promote as move_alias

    previous = _registry(lambda: move_alias(version, name, alias))
    typer.echo(f"{name}@{alias}: version {previous or '(none)'} -> {version}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    model: str = typer.Option("models:/deepfake-detector@champion", help="Registered model URI; an @alias is followed when it moves."),
    max_upload_mb: float = typer.Option(200.0, min=0.001, help="Largest upload accepted, in MB (413 beyond)."),
    timeout: float = typer.Option(120.0, min=0.001, help="Seconds from the end of an upload to its answer (504 beyond)."),
    workers: int = typer.Option(2, min=1, help="Videos scored at once; more requests wait their turn."),
    max_pending: int = typer.Option(32, min=1, help="Requests in progress at once (uploading, waiting, scoring); 503 beyond."),
    refresh: float = typer.Option(5.0, min=0.05, help="Seconds between checks of where the alias points."),
    upload_dir: Path = typer.Option(None, help="Where each upload's private temporary folder goes; default: the system temp dir."),
) -> None:
    """Serve the web page (/) and the REST API (/v1/predict, /v1/health, /v1/model, docs at /docs)."""
    import uvicorn

    from deepfake.serve import MB, LiveModel, ServeSettings, create_app

    settings = ServeSettings(model_uri=model, max_upload_bytes=int(max_upload_mb * MB), timeout_s=timeout,
                             workers=workers, max_pending=max_pending, refresh_s=refresh, upload_dir=upload_dir)
    live = _registry(lambda: LiveModel.load(model, refresh))
    typer.echo(f"model {model} (version {live.current.version}) loaded in {live.current.seconds:.1f} s; "
               f"serving http://{host}:{port}/", err=True)
    uvicorn.run(create_app(live, settings), host=host, port=port, log_level="info")


if __name__ == "__main__":
    app()
