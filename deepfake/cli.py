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


if __name__ == "__main__":
    app()
