"""`make shared-model`'s workspace: the project's pipeline and recipe, with only the data sources changed."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from deepfake.config import SampleSpec, load_config
from deepfake.data.sample import make_sample
from flows.shared_model import LINKED, prepare_workspace, shared_faces
from tests.conftest import PROJECT_ROOT
from tests.test_sources import photo_folder


def test_the_workspace_runs_the_project_recipe_on_the_shared_folders(tmp_path):
    shared = tmp_path / "shared"
    make_sample(shared / "real-videos", spec=SampleSpec(clips_per_face=1, frames=4, width=160, height=120))
    photo_folder(shared / "real-faces", people=2)
    workspace = tmp_path / "workspace"
    prepare_workspace(workspace, shared)
    prepare_workspace(workspace, shared)  # again: nothing to redo, nothing breaks

    for name in LINKED:
        assert (workspace / name).resolve() == (PROJECT_ROOT / name).resolve()
    recipe, project = load_config(workspace / "params.yaml"), load_config(PROJECT_ROOT / "params.yaml")
    sources = recipe.dataset.sources
    assert sources["photos"].root == str((shared / "real-faces").resolve()) and sources["photos"].label == "REAL"
    assert sources["videos"].root == str((shared / "real-videos").resolve())
    assert dataclasses.replace(recipe, dataset=project.dataset) == project  # the recipe itself is the project's
    assert recipe.dataset.split == project.dataset.split

    # `make shared-faces`: the same pipeline up to the crops bench/quality.py trains on, and no further.
    assert shared_faces(shared, workspace) == 0
    videos = pd.read_csv(workspace / "data/interim/videos.csv")
    assert (videos["kind"] == "photo").sum() == 4 and (videos["kind"] == "video").sum() == 4
    faces = pd.read_csv(workspace / "data/faces/faces.csv")
    assert set(faces["video_id"]) <= set(videos["video_id"]) and len(faces) > 0
    assert not (workspace / "models").exists()


def test_a_missing_shared_folder_is_named(tmp_path):
    (tmp_path / "real-videos").mkdir()
    with pytest.raises(FileNotFoundError, match="no real-faces folder"):
        prepare_workspace(tmp_path / "workspace", tmp_path)
