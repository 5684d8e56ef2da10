"""The pipeline's settings: `params.yaml` read once into typed, checked sections.

Each section is a frozen dataclass that the library takes as constructor keywords (`FaceParams(margin=0.3)`),
so a function's signature says which settings it reads. The defaults here are the shipped `params.yaml`
(a test keeps the two equal), so code that builds a section by hand and a pipeline run agree.

A key that is not a setting, or a value of the wrong type or out of range, stops loading with the key and
what is allowed. DVC tracks the keys each stage lists in `dvc.yaml`; `paths:` is interpolated there too,
so a folder is named once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deepfake.errors import ConfigError

PARAMS_FILE = "params.yaml"
CHAMPION, CHALLENGER = "champion", "challenger"


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))} (got {value!r})")


def _at_least(key: str, value, low) -> None:
    if value < low:
        raise ConfigError(f"{key} must be at least {low} (got {value!r})")


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes, relative to the project root (dvc.yaml interpolates these)."""

    sample: str = "data/sample"
    interim: str = "data/interim"
    frames: str = "data/frames"
    faces: str = "data/faces"
    models: str = "models"
    reports: str = "reports"

    @property
    def videos_table(self) -> str:
        return f"{self.interim}/videos.csv"

    @property
    def faces_table(self) -> str:
        return f"{self.faces}/faces.csv"

    def source_table(self, name: str) -> str:
        return f"{self.interim}/sources/{name}.csv"

    def source_rejects(self, name: str) -> str:
        return f"{self.interim}/sources/{name}.rejects.csv"

    @property
    def model_file(self) -> str:
        return f"{self.models}/model.pt"

    @property
    def checkpoint(self) -> str:  # not a DVC output: it must survive a killed run to be resumed from
        return f"{self.models}/checkpoint.pt"


@dataclass(frozen=True)
class SampleSpec:
    """The demo's own clips (`deepfake make-sample`): real clips per photo and manipulated clips of them."""

    faces: str = ""  # a folder of face photos; empty: the portraits bundled with scikit-image and matplotlib
    clips_per_face: int = 3
    fakes_per_real: int = 1
    frames: int = 48
    fps: float = 24.0
    width: int = 480
    height: int = 360
    seed: int = 0

    def __post_init__(self) -> None:
        _at_least("sample.clips_per_face", self.clips_per_face, 1)
        _at_least("sample.fakes_per_real", self.fakes_per_real, 0)
        _at_least("sample.frames", self.frames, 2)


@dataclass(frozen=True)
class SplitParams:
    val: float = 0.15  # fractions of all videos; groups (a fake and its original) never straddle splits
    test: float = 0.15
    seed: int = 42
    use_given: bool = False  # honour the metadata's split column where it is set

    def __post_init__(self) -> None:
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise ConfigError(
                f"dataset.split.val and .test must be fractions summing below 1 (got {self.val}, {self.test})"
            )


@dataclass(frozen=True)
class SourceParams:
    """One folder of labelled media: videos, face photos or both."""

    root: str
    metadata: str = "auto"  # auto: metadata.json, else metadata.csv, else real/ and fake/ folders; or a file under root
    label: str = ""  # the label of files the metadata leaves unlabelled (REAL for a folder of real face photos)


def _default_sources() -> dict[str, SourceParams]:
    return {"sample": SourceParams(root="data/sample")}


@dataclass(frozen=True)
class DatasetParams:
    # name -> folder; each is scanned by its own DVC stage (`source@<name>`), so adding one rescans only it
    sources: dict[str, SourceParams] = field(default_factory=_default_sources)
    min_frames: int = 2  # shorter videos are rejected
    workers: int = 4  # threads probing and hashing files
    split: SplitParams = field(default_factory=SplitParams)

    def __post_init__(self) -> None:
        _at_least("dataset.min_frames", self.min_frames, 1)
        _at_least("dataset.workers", self.workers, 1)
        if not self.sources:
            raise ConfigError("dataset.sources must name at least one folder")
        for name in self.sources:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
                raise ConfigError(f"dataset.sources: {name!r} must be letters, digits, - and _ (it names a file)")


@dataclass(frozen=True)
class FrameSampling:
    """`per_video` evenly spaced frames, or `per_second` frames for each second of video when that is set.

    Sampled frames are stored as JPEG at `jpeg_quality` (or PNG, lossless, when it is null); inference makes
    the same round trip in memory, so the model sees the pixels it was trained and calibrated on.
    """

    per_video: int = 16  # 32 (DFDC's winner) scored no better on the quality benchmark, at 1.5x the time
    per_second: float | None = None
    jpeg_quality: int | None = 95
    # pyav: FFmpeg's decoder through PyAV with frame threads (1.3-1.5x OpenCV's on 1080p H.264, same pixels);
    # opencv: OpenCV's FFmpeg backend.
    decoder: str = "pyav"

    def __post_init__(self) -> None:
        _choice("frames.decoder", self.decoder, ("pyav", "opencv"))
        if self.per_second is None:
            _at_least("frames.per_video", self.per_video, 1)
        elif self.per_second <= 0:
            raise ConfigError(f"frames.per_second must be positive (got {self.per_second})")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"frames.jpeg_quality must be 1-100 or null for lossless PNG (got {self.jpeg_quality})")


@dataclass(frozen=True)
class FaceParams:
    """MTCNN's thresholds, the crop around each face and how crops are stored (see FrameSampling)."""

    max_side: int = 960  # longer side of the image MTCNN sees; 720 misses small faces in 1080p DFDC clips
    min_prob: float = 0.9
    # A face continuing one kept in the previous sampled frame (boxes overlapping by track_iou) is kept down to
    # this: swaps lower MTCNN's confidence (a DFDC fake's face: 0.73-0.97), stray detections rarely reach min_prob.
    # At or above min_prob: no exception.
    keep_prob: float = 0.7
    # Shorter box side as a fraction of the frame's shorter side: smaller faces are background noise, and
    # MTCNN's cost is set by the smallest face it must find (0.05: 54 px in 1080p, 12 px in 240p video).
    min_size: float = 0.05
    max_faces: int = 4  # per frame, largest first
    margin: float = 0.3  # crop side = (1 + margin) x the longer box side
    crop_size: int = 224
    track_iou: float = 0.2  # a face joins a track when its box overlaps the track's last box this much
    jpeg_quality: int | None = 95
    runtime: str = "onnx"  # MTCNN on ONNX Runtime (faster on CPU), or torch: facenet-pytorch as shipped
    # Whole-frame detection on every n-th sampled frame; in between, each face is looked for again only around
    # where it was (whole-frame detection again as soon as one is lost). 1: every frame whole.
    detect_every: int = 4

    def __post_init__(self) -> None:
        _at_least("faces.max_side", self.max_side, 32)
        if not 0 <= self.keep_prob <= 1:
            raise ConfigError(f"faces.keep_prob must be between 0 and 1 (got {self.keep_prob})")
        _at_least("faces.detect_every", self.detect_every, 1)
        _choice("faces.runtime", self.runtime, ("onnx", "torch"))
        _at_least("faces.max_faces", self.max_faces, 1)
        _at_least("faces.crop_size", self.crop_size, 16)
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"faces.jpeg_quality must be 1-100 or null for lossless PNG (got {self.jpeg_quality})")

    @property
    def lowest_prob(self) -> float:
        """The least probability a face in a video can be kept at (keep_prob above min_prob changes nothing)."""
        return min(self.keep_prob, self.min_prob)


@dataclass(frozen=True)
class PoolSettings:
    """The pool that runs the frames and faces stages, one video per job."""

    workers: int = 2
    threads_per_worker: int = 0  # 0: the machine's cores shared out between the workers
    retries: int = 2  # a failure other than a bad video is retried this many times
    retry_delay_s: float = 0.5
    dask: str = ""  # faces stage: "" worker processes here; "local" a Dask LocalCluster; or a scheduler address

    def __post_init__(self) -> None:
        _at_least("workers.workers", self.workers, 1)
        _at_least("workers.retries", self.retries, 0)

    @property
    def threads(self) -> int:
        return self.threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, self.workers))


WEIGHT_CHOICES = ("imagenet", "none", "auto")  # or a path to a state_dict
FAKE_SOURCES = ("self_blend", "dataset", "both")


@dataclass(frozen=True)
class ModelParams:
    backbone: str = "efficientnet_lite0"  # a name in deepfake.model.backbones.BACKBONES
    weights: str = "imagenet"  # imagenet | none | auto (imagenet when on disk, else random init) | a state_dict path
    input_size: int = 224
    dropout: float = 0.2

    def __post_init__(self) -> None:
        _at_least("model.input_size", self.input_size, 16)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 5
    batch_size: int = 16  # images per step; under self-blending half are real and half their pseudo-fakes
    lr: float = 1e-4
    weight_decay: float = 1e-5
    scheduler: str = "cosine"  # or "none"
    freeze_epochs: int = 0  # train only the head for this many first epochs
    freeze_layers: int = 5  # the backbone's first layers (deepfake.model.classifier.early_layers) never train
    patience: int = 2  # stop when the selection metric has not improved for this many epochs
    # The epoch kept: blend_auc (held-out real faces vs their pseudo-fakes), auc (vs labelled fakes) or loss
    select_by: str = "blend_auc"
    fakes: str = "self_blend"  # self_blend: pseudo-fakes from real faces; dataset: the labelled fakes; both
    faces_per_video: int = 16  # at most this many crops per video and epoch (0: all)
    # 0: every training face once per epoch; else this share of each epoch's faces comes from videos and the
    # rest from photos (an epoch as long as before): photos can outnumber video faces 15 to 1
    video_share: float = 0.0
    loader_workers: int = 2
    processes: int = 1  # > 1: the train stage runs under torchrun, DistributedDataParallel over that many processes
    h264: float = 0.0  # chance a training face (and its pseudo-fake, alike) is re-encoded as H.264 at CRF 23-38
    sharpen: float = 0.5  # chance a training face (and its pseudo-fake, alike) is sharpened, as enhancers do
    noise: float = 0.0  # chance a training face (and its pseudo-fake, alike) gets camera noise (1-8 grey levels)
    precision: str = "fp32"  # fp32 | bf16: bfloat16 autocast (CPUs with AVX512-BF16 or AMX, and GPUs)
    blend_sharpen: float = 0.15  # chance a pseudo-fake's pasted face is sharpened, not softened or left (at most 0.85)
    swap: float = 1.0  # chance a pseudo-fake pastes another person's face (pose-matched, colour-matched) instead
    rendered: float = 0.0  # chance a pseudo-fake is the whole face re-rendered, unblended (a generated talking head)
    mask_bend: float = 0.0  # chance a pseudo-fake's mask outline is made irregular (as segmentation masks are)
    # weight of the auxiliary loss on where each pseudo-fake's seam runs (Face X-ray), 0: off; single process only
    seam_loss: float = 0.0
    # > 1: the model kept is the average of the last this many epochs' weights, not the one epoch select_by picks
    average_epochs: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("train.fakes", self.fakes, FAKE_SOURCES)
        _choice("train.precision", self.precision, ("fp32", "bf16"))
        _choice("train.scheduler", self.scheduler, ("cosine", "none"))
        _choice("train.select_by", self.select_by, ("blend_auc", "auc", "loss"))
        _at_least("train.epochs", self.epochs, 1)
        _at_least("train.batch_size", self.batch_size, 2)
        _at_least("train.processes", self.processes, 1)
        _at_least("train.average_epochs", self.average_epochs, 0)
        for name in ("h264", "sharpen", "noise", "swap", "rendered", "mask_bend"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"train.{name} is a chance, 0 to 1 (got {getattr(self, name)})")
        if not 0 <= self.blend_sharpen <= 0.85:
            raise ConfigError(
                f"train.blend_sharpen is a chance, 0 to 0.85: the rest softens the pasted face (got {self.blend_sharpen})"
            )
        if self.seam_loss < 0:
            raise ConfigError(f"train.seam_loss is a loss weight, 0 (off) or more (got {self.seam_loss})")
        if self.seam_loss and self.processes > 1:
            raise ConfigError("train.seam_loss trains its head in one process: set train.processes to 1")
        if not 0 <= self.video_share < 1:
            raise ConfigError(f"train.video_share is a share of each epoch, 0 to below 1 (got {self.video_share})")


STRATEGIES = ("mean", "confident", "max_track")


@dataclass(frozen=True)
class AggregationParams:
    strategy: str = "confident"  # the rule the verdict, threshold and promotion gate use
    fake_threshold: float = 0.8  # confident rule: a frame above this is confidently fake...
    real_threshold: float = 0.2  # ...and below this confidently real
    min_fake_frames: int = 6  # ...and this many confident fakes (and more than 40% of frames) make the call
    min_track_faces: int = (
        3  # max_track: shorter tracks (passers-by, false detections) are ignored when a longer one exists
    )

    def __post_init__(self) -> None:
        _choice("aggregate.strategy", self.strategy, STRATEGIES)
        if not 0 <= self.real_threshold < self.fake_threshold <= 1:
            raise ConfigError(
                "aggregate thresholds need 0 <= real_threshold < fake_threshold <= 1 "
                f"(got {self.real_threshold}, {self.fake_threshold})"
            )


@dataclass(frozen=True)
class EvaluateParams:
    flip: bool = True  # average each face's logit with its mirror image's
    batch_size: int = 16  # faces per forward pass: small batches stay in CPU cache
    calibrate: bool = True  # fit a temperature on the validation faces
    bootstrap: int = 1000  # rounds for the video AUC interval
    no_face_score: float | None = None  # None: videos without a face are reported, not scored
    jpeg_quality: int = 50  # robustness: test faces recompressed at this quality...
    downscale: float = 0.5  # ...and shrunk by this factor (then enlarged back, as inference would)...
    sharpen: float = 1.5  # ...and sharpened by this amount (unsharp mask), as face enhancers leave faces
    min_val_videos: int = 3  # per class: fewer, and the temperature stays 1 and thresholds 0.5 (too little to fit on)
    min_val_auc: float = (
        0.6  # validation face AUC below this: the model is not informative there; T = 1, thresholds 0.5
    )
    seed: int = 0
    runtime: str = "onnx"  # the classifier at evaluation and inference: onnx (ONNX Runtime) | torch

    def __post_init__(self) -> None:
        _at_least("evaluate.batch_size", self.batch_size, 1)
        _choice("evaluate.runtime", self.runtime, ("onnx", "torch"))
        if not 0 < self.downscale <= 1:
            raise ConfigError(f"evaluate.downscale must be in (0, 1] (got {self.downscale})")
        if not self.sharpen > 0:
            raise ConfigError(f"evaluate.sharpen must be above 0 (got {self.sharpen})")


@dataclass(frozen=True)
class RegisterParams:
    """The video-level model in the MLflow registry (mlflow.db, or MLFLOW_TRACKING_URI)."""

    name: str = "deepfake-detector"
    gate_metric: str = (
        "video.auc"  # a key of reports/metrics.json; a version becomes champion only if it beats the champion
    )
    min_improvement: float = 0.0

    @property
    def model_uri(self) -> str:
        """The model that predict, serve and score-inbox load unless told otherwise: the champion."""
        return f"models:/{self.name}@{CHAMPION}"


@dataclass(frozen=True)
class Config:
    paths: Paths = field(default_factory=Paths)
    sample: SampleSpec = field(default_factory=SampleSpec)
    dataset: DatasetParams = field(default_factory=DatasetParams)
    frames: FrameSampling = field(default_factory=FrameSampling)
    faces: FaceParams = field(default_factory=FaceParams)
    workers: PoolSettings = field(default_factory=PoolSettings)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    aggregate: AggregationParams = field(default_factory=AggregationParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    register: RegisterParams = field(default_factory=RegisterParams)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | os.PathLike = PARAMS_FILE) -> Config:
    """params.yaml as a checked Config; ConfigError names the file, the key and what is allowed."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    try:
        return build(Config, raw if raw is not None else {}, "")
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def project_config(path: str | os.PathLike = PARAMS_FILE) -> Config:
    """The project's config when run from its root, else the defaults (which equal the shipped params.yaml):
    what the CLI uses for its defaults, so `deepfake predict` works from any folder."""
    return load_config(path) if Path(path).is_file() else Config()


def build(cls, values, where: str):
    """An instance of dataclass `cls` from a mapping, checking every key and value's type."""
    label = where.rstrip(".") or "params"
    if not isinstance(values, dict):
        raise ConfigError(f"{label} must be a mapping of settings (got {type(values).__name__})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}{unknown[0]} is not a setting; {label} takes: {', '.join(fields)}")
    missing = [
        f.name
        for f in fields.values()
        if f.name not in values and f.default is f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}{missing[0]} must be set; {label} takes: {', '.join(fields)}")
    kwargs = {name: _value(hints[name], value, f"{where}{name}") for name, value in values.items()}
    return cls(**kwargs)


def _value(hint, value, key: str):
    if typing.get_origin(hint) is dict:  # name -> section, e.g. dataset.sources
        _, section = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of names to settings (got {type(value).__name__})")
        return {str(name): _value(section, item, f"{key}.{name}") for name, item in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value if value is not None else {}, f"{key}.")
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key} must be set (got null)")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    wanted = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"{key} must be {wanted} (got {value!r})")
