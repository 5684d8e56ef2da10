"""Benchmark of the training stage.

1. Throughput: images/s of the stage's loop (FaceCrops with self-blending and augmentations, train_one_epoch)
   against a bare torchvision loop (ImageFolder, ToTensor + Normalize, the same model, batch and threads),
   on the same crops, in the same run.
2. Quality on the project's own sample data with held-out identities: clips made (make_sample) from the
   shared face photos and from a still of each single-face REAL shared video; trained on two thirds of the
   photos' people, scored on videos of everyone else (video score = mean face p_fake, each face scored with
   its mirror image as evaluation does); the default recipe, and resnet18 with weights: none. The photos'
   five held-out people alone give 20 test videos (one swapped pair moves the AUC by 0.01, its 95% interval
   is about +-0.1); the stills add ~30 people never trained on.
3. Trained on ../shared/data/real-videos (respecting the dataset split): validation AUC.

    python bench/train.py [--steps N] [--skip-quality] [--recipes A,B] [--skip-throughput] [--skip-shared]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from deepfake.config import (
    EvaluateParams,
    FaceParams,
    FrameSampling,
    ModelParams,
    PoolSettings,
    SampleSpec,
    SplitParams,
    TrainParams,
)
from deepfake.data.dataset import build_dataset
from deepfake.data.sample import make_sample
from deepfake.data.split import split_by_group
from deepfake.model.classifier import build_classifier, face_logits
from deepfake.model.scores import p_fake
from deepfake.model.training import FaceCrops, collate_pairs, fit, train_one_epoch, training_rows
from deepfake.video.extraction import update_faces, update_frames
from deepfake.video.frames import read_frames, sample_frame_indices

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def faces_for(root: Path, work: Path, per_video: int, videos: pd.DataFrame | None = None) -> pd.DataFrame:
    videos = build_dataset(root).videos if videos is None else videos
    pool = PoolSettings(workers=2)
    update_frames(videos, work / "frames", FrameSampling(per_video=per_video), pool)
    return update_faces(videos, work / "frames", work / "faces", FaceParams(), pool).table


def throughput(faces: pd.DataFrame, faces_dir: Path, steps: int) -> dict:
    from torchvision import datasets, transforms

    model_params, params = ModelParams(), TrainParams(loader_workers=2)
    torch.set_num_threads(2)
    results = {}
    # Bare torchvision: the crops as an ImageFolder, the simplest transforms, the same model and batch.
    model, _ = build_classifier(model_params.backbone, model_params.weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)

    class RealFake(datasets.ImageFolder):  # the faces folder also holds parts/, which is not a class
        def find_classes(self, directory):
            return ["real", "fake"], {"real": 0, "fake": 1}

    folder = RealFake(
        str(faces_dir),
        transform=transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
        ),
    )
    loader = torch.utils.data.DataLoader(folder, batch_size=params.batch_size, shuffle=True, num_workers=2)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    seen, started = 0, None
    for step, (images, labels) in enumerate(loader):
        if step == 1:  # the first step pays for worker start-up in both loops: leave it out
            started, seen = time.perf_counter(), 0
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
        if step == steps:
            break
    results["bare_torchvision_images_per_s"] = round(seen / (time.perf_counter() - started), 2)

    model, _ = build_classifier(model_params.backbone, model_params.weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    dataset = FaceCrops(
        training_rows(faces, params, "train"), faces_dir, size=224, train=True, fakes="self_blend", seed=0
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=params.batch_size // 2, shuffle=True, num_workers=2, collate_fn=collate_pairs
    )

    class FirstSteps:  # the stage's own epoch function over the same number of steps
        def __iter__(self):
            for step, batch in enumerate(loader):
                if step == 1:
                    self.started = time.perf_counter()
                    self.seen = 0
                if step > 0:
                    self.seen += len(batch[1])
                yield batch
                if step == steps:
                    return

    steps_iter = FirstSteps()
    train_one_epoch(model, torch.nn.CrossEntropyLoss(), optimizer, steps_iter, torch.device("cpu"), None)
    results["stage_loop_images_per_s"] = round(steps_iter.seen / (time.perf_counter() - steps_iter.started), 2)
    results["stage_vs_bare"] = round(results["stage_loop_images_per_s"] / results["bare_torchvision_images_per_s"], 3)
    return results


def video_auc(model, faces: pd.DataFrame, faces_dir: Path, size: int) -> tuple[float, pd.DataFrame]:
    """Video AUC with the project's inference path: face_logits (with the default flip averaging), video
    score = mean face P(fake)."""
    import cv2

    flip = EvaluateParams().flip
    scores = []
    for video_id, group in faces.groupby("video_id"):
        crops = [cv2.imread(str(faces_dir / crop)) for crop in group["crop"]]
        probabilities = p_fake(face_logits(model, crops, size, flip=flip))
        scores.append(
            {"video_id": video_id, "label_id": group["label_id"].iloc[0], "p_fake": float(probabilities.mean())}
        )
    table = pd.DataFrame(scores)
    return float(roc_auc_score(table["label_id"], table["p_fake"])), table


def people_photos(folder: Path) -> set[str]:
    """Fill `folder` with the shared face photos and a still (middle frame) of each REAL shared video showing
    one face at least 100 px tall; return the stills' names."""
    import cv2

    from deepfake.video.face_detection import detect_faces_batch, load_face_detector
    from deepfake.video.probe import probe_video

    folder.mkdir(parents=True, exist_ok=True)
    for photo in (SHARED / "face-photos").iterdir():
        shutil.copy(photo, folder / photo.name)
    metadata = json.loads((SHARED / "real-videos" / "metadata.json").read_text())
    detector, stills = load_face_detector(), set()
    for name, entry in sorted(metadata.items()):
        if entry["label"] != "REAL":
            continue
        path = SHARED / "real-videos" / "videos" / name
        info = probe_video(path)
        middle = sample_frame_indices(info.frames, info.fps, FrameSampling(per_video=1))
        frame = next((frame for _, _, frame in read_frames(path, middle)), None)
        faces = detect_faces_batch(detector, [frame], FaceParams(), bgr=True)[0] if frame is not None else []
        if len(faces) == 1 and faces[0].size >= 100:  # a crowd or a tiny face is not one person's portrait
            stem = "still_" + Path(name).stem
            cv2.imwrite(str(folder / f"{stem}.png"), frame)
            stills.add(stem)
    return stills


def sample_clips(people: Path, clips: Path, spec: SampleSpec) -> dict:
    """make_sample's clips of everyone in `people`, remade only when the photos, the spec or sample.py change."""
    stamp = hashlib.sha256(
        json.dumps([sorted(p.name for p in people.iterdir()), repr(spec)]).encode()
        + (ROOT / "deepfake" / "data" / "sample.py").read_bytes()
    ).hexdigest()
    if not (clips / "stamp").is_file() or (clips / "stamp").read_text() != stamp:
        make_sample(clips, replace(spec, faces=str(people)))
        (clips / "stamp").write_text(stamp)
    return json.loads((clips / "metadata.json").read_text())


def held_out_identities(work: Path, recipes: dict[str, tuple[ModelParams, TrainParams]]) -> dict:
    clips = work / "clips"
    stills = people_photos(work / "people")
    metadata = sample_clips(work / "people", clips, SampleSpec(clips_per_face=2, fakes_per_real=1, frames=32))
    faces = faces_for(clips, work, per_video=16)
    photo_people = sorted({entry["face"] for entry in metadata.values()} - stills)
    held_out = set(photo_people[::3]) | stills  # every third photo's person and every still: never trained on
    face_of = {name: entry["face"] for name, entry in metadata.items()}
    videos = build_dataset(clips).videos.assign(person=lambda v: v["relpath"].map(face_of))
    # The trained people's videos split into train and val by group (a fake with its original), as the dataset
    # stage splits; everyone else is test.
    trained = videos[~videos["person"].isin(held_out)]
    split = pd.Series("test", index=videos["video_id"])
    split[trained["video_id"]] = split_by_group(
        trained["label_id"].to_numpy(),
        trained["group"].to_numpy(),
        val=SplitParams().val,
        test=0.0,
        seed=SplitParams().seed,
    )
    faces = faces.assign(split=faces["video_id"].map(split))
    photo_tests = set(videos.loc[videos["person"].isin(photo_people), "video_id"])
    results = {
        "people": len(photo_people) + len(stills),
        "held_out_people": sorted(held_out),
        "test_videos": int(faces.loc[faces["split"] == "test", "video_id"].nunique()),
    }
    for name, (model, params) in recipes.items():
        started = time.perf_counter()
        result = fit(faces, work / "faces", model, params)
        auc, scores = video_auc(result.model, faces[faces["split"] == "test"], work / "faces", model.input_size)
        photos_only = scores[scores["video_id"].isin(photo_tests)]
        kinds = videos.set_index("video_id")["relpath"].map(lambda name: metadata[name].get("manipulation", "real"))
        scores = scores.assign(kind=scores["video_id"].map(kinds))
        scores.to_csv(work / f"held_out_scores_{name}.csv", index=False)
        results[name] = {
            "video_auc_held_out_people": round(auc, 4),
            "video_auc_held_out_photo_people": round(
                float(roc_auc_score(photos_only["label_id"], photos_only["p_fake"])), 4
            ),
            "video_auc_by_kind": {
                kind: round(float(roc_auc_score(group["label_id"], group["p_fake"])), 4)
                for kind, group in (
                    (k, scores[scores["kind"].isin(["real", k])]) for k in sorted(set(scores["kind"]) - {"real"})
                )
            },
            "kept": result.kept,
            "train_s": round(time.perf_counter() - started, 1),
            "weights": result.origin.describe(),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-shared", action="store_true")
    parser.add_argument(
        "--recipes",
        default="default_efficientnet_lite0,resnet18_weights_none",
        help="which recipes to train on held-out people (comma-separated)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/out/train"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # clips, frames and faces already there are reused (keyed by content)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {}
    default = (ModelParams(), TrainParams())

    if not args.skip_quality:
        known = {
            "default_efficientnet_lite0": default,
            "resnet18_weights_none": (replace(default[0], backbone="resnet18", weights="none"), default[1]),
        }
        recipes = {name: known[name] for name in args.recipes.split(",")}
        results["held_out_identities"] = held_out_identities(out / "sample", recipes)
        (out / "results.json").write_text(json.dumps(results, indent=2))

    if not args.skip_throughput or not args.skip_shared:
        faces = faces_for(SHARED / "real-videos", out / "shared", per_video=16)
    if not args.skip_throughput:
        results["throughput"] = throughput(faces, out / "shared" / "faces", args.steps)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    if not args.skip_shared:
        started = time.perf_counter()
        result = fit(faces, out / "shared" / "faces", *default)
        results["shared_real_videos"] = {
            "val_auc_faces": round(float(result.validation["val_auc"]), 4),
            "kept": result.kept,
            "train_s": round(time.perf_counter() - started, 1),
            "note": "val faces include pseudo-fakes of the val split's real faces",
        }
        val = faces[faces["split"] == "val"]
        auc, table = video_auc(result.model, val, out / "shared" / "faces", default[0].input_size)
        results["shared_real_videos"]["val_video_auc"] = round(auc, 4)
        table.to_csv(out / "shared_val_scores.csv", index=False)

    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
