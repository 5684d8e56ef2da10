"""The face classifier: backbones by name, the crop-to-tensor transform, training augmentations and
self-blended pseudo-fakes, and the resumable training loop."""
