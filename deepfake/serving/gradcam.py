"""Grad-CAM (Selvaraju et al., 2017): which parts of a face crop pushed the classifier towards FAKE.

The last convolutional block's feature maps are weighted by the mean gradient of the FAKE-minus-REAL logit
(the score the verdict is built from) with respect to each map, summed and rectified: a coarse map of where
evidence for "fake" was found, upsampled onto the crop.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
from torch import nn

from deepfake.model.classifier import Classifier, fake_logit
from deepfake.model.transforms import to_tensor


def last_conv_block(model: Classifier) -> nn.Module:
    """The module whose output is the backbone's last spatial feature maps, for each known backbone."""
    backbone = model.backbone
    if hasattr(backbone, "layer4"):  # torchvision ResNet
        return backbone.layer4
    if hasattr(backbone, "features"):  # torchvision MobileNetV2: the last 1x1 conv + BN + ReLU6
        return backbone.features[-1]
    if hasattr(backbone, "_bn1"):  # efficientnet-lite: head conv + BN (its activation is a shared module)
        return backbone._bn1
    raise ValueError(f"Grad-CAM does not know the last conv block of {type(backbone).__name__}")


def gradcam(model: Classifier, crops_bgr: list[np.ndarray], input_size: int) -> np.ndarray:
    """One heatmap in [0, 1] per crop, at the crop's size: (N, H, W) float32."""
    if not crops_bgr:
        return np.zeros((0, 0, 0), np.float32)
    layer = last_conv_block(model)
    caller = threading.get_ident()
    captured: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output) -> None:
        # The model is shared: other requests' predictions run through this hook too, in their own threads.
        if threading.get_ident() == caller:
            captured["maps"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            device = next(model.parameters()).device
            batch = to_tensor(crops_bgr, input_size).to(device).contiguous(memory_format=torch.channels_last)
            batch.requires_grad_(True)  # gradients reach the maps even if the weights were frozen
            logits = model(batch).float()
            # Gradients of the maps only: the shared model's parameters get no .grad written into them.
            (grads,) = torch.autograd.grad(fake_logit(logits).sum(), captured["maps"])
    finally:
        handle.remove()
    maps = captured["maps"].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cams = torch.relu((weights * maps).sum(dim=1)).cpu().numpy()
    height, width = crops_bgr[0].shape[:2]
    heatmaps = []
    for cam in cams:
        peak = cam.max()
        cam = cam / peak if peak > 0 else cam
        heatmaps.append(cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR))
    return np.clip(np.stack(heatmaps), 0, 1)


def overlay(crop_bgr: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The crop with the heatmap blended over it in the JET colour map (red: most evidence for fake)."""
    colours = cv2.applyColorMap((heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(crop_bgr, 1 - alpha, colours, alpha, 0)
