"""The registered model's code, logged as MLflow "models from code": loading it imports this file, never
unpickles an object. Video paths in (column `video`), one verdict row per video out."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import pandas as pd

from deepfake.serving.video_detector import RESULT_COLUMNS, DetectorConfig, VideoDetector


class DeepfakeVideoModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from deepfake.model.classifier import load_classifier

        config = DetectorConfig.from_dict(json.loads(Path(context.artifacts["config"]).read_text()))
        self.detector = VideoDetector(load_classifier(context.artifacts["weights"], config.backbone), config)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        videos = model_input["video"] if isinstance(model_input, pd.DataFrame) else model_input
        table = pd.DataFrame([self.detector.predict(path) for path in videos], columns=RESULT_COLUMNS)
        table["tracks"] = table["tracks"].map(json.dumps)
        return table


mlflow.models.set_model(DeepfakeVideoModel())
