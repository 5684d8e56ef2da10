"""The face classifier: a backbone with a new 2-class head, built, loaded and scored.

Every score of a face, in training, evaluation and inference, is the FAKE-minus-REAL logit (`fake_logit`);
P(fake) is `deepfake.model.scores.p_fake(logit, temperature)`. `deepfake.model.onnx_classifier` runs the same
network on ONNX Runtime for evaluation and inference.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch import nn

from deepfake.errors import WeightsUnavailable, first_line
from deepfake.model.backbones import BACKBONES, WeightsOrigin, load_state_dict_file
from deepfake.model.transforms import to_tensor

logger = logging.getLogger(__name__)


class Classifier(nn.Module):
    """A backbone that maps images to feature vectors, then a linear head to REAL/FAKE logits."""

    def __init__(self, backbone: nn.Module, features: int, num_classes: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def face_logits(self, crops_bgr: list[np.ndarray], size: int, *, batch_size: int = 16, flip: bool = True):
        """`face_logits(self, ...)`: the scoring interface `OnnxClassifier` shares."""
        return face_logits(self, crops_bgr, size, batch_size=batch_size, flip=flip)

    def torch_model(self) -> Classifier:
        return self

    def freeze_backbone(self, frozen: bool, *, early: int = 0) -> None:
        """Freeze the whole backbone (`frozen`), else only its first `early` layers (see `early_layers`)."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        if not frozen:
            for layer in early_layers(self.backbone)[:early]:
                for parameter in layer.parameters():
                    parameter.requires_grad_(False)


def early_layers(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's layers with weights in forward order, block lists opened up: for EfficientNet-Lite the
    stem convolution, its batch norm, then each MBConv block; for ResNet conv1, bn1, then each residual block.

    Freezing the first few keeps generic edge and texture filters and, because nothing before them needs a
    gradient, skips their backward pass: the early layers work at the highest resolution, so on a CPU this
    is most of the training time (efficientnet_lite0, 224 px: 5 frozen layers train 1.6x faster).
    """
    layers = []
    for child in backbone.children():
        if isinstance(child, (nn.ModuleList, nn.Sequential)):
            layers.extend(module for module in child if any(True for _ in module.parameters()))
        elif any(True for _ in child.parameters()):
            layers.append(child)
    return layers


def build_classifier(
    backbone: str, weights: str = "auto", *, num_classes: int = 2, dropout: float = 0.2
) -> tuple[Classifier, WeightsOrigin]:
    """The named backbone with `weights` (imagenet | none | auto | a state_dict path) and a fresh head."""
    network, features, origin = BACKBONES.get(backbone)(weights)
    logger.info("backbone %s: weights %s", backbone, origin.describe())
    return Classifier(network, features, num_classes, dropout), origin


def load_classifier(weights_path: str | os.PathLike, backbone: str, *, dropout: float = 0.0) -> Classifier:
    """A trained classifier from its state_dict file (refused unless it is a plain state_dict), in eval mode."""
    network, features, _ = BACKBONES.get(backbone)("none")
    model = Classifier(network, features, dropout=dropout)
    try:
        model.load_state_dict(load_state_dict_file(weights_path))
    except RuntimeError as error:
        raise WeightsUnavailable(f"{weights_path}: does not fit backbone {backbone} ({first_line(error)})") from None
    # Channels-last lets oneDNN run the (depthwise) convolutions ~1.5-2x faster on CPU; same numbers.
    return model.to(memory_format=torch.channels_last).eval()


@torch.no_grad()
def face_logits(
    model: nn.Module, crops_bgr: list[np.ndarray], size: int, *, batch_size: int = 16, flip: bool = True
) -> np.ndarray:
    """FAKE-minus-REAL logit per face crop (`p_fake` turns it into a probability).

    With `flip` each crop is also scored mirrored and the two logits averaged (test-time augmentation: the
    training data was flipped at random, so both views are in distribution).
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(crops_bgr), batch_size):
        batch = (
            to_tensor(crops_bgr[start : start + batch_size], size)
            .to(device)
            .contiguous(memory_format=torch.channels_last)
        )
        logits = model(batch).float()
        if flip:
            logits = (logits + model(torch.flip(batch, dims=[3])).float()) / 2
        out.append(fake_logit(logits).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def fake_logit(logits: torch.Tensor) -> torch.Tensor:
    """The FAKE-minus-REAL difference of a (N, 2) logit batch: the score every level is built from."""
    return logits[:, 1] - logits[:, 0]
