"""What the classifier's output means, without torch: every score of a face is the FAKE-minus-REAL logit, and
`p_fake` is the one place a probability is made from it (for two classes the softmax's FAKE column is exactly
this sigmoid)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FaceClassifier(Protocol):
    """What scoring needs of a model: `Classifier` (PyTorch) and `OnnxClassifier` (ONNX Runtime) both are one."""

    def face_logits(
        self, crops_bgr: list[np.ndarray], size: int, *, batch_size: int = 16, flip: bool = True
    ) -> np.ndarray:
        """FAKE-minus-REAL logit per BGR face crop, resized to `size`; with `flip` averaged with the mirror's."""
        ...


def p_fake(fake_logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(fake) from FAKE-minus-REAL logits, calibrated by `temperature` (1: as the network says)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(fake_logits, dtype=float) / temperature))
