"""The registered model's code, logged as MLflow "models from code": loading it imports this file, never
unpickles an object. Video paths in (column `video`), one verdict row per video out."""

from __future__ import annotations

import json

import mlflow.models
import mlflow.pyfunc
import pandas as pd

from deepfake.serving.video_detector import RESULT_COLUMNS


class DeepfakeVideoModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from deepfake.serving.loading import detector_from_artifacts

        self.detector = detector_from_artifacts(context.artifacts["weights"], context.artifacts["config"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        videos = model_input["video"] if isinstance(model_input, pd.DataFrame) else model_input
        table = pd.DataFrame([self.detector.predict(path) for path in videos], columns=RESULT_COLUMNS)
        table["tracks"] = table["tracks"].map(json.dumps)
        return table


mlflow.models.set_model(DeepfakeVideoModel())
