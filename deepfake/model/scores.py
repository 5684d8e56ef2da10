"""What the classifier's output means, without torch: every score of a face is the FAKE-minus-REAL logit, and
`p_fake` is the one place a probability is made from it (for two classes the softmax's FAKE column is exactly
this sigmoid)."""

from __future__ import annotations

import numpy as np


def p_fake(fake_logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(fake) from FAKE-minus-REAL logits, calibrated by `temperature` (1: as the network says)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(fake_logits, dtype=float) / temperature))
