"""Benchmark of the training stage.

1. Throughput: images/s of the stage's loop (FaceCrops with self-blending and augmentations, train_one_epoch)
   against a bare torchvision loop (ImageFolder, ToTensor + Normalize, the same model, batch and threads),
   on the same crops, in the same run.
2. Quality on the project's own sample data with held-out identities: clips made from the shared face
   photos (several people), trained on some people, scored on videos of the others (video score = mean
   face p_fake, each face scored with its mirror image as evaluation does); the default recipe, and resnet18 with weights: none.
3. Trained on ../shared/data/real-videos (respecting the dataset split): validation AUC.

    python bench/train.py [--steps N] [--skip-quality] [--skip-shared]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from deepfake.data import build_dataset
from deepfake.extract import update_faces, update_frames
from deepfake.faces import FaceParams
from deepfake.frames import FrameSampling
from deepfake.evaluate import EvaluateParams
from deepfake.models import build_classifier, face_logits
from deepfake.parallel import PoolSettings
from deepfake.sample import SampleSpec, make_sample
from deepfake.train import FaceCrops, TrainParams, collate_pairs, fit, train_one_epoch, training_rows

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def faces_for(root: Path, work: Path, per_video: int, videos: pd.DataFrame | None = None) -> pd.DataFrame:
    videos = build_dataset(root).videos if videos is None else videos
    pool = PoolSettings(workers=2)
    update_frames(videos, work / "frames", FrameSampling(per_video=per_video), 95, pool)
    return update_faces(videos, work / "frames", work / "faces", FaceParams(), 95, pool).table


def throughput(faces: pd.DataFrame, faces_dir: Path, steps: int) -> dict:
    from torchvision import datasets, transforms

    params = TrainParams(loader_workers=2)
    torch.set_num_threads(2)
    results = {}
    # Bare torchvision: the crops as an ImageFolder, the simplest transforms, the same model and batch.
    model, _ = build_classifier(params.backbone, params.weights, log=lambda _: None)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    class RealFake(datasets.ImageFolder):  # the faces folder also holds parts/, which is not a class
        def find_classes(self, directory):
            return ["real", "fake"], {"real": 0, "fake": 1}

    folder = RealFake(str(faces_dir), transform=transforms.Compose([
        transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]))
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

    model, _ = build_classifier(params.backbone, params.weights, log=lambda _: None)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    dataset = FaceCrops(training_rows(faces, params, "train"), faces_dir, size=224, train=True, fakes="self_blend", seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=params.batch_size // 2, shuffle=True, num_workers=2,
                                         collate_fn=collate_pairs)

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
        p_fake = 1 / (1 + np.exp(-face_logits(model, crops, size, flip=flip)))
        scores.append({"video_id": video_id, "label_id": group["label_id"].iloc[0], "p_fake": float(p_fake.mean())})
    table = pd.DataFrame(scores)
    return float(roc_auc_score(table["label_id"], table["p_fake"])), table


def held_out_identities(work: Path, recipes: dict[str, TrainParams]) -> dict:
    clips = work / "clips"
    make_sample(clips, faces=SHARED / "face-photos", spec=SampleSpec(clips_per_face=2, fakes_per_real=1, frames=32))
    metadata = json.loads((clips / "metadata.json").read_text())
    faces = faces_for(clips, work, per_video=16)
    people = sorted({entry["face"] for entry in metadata.values()})
    held_out = set(people[::3])  # every third photo's person is never seen in training
    face_of = {name: entry["face"] for name, entry in metadata.items()}
    videos = build_dataset(clips).videos.assign(person=lambda v: v["relpath"].map(face_of))
    split = videos.set_index("video_id")["person"].map(lambda p: "test" if p in held_out else None)
    faces = faces.assign(split=faces["video_id"].map(split).fillna(faces["split"].replace({"test": "train"})))
    results = {"people": len(people), "held_out_people": sorted(held_out),
               "test_videos": int(faces.loc[faces["split"] == "test", "video_id"].nunique())}
    for name, params in recipes.items():
        started = time.perf_counter()
        result = fit(faces, work / "faces", params, log=print)
        auc, scores = video_auc(result.model, faces[faces["split"] == "test"], work / "faces", params.input_size)
        kinds = videos.set_index("video_id")["relpath"].map(lambda name: metadata[name].get("manipulation", "real"))
        scores.assign(kind=scores["video_id"].map(kinds)).to_csv(work / f"held_out_scores_{name}.csv", index=False)
        results[name] = {"video_auc_held_out_people": round(auc, 4), "best_epoch": result.best_epoch,
                         "train_s": round(time.perf_counter() - started, 1), "weights": result.origin.describe()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-shared", action="store_true")
    parser.add_argument("--skip-resnet18", action="store_true", help="only the default recipe on held-out people")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/out/train"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # clips, frames and faces already there are reused (keyed by content)
    results = {}
    default = TrainParams()

    if not args.skip_quality:
        recipes = {"default_efficientnet_lite0": default}
        if not args.skip_resnet18:
            recipes["resnet18_weights_none"] = replace(default, backbone="resnet18", weights="none")
        results["held_out_identities"] = held_out_identities(out / "sample", recipes)
        (out / "results.json").write_text(json.dumps(results, indent=2))

    if not args.skip_throughput or not args.skip_shared:
        faces = faces_for(SHARED / "real-videos", out / "shared", per_video=16)
    if not args.skip_throughput:
        results["throughput"] = throughput(faces, out / "shared" / "faces", args.steps)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    if not args.skip_shared:
        started = time.perf_counter()
        result = fit(faces, out / "shared" / "faces", default, log=print)
        best = result.history.iloc[result.best_epoch - 1]
        results["shared_real_videos"] = {
            "val_auc_faces": round(float(best["val_auc"]), 4), "best_epoch": result.best_epoch,
            "train_s": round(time.perf_counter() - started, 1),
            "note": "val faces include pseudo-fakes of the val split's real faces",
        }
        val = faces[faces["split"] == "val"]
        auc, table = video_auc(result.model, val, out / "shared" / "faces", default.input_size)
        results["shared_real_videos"]["val_video_auc"] = round(auc, 4)
        table.to_csv(out / "shared_val_scores.csv", index=False)

    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
