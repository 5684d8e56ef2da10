"""Reading params.yaml, the one place pipeline settings live (DVC tracks the keys each stage reads)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"{path}: not found; run from the project root") from None
    except yaml.YAMLError as error:
        raise SystemExit(f"{path}: not valid YAML ({error})") from None
    if not isinstance(params, dict):
        raise SystemExit(f"{path}: expected a mapping of sections (sample:, dataset:, ...)")
    return params
