"""The trained face classifier on ONNX Runtime: the same network and weights as `deepfake.model.classifier`,
exported once per weights file (cached by content, `deepfake.onnx_runtime`), scored without importing torch.

Logits agree with PyTorch's to ~1e-5 (tests/test_onnx_classifier.py); evaluation and inference use this
runtime by default (`evaluate.runtime`), so the temperature and threshold are fitted on the scores
inference will give.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deepfake.model.transforms import to_array
from deepfake.onnx_runtime import cached_export, export_module, file_key, session


class OnnxClassifier:
    """The trained classifier's `face_logits` on an ONNX Runtime session (`Classifier.face_logits` in torch)."""

    def __init__(self, weights_path: str | os.PathLike, backbone: str, input_size: int, threads: int = 0) -> None:
        self.weights_path, self.backbone = weights_path, backbone
        self.session = session(classifier_onnx(weights_path, backbone, input_size), threads)
        self._torch = None

    def torch_model(self):
        """The same weights as a PyTorch module, loaded on first use: Grad-CAM needs gradients."""
        if self._torch is None:
            from deepfake.model.classifier import load_classifier

            self._torch = load_classifier(self.weights_path, self.backbone)
        return self._torch

    def face_logits(
        self, crops_bgr: list[np.ndarray], size: int, *, batch_size: int = 16, flip: bool = True
    ) -> np.ndarray:
        """FAKE-minus-REAL logit per face crop; with `flip` averaged with the mirrored crop's."""
        out = []
        for start in range(0, len(crops_bgr), batch_size):
            batch = to_array(crops_bgr[start : start + batch_size], size)
            if flip:  # one run for both views: the mirror images are the second half of the batch
                batch = np.concatenate([batch, np.ascontiguousarray(batch[..., ::-1])])
            (logits,) = self.session.run(None, {"image": batch})
            fake = logits[:, 1] - logits[:, 0]
            out.append((fake[: len(fake) // 2] + fake[len(fake) // 2 :]) / 2 if flip else fake)
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def classifier_onnx(weights_path: str | os.PathLike, backbone: str, input_size: int) -> Path:
    """The classifier in `weights_path` as an ONNX file (exported on first use, then cached by content)."""
    key = file_key(Path(weights_path), backbone, str(input_size), "opset17")

    def export(path: Path) -> None:
        import torch

        from deepfake.model.classifier import load_classifier

        model = load_classifier(weights_path, backbone).to(memory_format=torch.contiguous_format)
        example = torch.zeros(2, 3, input_size, input_size)
        export_module(model, example, path, ["image"], ["logits"], {"image": {0: "n"}, "logits": {0: "n"}})

    return cached_export(f"classifier-{backbone}", key, export)


def load_face_classifier(weights_path: str | os.PathLike, backbone: str, input_size: int, runtime: str = "onnx"):
    """The trained classifier for scoring, on ONNX Runtime (`onnx`) or PyTorch (`torch`); either has
    `face_logits(crops, size, batch_size=, flip=)`."""
    if runtime == "onnx":
        return OnnxClassifier(weights_path, backbone, input_size)
    from deepfake.model.classifier import load_classifier

    return load_classifier(weights_path, backbone)
