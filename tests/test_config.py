"""One typed config: params.yaml and the dataclass defaults agree, bad keys and values name themselves, and
paths and the model name are written in one place."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from deepfake.cli import app
from deepfake.config import Config, load_config, project_config
from deepfake.errors import ConfigError
from tests.conftest import PROJECT_ROOT


def shipped() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def write_params(folder: Path, changes: dict) -> Path:
    params = shipped()
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        section = params
        for part in parents:
            section = section[part]
        section[key] = value
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_shipped_params_equal_the_dataclass_defaults():
    assert load_config(PROJECT_ROOT / "params.yaml") == Config()
    # Every setting is written in params.yaml, so a reader sees them all in one file.
    assert set(shipped()) == set(asdict(Config()))
    for section, values in asdict(Config()).items():
        assert set(shipped()[section]) == set(values), section


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"faces.marign": 0.3}, "faces.marign is not a setting; faces takes: max_side, min_prob"),
        (
            {"dataset.split.tset": 0.1},
            "dataset.split.tset is not a setting; dataset.split takes: val, test, seed, use_given",
        ),
        ({"train.fakes": "gan"}, "train.fakes must be one of self_blend, dataset, both (got 'gan')"),
        ({"aggregate.strategy": "max"}, "aggregate.strategy must be one of mean, confident, max_track"),
        ({"train.epochs": "eight"}, "train.epochs must be int (got 'eight')"),
        ({"train.epochs": 2.5}, "train.epochs must be int (got 2.5)"),
        ({"evaluate.flip": 1}, "evaluate.flip must be bool (got 1)"),
        ({"frames.per_second": "fast"}, "frames.per_second must be float or null"),
        ({"register.name": None}, "register.name must be set (got null)"),
        ({"faces.jpeg_quality": 0}, "faces.jpeg_quality must be 1-100 or null"),
        ({"workers.workers": 0}, "workers.workers must be at least 1 (got 0)"),
        ({"train.rendered": 1.5}, "train.rendered is a chance, 0 to 1 (got 1.5)"),
        ({"train.mask_bend": -0.1}, "train.mask_bend is a chance, 0 to 1 (got -0.1)"),
        ({"train.seam_loss": -1}, "train.seam_loss is a loss weight, 0 (off) or more (got -1.0)"),
        ({"train.seam_loss": 1.0, "train.processes": 2}, "train.seam_loss trains its head in one process"),
        ({"train.sharpen": -0.1}, "train.sharpen is a chance, 0 to 1 (got -0.1)"),
        ({"train.noise": 1.5}, "train.noise is a chance, 0 to 1 (got 1.5)"),
        ({"train.blend_sharpen": 0.9}, "train.blend_sharpen is a chance, 0 to 0.85"),
        ({"evaluate.sharpen": 0}, "evaluate.sharpen must be above 0 (got 0.0)"),
    ],
)
def test_a_bad_key_or_value_names_the_key_and_what_is_allowed(tmp_path, changes, message):
    with pytest.raises(ConfigError) as error:
        load_config(write_params(tmp_path, changes))
    assert str(error.value).startswith(f"{tmp_path / 'params.yaml'}: ")
    assert message in str(error.value)


def test_an_unknown_section_and_unreadable_files_say_so(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  backbone: resnet18\nmodels:\n  x: 1\n")
    with pytest.raises(ConfigError, match="models is not a setting; params takes: paths, sample, dataset"):
        load_config(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found; run from the project root"):
        load_config(tmp_path / "missing.yaml")


def test_a_partial_params_file_takes_the_defaults_for_the_rest(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("faces:\n  margin: 0.5\n")
    config = load_config(path)
    assert config.faces.margin == 0.5 and config.faces.crop_size == Config().faces.crop_size
    assert config.train == Config().train


def test_stages_and_the_library_never_spell_out_a_pipeline_path():
    """Folders are named in params.yaml's paths (read through Config) and interpolated by dvc.yaml."""
    literal = re.compile(r"""["'](data/(interim|frames|faces|sample)|models/model\.pt|reports/)""")
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for folder in ("stages", "deepfake", "flows")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
        if path.name != "config.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    spelled = [
        f"{name}: {entry}"
        for name, stage in stages.items()
        for key in ("deps", "outs", "metrics", "plots")
        for item in stage.get(key, [])
        for entry in ([item] if isinstance(item, str) else list(item))
        if entry.startswith(("data/", "models/", "reports/"))
    ]
    assert spelled == []


def test_the_model_name_comes_from_register_name(tmp_path, monkeypatch):
    """Renaming the registered model in params.yaml moves the default of predict, models, serve and score-inbox."""
    write_params(tmp_path, {"register.name": "house-detector"})
    monkeypatch.chdir(tmp_path)
    assert project_config().register.model_uri == "models:/house-detector@champion"
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 2 and "no registered model 'house-detector'" in result.output
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "clip.mp4")])
    assert result.exit_code == 2 and "no registered model 'house-detector'" in result.output


def test_the_cli_reports_a_bad_params_file_in_one_line(tmp_path, monkeypatch):
    write_params(tmp_path, {"faces.marign": 0.3})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 2
    assert "faces.marign is not a setting" in result.output and "Traceback" not in result.output
