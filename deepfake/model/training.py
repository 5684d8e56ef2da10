"""Training a face classifier: data from the faces table, self-blended pseudo-fakes, a resumable loop.

Every random draw is seeded from (seed, epoch, sample), and a checkpoint is written atomically after each
epoch, so a run killed at any point and started again finishes with the same model as one never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from deepfake.atomic import atomic_path
from deepfake.config import ModelParams, TrainParams
from deepfake.errors import DataError, first_line
from deepfake.images import read_image
from deepfake.model.augment import Degrade, SelfBlend, pose
from deepfake.model.backbones import WeightsOrigin
from deepfake.model.classifier import Classifier, build_classifier, early_layers, fake_logit
from deepfake.model.scores import p_fake
from deepfake.model.transforms import to_tensor

logger = logging.getLogger(__name__)


class FaceCrops(torch.utils.data.Dataset):
    """Face crops as training items: each item is a list of (image tensor, label) pairs.

    With self-blending a real crop yields itself and its pseudo-fake, so every batch is balanced by
    construction; dataset fakes yield themselves. With `seam_size` each pair also carries where the image's
    blend seam runs, a `seam_size` square map (`seam_target`): 0 on real and re-rendered faces, NaN (unknown)
    on labelled fakes.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        faces_dir: Path,
        *,
        size: int,
        train: bool,
        fakes: str,
        seed: int,
        degrade: Degrade | None = None,
        blend: SelfBlend | None = None,
        swap: float = 0.0,
        rendered: float = 0.0,
        video_share: float = 0.0,
        seam_size: int = 0,
    ) -> None:
        self.paths = [str(faces_dir / crop) for crop in rows["crop"]]
        self.labels = rows["label_id"].astype(int).to_numpy()
        self.landmarks = [np.array(json.loads(text), np.float32).reshape(5, 2) for text in rows["landmarks"]]
        self.size, self.train, self.fakes, self.seed = size, train, fakes, seed
        self.epoch = 0
        self.degrade, self.blend = degrade or Degrade(), blend or SelfBlend()
        # Pseudo-fakes may take their inner face from another person's real face (training only).
        self.swap = swap if train else 0.0
        # ...or be the whole face re-rendered, unblended, as a talking-head generator makes it (training only).
        self.rendered = rendered if train else 0.0
        self.people = rows["video_id"].to_numpy()  # a donor is never from the same video (the same person)
        self.donors = np.flatnonzero(self.labels == 0)
        self.poses = np.stack([pose(points) for points in self.landmarks]) if self.landmarks else np.zeros((0, 10))
        self.from_video = (rows["kind"] == "video").to_numpy() if video_share else np.ones(len(rows), bool)
        self.video_share = video_share
        self.seam_size = seam_size
        self.set_epoch(0)

    def __len__(self) -> int:
        return len(self.order)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = epoch_order(self.from_video, self.video_share, self.seed, epoch)

    def __getitem__(self, position: int) -> list[tuple[torch.Tensor, int]]:
        # Draws are seeded by the position in the epoch, so that a face repeated in one epoch varies.
        rng = np.random.default_rng([self.seed, self.epoch, position])
        index = int(self.order[position])
        crop = read_image(self.paths[index])
        label = int(self.labels[index])
        no_seam = np.zeros(crop.shape[:2], np.float32)
        images = [(crop, label, no_seam if label == 0 else None)]  # a labelled fake's seam is unknown
        if self.fakes != "dataset" and label == 0:
            # Landmarks are in the saved crop's pixels; blending happens before the resize to the input size.
            if self.rendered and rng.random() < self.rendered:  # drawn only when enabled: other draws unchanged
                fake, seam = self.blend.rendered(crop, rng), no_seam  # generated whole: no seam anywhere
            else:
                donor = self._donor(index, rng) if self.swap and rng.random() < self.swap else None
                fake, seam = self.blend.with_seam(crop, self.landmarks[index], rng, donor)
            images.append((fake, 1, seam))
        if self.train:
            # A real face and its pseudo-fake get the same degradation (as in the SBI paper), so the pair differs
            # only by the blend: compression, blur or colour alone never tell them apart.
            degradation = int(rng.integers(2**32))
            for n, (image, label, seam) in enumerate(images):
                seam = seam if self.seam_size else None  # not moved along when no target is made of it
                image, seam = self.degrade.with_seam(image, seam, np.random.default_rng(degradation))
                images[n] = (image, label, seam)
        pairs = [(to_tensor([image], self.size)[0], label) for image, label, _ in images]
        if not self.seam_size:
            return pairs
        return [(*pair, seam_target(seam, self.seam_size)) for pair, (_, _, seam) in zip(pairs, images)]

    def _donor(
        self, index: int, rng: np.random.Generator, candidates: int = 64
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """A real face of another person turned most like this one, among a few drawn at random (Face X-ray
        picks by landmarks too: a swap needs a face in the same pose)."""
        drawn = self.donors[rng.integers(len(self.donors), size=candidates)] if len(self.donors) else []
        others = [j for j in drawn if self.people[j] != self.people[index]]
        if not others:
            return None
        best = min(others, key=lambda j: float(np.sum((self.poses[j] - self.poses[index]) ** 2)))
        return read_image(self.paths[best]), self.landmarks[best]


def epoch_order(from_video: np.ndarray, video_share: float, seed: int, epoch: int) -> np.ndarray:
    """The rows one epoch trains on, as indices: each once (`video_share` 0, or faces of one kind only), else as
    many as there are rows, `video_share` of them from videos and the rest from photos. Each kind is walked in
    a fixed shuffled order, one window per epoch, so over the epochs every photo is seen as evenly as the share
    allows and the video faces repeat (wrapping around) rather than some never being drawn."""
    everything = np.arange(len(from_video))
    video, photo = everything[from_video], everything[~from_video]
    if not video_share or not len(video) or not len(photo):
        return everything
    wanted = {"video": round(video_share * len(everything))}
    wanted["photo"] = len(everything) - wanted["video"]
    picks = []
    for offset, (kind, rows) in enumerate((("video", video), ("photo", photo))):
        shuffled = np.random.default_rng([seed, offset]).permutation(rows)
        start = epoch * wanted[kind]
        picks.append(shuffled[np.arange(start, start + wanted[kind]) % len(shuffled)])
    return np.concatenate(picks)


def seam_target(seam: np.ndarray | None, size: int) -> torch.Tensor:
    """A seam map (crop pixels) as the seam head's `size` square target: each cell's share of the seam, scaled
    so the strongest cell is 1 (a thin outline averages to little over a cell); NaN when unknown."""
    if seam is None:
        return torch.full((size, size), float("nan"))
    cells = cv2.resize(seam, (size, size), interpolation=cv2.INTER_AREA)
    peak = float(cells.max())
    return torch.from_numpy(cells / peak if peak > 0 else cells)


def collate_pairs(items: list[list[tuple]]) -> tuple[torch.Tensor, ...]:
    """Images and labels (and seam targets when the items carry them) as batch tensors."""
    flat = [pair for item in items for pair in item]
    batch = torch.stack([pair[0] for pair in flat]), torch.tensor([pair[1] for pair in flat])
    return (*batch, torch.stack([pair[2] for pair in flat])) if len(flat[0]) > 2 else batch


class SeamHead(nn.Module):
    """Face X-ray's auxiliary task (Li et al., CVPR 2020; LAA-Net's heatmaps, CVPR 2024): from the backbone's
    stride-16 feature map, where a pseudo-fake's seam runs (nowhere on a real face). It asks the classifier's
    features to say where the evidence is, not only whether, which should leave them less to read from a
    face's overall look (sharpness, compression) and more from the blend. Trained beside the classifier and
    never part of it: the model saved, exported and scored is the same network either way."""

    def __init__(self, model: Classifier, input_size: int) -> None:
        super().__init__()
        layer, channels, self.size = stride16_layer(model.backbone, input_size)
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)
        self.features: torch.Tensor | None = None
        self._hook = layer.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.features = output

    def forward(self) -> torch.Tensor:
        """Seam logits (N, size, size) of the images the classifier saw last."""
        return self.conv(self.features).squeeze(1)

    def close(self) -> None:
        self._hook.remove()
        self.features = None


def stride16_layer(backbone: nn.Module, input_size: int) -> tuple[nn.Module, int, int]:
    """The last of the backbone's layers (`early_layers`) whose output is 1/16 of the input's side: its module,
    channels and side, found by one forward pass (the same rule for every backbone in the registry)."""
    outputs: dict[int, torch.Size] = {}
    layers = early_layers(backbone)
    hooks = [
        layer.register_forward_hook(lambda module, i, out, n=n: outputs.__setitem__(n, out.shape))
        for n, layer in enumerate(layers)
    ]
    parameter = next(backbone.parameters())
    was_training = backbone.training
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, 3, input_size, input_size, device=parameter.device))
    finally:
        backbone.train(was_training)
        for hook in hooks:
            hook.remove()
    side = math.ceil(input_size / 16)
    found = [n for n, shape in outputs.items() if len(shape) == 4 and shape[-1] == side]
    if not found:
        raise DataError(f"train.seam_loss: no layer of the backbone works at 1/16 of {input_size} px")
    return layers[found[-1]], int(outputs[found[-1]][1]), side


def seam_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the seam map over the images whose seam is known (zero when none is)."""
    known = ~torch.isnan(target)
    if not bool(known.any()):
        return logits.sum() * 0.0
    return nn.functional.binary_cross_entropy_with_logits(logits.float()[known], target[known])


def training_rows(faces: pd.DataFrame, params: TrainParams, split: str) -> pd.DataFrame:
    rows = faces[faces["split"] == split]
    if params.fakes == "self_blend":
        rows = rows[rows["label_id"] == 0]
    if params.faces_per_video:  # evenly spread over each video, so every part of it is seen
        picks = []
        for _, group in rows.groupby("video_id", sort=False):
            picks.extend(
                group.index[np.linspace(0, len(group) - 1, min(len(group), params.faces_per_video)).astype(int)]
            )
        rows = rows.loc[picks]
    return rows.reset_index(drop=True)


def with_media_kind(faces: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """The faces table with each face's media kind (video or photo) from the videos table: `train.video_share` needs it."""
    return faces.merge(videos[["video_id", "kind"]], on="video_id", how="left")


def class_weights(dataset: FaceCrops) -> torch.Tensor:
    """Cross-entropy weights that make REAL and FAKE count equally, whatever the mix of the data."""
    real = int((dataset.labels == 0).sum())
    fake = int((dataset.labels == 1).sum()) + (real if dataset.fakes != "dataset" else 0)
    total = real + fake
    return torch.tensor([total / (2 * max(real, 1)), total / (2 * max(fake, 1))], dtype=torch.float32)


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def join_process_group() -> Distributed:
    """Under torchrun (WORLD_SIZE > 1) join the group: NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(torch.distributed.get_rank(), world)


def pick_device(processes: int = 1) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    return torch.device("cpu")


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    device,
    scaler: torch.amp.GradScaler | None,
    progress: tqdm | None = None,
    precision: str = "fp32",
    seam_head: SeamHead | None = None,
    seam_weight: float = 0.0,
) -> dict:
    """One pass over the loader's batches; with `seam_head` (batches then carry seam targets) the loss minimised
    adds `seam_weight` times the seam map's, reported apart (`seam_loss`) so `loss` stays the classifier's."""
    model.train()
    total_loss, total_seam, correct, seen, started = 0.0, 0.0, 0, 0, time.perf_counter()
    for images, labels, *seams in loader:
        # Channels-last lets oneDNN (and cuDNN) run the convolutions faster; the numbers are the same.
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(images)
            loss = criterion(logits, labels)
            seam = seam_loss(seam_head(), seams[0].to(device, non_blocking=True)) if seam_head is not None else None
        minimised = loss if seam is None else loss + seam_weight * seam
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(minimised).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            minimised.backward()
            optimizer.step()
        total_loss += loss.item() * len(labels)
        total_seam += seam.item() * len(labels) if seam is not None else 0.0
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        if progress is not None:
            progress.update(len(labels))
            progress.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    elapsed = time.perf_counter() - started
    return {
        "loss": total_loss / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
    } | ({"seam_loss": total_seam / max(seen, 1)} if seam_head is not None else {})


def autocast(device: torch.device, precision: str):
    """The mixed precision a training step runs in: float16 on a GPU by default (with loss scaling), bfloat16
    when train.precision is bf16 (CPU or GPU), else plain float32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_proba(model: nn.Module, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """P(fake) and labels for every image the loader yields."""
    model.eval()
    probabilities, labels = [], []
    for images, batch_labels in loader:
        logits = model(images.to(device)).float()
        probabilities.append(p_fake(fake_logit(logits).cpu().numpy()))
        labels.append(batch_labels.numpy())
    if not probabilities:
        return np.zeros(0), np.zeros(0, int)
    return np.concatenate(probabilities), np.concatenate(labels)


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    if len(labels) == 0:
        return {"loss": math.nan, "accuracy": math.nan, "auc": math.nan}
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return {
        "loss": float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean()),
        "accuracy": float(((p >= 0.5) == labels).mean()),
        "auc": float(roc_auc_score(labels, p)) if len(np.unique(labels)) == 2 else math.nan,
    }


def validation_scores(probabilities: np.ndarray, labels: np.ndarray, face_labels: np.ndarray) -> dict:
    """Loss and accuracy over every validation image, and two AUCs that keep their kinds of fake apart.

    `face_labels` are the validation faces' own labels in loader order: each real face yields itself and its
    pseudo-fake, each labelled fake itself. `blend_auc` is real faces against their pseudo-fakes (people the
    model has not trained on: the signal that does not depend on where the labelled fakes came from), `auc`
    real faces against the dataset's labelled fakes (NaN when the split has none).
    """
    kinds = np.concatenate([["real", "blend"] if label == 0 else ["fake"] for label in face_labels] or [[]])
    result = score(probabilities, labels)
    real = kinds == "real"
    for name, kind in (("auc", "fake"), ("blend_auc", "blend")):
        pick = real | (kinds == kind)
        pair = labels[pick]
        result[name] = float(roc_auc_score(pair, probabilities[pick])) if len(np.unique(pair)) == 2 else math.nan
    return result


def improvement(metrics: dict, best: float, select_by: str) -> tuple[bool, float]:
    """Whether this epoch beats the best so far by the selection metric, and its value (higher is better)."""
    value = -metrics["loss"] if select_by == "loss" else metrics[select_by]
    if math.isnan(value):  # nothing to judge by (no such faces in validation): the later epoch is kept
        return True, best
    return value > best, value


def average_states(states: list[dict]) -> dict:
    """Several epochs' state_dicts as one: floating-point tensors averaged (batch-norm statistics too, which
    costs no pass over the data), other tensors (batch-norm counters) taken from the last."""
    return {
        key: sum(state[key] for state in states) / len(states) if tensor.is_floating_point() else tensor
        for key, tensor in states[-1].items()
    }


VALIDATION_KEYS = ("loss", "accuracy", "auc", "blend_auc")


@dataclass
class TrainResult:
    model: Classifier
    history: pd.DataFrame
    origin: WeightsOrigin
    best_epoch: int  # the epoch `train.select_by` chose
    resumed_from: int  # epochs already done when this run started
    validation: dict  # val_loss, val_accuracy, val_auc, val_blend_auc of the model returned
    averaged_epochs: list[int] = field(default_factory=list)  # the epochs averaged into the model; empty: best_epoch's

    @property
    def kept(self) -> str:
        """Which weights the model holds, in words."""
        if self.averaged_epochs:
            return f"epochs {self.averaged_epochs[0]}-{self.averaged_epochs[-1]} averaged"
        return f"best epoch {self.best_epoch}"


def run_key(faces: pd.DataFrame, model: ModelParams, params: TrainParams) -> str:
    """What a checkpoint must match to be resumed: the params and the exact training data."""
    data = pd.util.hash_pandas_object(faces[["crop", "split", "label_id", "landmarks"]], index=False).to_numpy()
    settings = json.dumps([asdict(model), asdict(params)], sort_keys=True).encode()
    return hashlib.sha256(settings + data.tobytes()).hexdigest()[:16]


def fit(
    faces: pd.DataFrame,
    faces_dir: str | os.PathLike,
    model_params: ModelParams,
    params: TrainParams,
    *,
    checkpoint: str | os.PathLike | None = None,
    after_epoch: Callable[[int, Classifier], None] | None = None,
) -> TrainResult:
    """Train on the train split, validate on val each epoch, keep the best; resume from `checkpoint`.

    The best epoch is the one with the highest `params.select_by` on validation: by default the AUC of the
    held-out people's real faces against their pseudo-fakes, which a handful of confounded labelled videos
    cannot dominate the way they dominate the loss.

    Under torchrun each process trains on its share of every epoch's batches (DistributedDataParallel
    averages the gradients, so all hold the same weights) and validates on the whole validation split;
    only rank 0 logs and writes the checkpoint. The global batch stays `batch_size`.

    With `params.average_epochs` > 1 the model returned is instead the average of the last that many epochs'
    weights (stochastic weight averaging over the cosine schedule's tail), validated like an epoch: no single
    epoch's luck, and no choice among epochs whose validation AUCs differ by less than their noise.

    `after_epoch(epoch, model)` is called on rank 0 after each epoch (1-based) with that epoch's weights, e.g. to
    keep every epoch's model for a benchmark that judges longer training without training again.
    """
    faces_dir = Path(faces_dir)
    if params.video_share and "kind" not in faces:
        raise DataError("train.video_share needs each face's media kind: a 'kind' column (video or photo)")
    group = join_process_group()
    log = logger.info if group.main else (lambda *_: None)
    torch.manual_seed(params.seed)
    model, origin = build_classifier(model_params.backbone, model_params.weights, dropout=model_params.dropout)
    device = pick_device(group.world)
    model.to(device, memory_format=torch.channels_last)
    seam_head = SeamHead(model, model_params.input_size).to(device) if params.seam_loss else None

    train_set = FaceCrops(
        training_rows(faces, params, "train"),
        faces_dir,
        size=model_params.input_size,
        train=True,
        fakes=params.fakes,
        seed=params.seed,
        degrade=Degrade(h264=params.h264, sharpen=params.sharpen, noise=params.noise),
        blend=SelfBlend(sharpen=params.blend_sharpen, mask_bend=params.mask_bend),
        swap=params.swap,
        rendered=params.rendered,
        video_share=params.video_share,
        seam_size=seam_head.size if seam_head is not None else 0,
    )
    if len(train_set) == 0:
        raise DataError(
            "no training faces: the train split has no usable face crops "
            + ("(self-blending trains on REAL faces)" if params.fakes == "self_blend" else "")
        )
    val_rows = faces[faces["split"] == "val"].reset_index(drop=True)
    # Validation sees the dataset's own labels and, for its real faces, fixed pseudo-fakes: so there is a
    # signal to stop on even when the validation split holds no fakes.
    val_set = FaceCrops(
        val_rows, faces_dir, size=model_params.input_size, train=False, fakes="both", seed=params.seed + 1
    )
    weights = class_weights(train_set)
    criterion = nn.CrossEntropyLoss(weight=weights.to(device))
    trainable = [*model.parameters(), *(seam_head.parameters() if seam_head is not None else [])]
    optimizer = torch.optim.Adam(trainable, lr=params.lr, weight_decay=params.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, params.epochs))
        if params.scheduler == "cosine"
        else None
    )
    # float16 on a GPU needs loss scaling; bfloat16 has float32's range and does not.
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and params.precision == "fp32" else None
    images_per_item = 2 if params.fakes != "dataset" else 1
    loader_options = dict(
        num_workers=params.loader_workers,
        collate_fn=collate_pairs,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )

    val_loader = torch.utils.data.DataLoader(val_set, batch_size=params.batch_size, **loader_options)

    key = run_key(faces, model_params, params)
    state = {
        "epoch": 0,
        "history": [],
        "best_score": -math.inf,
        "best_epoch": -1,
        "best_state": None,
        "stale": 0,
        "recent": [],  # the last `average_epochs` epochs' weights, when averaging
    }
    resumed_from = 0
    saved = read_checkpoint(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
    if saved is not None:
        if saved.get("key") == key:
            model.load_state_dict(saved["model"])
            if seam_head is not None:
                seam_head.load_state_dict(saved["seam_head"])
            optimizer.load_state_dict(saved["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(saved["scheduler"])
            state = {k: saved[k] for k in state}
            state["history"] = json.loads(saved["history"])
            resumed_from = state["epoch"]
            log("resuming from %s after epoch %d", checkpoint, resumed_from)
        else:
            log("ignoring %s: it belongs to other params or data", checkpoint)

    for epoch in range(state["epoch"], params.epochs):
        if state["stale"] >= params.patience:
            break
        torch.manual_seed(params.seed * 1000 + epoch)  # dropout and anything else drawing from torch
        train_set.set_epoch(epoch)
        model.freeze_backbone(epoch < params.freeze_epochs, early=params.freeze_layers)
        batch_items = max(1, params.batch_size // images_per_item // group.world)
        drop_last = len(train_set) > params.batch_size
        if group.world > 1:
            sampler = torch.utils.data.DistributedSampler(
                train_set, group.world, group.rank, shuffle=True, seed=params.seed * 1000, drop_last=drop_last
            )
            sampler.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                train_set, batch_size=batch_items, sampler=sampler, drop_last=drop_last, **loader_options
            )
            # Wrapped each epoch, after freezing: DDP syncs the gradients of the parameters that train now.
            trained = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        else:
            order = torch.Generator().manual_seed(params.seed * 1000 + epoch)
            loader = torch.utils.data.DataLoader(
                train_set, batch_size=batch_items, shuffle=True, generator=order, drop_last=drop_last, **loader_options
            )
            trained = model
        with tqdm(
            total=len(loader) * batch_items * images_per_item,
            desc=f"epoch {epoch + 1}/{params.epochs}",
            unit="img",
            disable=None if group.main else True,
            dynamic_ncols=True,
        ) as progress:
            train_metrics = train_one_epoch(
                trained,
                criterion,
                optimizer,
                loader,
                device,
                scaler,
                progress,
                precision=params.precision,
                seam_head=seam_head,
                seam_weight=params.seam_loss,
            )
        if group.world > 1:
            # DDP syncs gradients, not batch-norm statistics: every process takes rank 0's, as DDP's forward does.
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, 0)
            # Each process saw its share: average loss and accuracy, add up the speed.
            totals = torch.tensor(
                [train_metrics["loss"], train_metrics["accuracy"], train_metrics["images_per_s"]],
                dtype=torch.float64,
                device=device,
            )
            torch.distributed.all_reduce(totals)
            train_metrics = {
                "loss": totals[0].item() / group.world,
                "accuracy": totals[1].item() / group.world,
                "images_per_s": totals[2].item(),
            }
        probabilities, labels = predict_proba(model, val_loader, device)
        val_metrics = validation_scores(probabilities, labels, val_set.labels)
        row = {
            "epoch": epoch + 1,
            "train_loss": train_metrics["loss"],
            "train_accuracy": train_metrics["accuracy"],
            "val_loss": val_metrics["loss"],
            "val_accuracy": val_metrics["accuracy"],
            "val_auc": val_metrics["auc"],
            "val_blend_auc": val_metrics["blend_auc"],
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": train_metrics["images_per_s"],
        } | ({"train_seam_loss": train_metrics["seam_loss"]} if "seam_loss" in train_metrics else {})
        if scheduler is not None:
            scheduler.step()
        state["history"].append(row)
        log(
            f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} auc {row['val_auc']:.3f} "
            f"blend auc {row['val_blend_auc']:.3f}"
        )
        # Without a validation split there is nothing to choose by: the last epoch is the one kept.
        improved, value = (
            (True, -math.inf) if len(val_set) == 0 else improvement(val_metrics, state["best_score"], params.select_by)
        )
        if improved:
            state.update(
                best_score=value,
                best_epoch=epoch + 1,
                stale=0,
                best_state=copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()}),
            )
        else:
            state["stale"] += 1
        if params.average_epochs > 1:
            weights = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
            state["recent"] = [*state["recent"], weights][-params.average_epochs :]
        state["epoch"] = epoch + 1
        if checkpoint and group.main:
            save_checkpoint(checkpoint, key, model, optimizer, scheduler, state, seam_head)
        if after_epoch is not None and group.main:
            after_epoch(epoch + 1, model)

    if seam_head is not None:
        seam_head.close()
    history = pd.DataFrame(state["history"])
    averaged = []
    if len(state["recent"]) > 1:
        model.load_state_dict(average_states(state["recent"]))
        averaged = list(range(state["epoch"] - len(state["recent"]) + 1, state["epoch"] + 1))
        validation = validation_scores(*predict_proba(model, val_loader, device), val_set.labels)
        validation = {f"val_{key}": validation[key] for key in VALIDATION_KEYS}
        log(
            "kept epochs %d-%d averaged: val loss %.4f auc %.3f blend auc %.3f",
            averaged[0],
            averaged[-1],
            *(validation[f"val_{key}"] for key in ("loss", "auc", "blend_auc")),
        )
    else:
        model.load_state_dict(state["best_state"])
        validation = {f"val_{key}": history.iloc[state["best_epoch"] - 1][f"val_{key}"] for key in VALIDATION_KEYS}
    return TrainResult(
        model.cpu(), history, origin, state["best_epoch"], resumed_from, validation, averaged_epochs=averaged
    )


def read_checkpoint(path) -> dict | None:
    """The saved training state, or None (and a warning) when the file is damaged: training then starts afresh."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for a truncated or foreign file
        logger.warning(
            "ignoring %s: not a readable checkpoint (%s); training starts from the beginning",
            path,
            first_line(error),
        )
        return None
    if not isinstance(saved, dict) or not {"key", "model", "optimizer", "history"} <= set(saved):
        logger.warning("ignoring %s: not a checkpoint of this trainer; training starts from the beginning", path)
        return None
    return saved


def save_checkpoint(path, key, model, optimizer, scheduler, state, seam_head: SeamHead | None = None) -> None:
    payload = {
        "key": key,
        "model": model.state_dict(),
        **({"seam_head": seam_head.state_dict()} if seam_head is not None else {}),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        **{k: v for k, v in state.items() if k != "history"},
        "history": json.dumps(state["history"]),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def save_model(model: Classifier, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
