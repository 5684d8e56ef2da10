"""Prefect flow `shared-model` (`make shared-model`): the recommended model, trained from ../shared/data.

The project's own recipe (params.yaml: model, training, frames, faces, aggregation) runs in a workspace,
build/shared-model, whose params.yaml differs only in where the data comes from: the REAL clips and labelled
fakes of real-videos, and the 5,303 face photos of real-faces. The workspace links the project's dvc.yaml,
stages and package, so it is the same pipeline, run by the `retrain` flow (DVC caching: a rerun redoes only
what changed). The model is registered in the project's registry and set as its champion: the promotion
gate compares test metrics, which mean nothing across datasets, so the user's request decides here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect import flow, get_run_logger
from prefect.states import Failed

from flows.retrain import dvc_env, retrain

PROJECT = Path(__file__).resolve().parents[1]
LINKED = ("dvc.yaml", "stages", "deepfake", ".dvcignore")


def shared_sources(shared: Path) -> dict:
    return {
        "videos": {"root": str(shared / "real-videos"), "metadata": "auto", "label": ""},
        "photos": {"root": str(shared / "real-faces"), "metadata": "faces.csv", "label": "REAL"},
    }


def prepare_workspace(workspace: Path, shared: Path) -> None:
    """The workspace: links to the pipeline's code, a DVC repository, and params.yaml with the shared sources."""
    missing = [name for name in ("real-videos", "real-faces") if not (shared / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{shared}: no {' or '.join(missing)} folder; point --shared at the shared data")
    workspace.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = workspace / name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(PROJECT / name, workspace))
    if not (workspace / ".dvc").is_dir():
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=workspace, check=True)
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["dataset"]["sources"] = shared_sources(shared.resolve())
    text = "# Written by `make shared-model` from the project's params.yaml: only dataset.sources differs.\n"
    (workspace / "params.yaml").write_text(text + yaml.safe_dump(params, sort_keys=False))


def shared_faces(shared: Path, workspace: Path) -> int:
    """The workspace's pipeline up to its face crops, without training (`make shared-faces`): what
    `bench/quality.py --train` trains each recipe on. Returns dvc's exit code; its output goes to the console."""
    prepare_workspace(workspace, shared)
    return subprocess.run([sys.executable, "-m", "dvc", "repro", "faces"], cwd=workspace, env=dvc_env()).returncode


@flow(name="shared-model", log_prints=True)
def shared_model(shared: str = str(PROJECT.parent / "shared" / "data"), workspace: str = "build/shared-model"):
    """Train, evaluate and register the recipe on the shared data; make the new version the champion."""
    from deepfake.tracking import connect, promote

    logger = get_run_logger()
    folder = (PROJECT / workspace).resolve()
    try:
        prepare_workspace(folder, Path(shared))
    except FileNotFoundError as error:
        return Failed(message=str(error))
    # The stages run in the workspace but register in the project's registry, with artifacts in its mlruns/.
    os.environ["MLFLOW_TRACKING_URI"] = connect(PROJECT)
    summary = retrain(project=str(folder), pull=False, push=False)
    if not isinstance(summary, dict):  # a failed stage: its own message, as the retrain flow reports it
        return summary
    promotion = summary["promotion"]
    if promotion["alias"] != "champion":
        previous = promote(str(promotion["version"]), promotion["name"])
        logger.info(
            f"{promotion['name']} v{promotion['version']} set as champion by hand (was v{previous}): "
            f"the gate's comparison ({promotion['reason']}) is across different test data"
        )
    print(
        f"shared model: {promotion['model_uri']} is {promotion['name']}@champion; card and metrics in {folder}/reports"
    )
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", nargs="?", default=str(PROJECT.parent / "shared" / "data"))
    parser.add_argument("--faces-only", action="store_true", help="stop after the faces stage: no training")
    args = parser.parse_args()
    if args.faces_only:
        try:
            sys.exit(shared_faces(Path(args.shared), PROJECT / "build" / "shared-model"))
        except FileNotFoundError as error:
            sys.exit(str(error))
    shared_model(args.shared)
