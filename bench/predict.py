"""Benchmark of `deepfake predict`: a real 1080p H.264 DFDC clip from the shared set and a generated 10 s
1080p clip, the same frames each (`frames.per_video`, 16 by default), and peak memory on a 10-minute 1080p video.

Measures, in one run on the same machine, per clip:
  1. the detector's whole path as configured by default (MTCNN and the classifier on ONNX Runtime, whole-frame
     detection every `faces.detect_every`-th frame and faces tracked in between);
  2. the same path with the previous defaults (`faces.runtime: torch`, `detect_every: 1`, `evaluate.runtime:
     torch`, `frames.decoder: opencv`, no continuation below `min_prob`), to show what the changes buy;
  3. its unavoidable parts, each alone: decoding the sampled frames, finding and cropping the faces, classifying
     the crops; ours / (sum of parts) is what orchestration and glue cost;
  4. the naive pipeline at the same frames: read() every frame up to each sampled index, facenet-pytorch's
     MTCNN as constructed by default on each full-resolution frame one at a time, faces classified one by
     one (run in a fresh interpreter, so the project's faster resampling is not in effect);
and as a user runs it: `deepfake predict` on the DFDC clip as a whole process (imports, registry lookup,
model load, scoring) against the naive script's whole process, and the time until the model is ready.

    python bench/predict.py [--model W] [--skip-long] [--out bench/out/predict]

Without --model (or when it does not exist) the classifier is efficientnet_lite0 with ImageNet weights and a
new head: the same network and cost as a trained one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

DFDC_CLIP = "deepfake-detect--abofeumbvv.mp4"  # a DFDC fake in the shared set: 1080p H.264, 10 s
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake.config import FaceParams, FrameSampling  # noqa: E402
from deepfake.model.classifier import load_classifier  # noqa: E402
from deepfake.model.onnx_classifier import load_face_classifier  # noqa: E402
from deepfake.serving.video_detector import DetectorConfig, VideoDetector  # noqa: E402
from deepfake.video.face_detection import crop_with_margin, faces_in_frames  # noqa: E402
from deepfake.video.frames import read_frames, sample_frame_indices  # noqa: E402
from deepfake.video.probe import probe_video  # noqa: E402


def make_clip(out: Path, seconds: int) -> Path:
    """A 1080p talking-portrait clip from the sample generator (10 s), repeated by stream copy when longer."""
    from deepfake.config import SampleSpec
    from deepfake.data.sample import make_sample

    short = out / "clip10s" / "astronaut_0.mp4"
    if not short.is_file():
        make_sample(
            out / "clip10s",
            spec=SampleSpec(clips_per_face=1, fakes_per_real=0, frames=240, fps=24, width=1920, height=1080),
        )
    if seconds <= 10:
        return short
    import imageio_ffmpeg

    long = out / f"clip{seconds}s.mp4"
    if not long.is_file():
        listing = out / "concat.txt"
        listing.write_text("".join(f"file '{short.resolve()}'\n" for _ in range(seconds // 10)))
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-y",
                "-loglevel",
                "error",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(listing),
                "-c",
                "copy",
                str(long),
            ],
            check=True,
        )
    return long


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def parts(detector: VideoDetector, path: Path) -> dict:
    """The unavoidable work, each part alone: decode, faces (detection and crops), classification."""
    config = detector.config
    info = probe_video(path)
    indices = sample_frame_indices(info.frames, info.fps, config.sampling)
    decode_s, frames = timed(lambda: list(read_frames(path, indices, decoder=config.sampling.decoder)))
    detect_s, found = timed(lambda: list(faces_in_frames(detector.face_detector, frames, config.faces)))
    crops = [crop for frame in found for crop in frame.crops]
    classify_s, _ = timed(
        detector.model.face_logits, crops, config.input_size, batch_size=config.batch_size, flip=config.flip
    )
    return {"decode_s": decode_s, "detect_s": detect_s, "classify_s": classify_s, "faces": len(crops)}


def naive(path: str, model_path: str, backbone: str, per_video: int, input_size: int) -> dict:
    import torch
    from facenet_pytorch import MTCNN

    from deepfake.config import FaceParams
    from deepfake.model.transforms import to_tensor
    from deepfake.video.face_detection import Face

    torch.set_num_threads(os.cpu_count() or 1)
    model = load_classifier(model_path, backbone).to(memory_format=torch.contiguous_format)  # the plain layout
    mtcnn = MTCNN(keep_all=True, device="cpu")
    started = time.perf_counter()
    capture = cv2.VideoCapture(path)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(sample_frame_indices(total, capture.get(cv2.CAP_PROP_FPS), FrameSampling(per_video=per_video)))
    scores = []
    params = FaceParams()
    with torch.no_grad():
        for index in range(max(wanted) + 1):
            ok, frame = capture.read()
            if not ok:
                break
            if index not in wanted:
                continue
            boxes, probs, points = mtcnn.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), landmarks=True)
            for box, prob, landmark in zip(
                boxes if boxes is not None else [],
                probs if boxes is not None else [],
                points if boxes is not None else [],
            ):
                if prob < params.min_prob:
                    continue
                crop, _ = crop_with_margin(
                    frame, Face(tuple(box), float(prob), landmark), margin=params.margin, size=params.crop_size
                )
                batch = to_tensor([crop], input_size)
                logits = (model(batch) + model(torch.flip(batch, dims=[3]))) / 2
                scores.append(float(torch.softmax(logits, 1)[0, 1]))
    return {"seconds": time.perf_counter() - started, "faces": len(scores)}


def registry_load_time(model_path: Path, config: DetectorConfig, work: Path) -> float:
    # A fresh registry each run: the version registered (and measured below) carries this checkout's code.
    shutil.rmtree(work / "mlruns", ignore_errors=True)
    shutil.rmtree(work / "model", ignore_errors=True)
    (work / "mlflow.db").unlink(missing_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    import mlflow

    from deepfake.serving.loading import load_detector_model
    from deepfake.tracking import connect, gate, log_detector

    connect(work)
    with mlflow.start_run():
        info = log_detector(model_path, config.to_dict(), "# benchmark\n")
    version = mlflow.register_model(info.model_uri, "bench-detector").version
    gate("bench-detector", version, "video.auc", None)
    return load_detector_model("models:/bench-detector@champion").seconds


def peak_memory_of_predict(model_dir: Path, clip: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of scoring `clip` in a child process with the logged model."""
    # The child reports its own peak, VmHWM: getrusage's ru_maxrss would not do, RUSAGE_CHILDREN counts the
    # naive run's process and Linux carries the forking parent's (this benchmark's) peak into RUSAGE_SELF.
    code = (
        f"import sys, re; sys.path.insert(0, {str(ROOT)!r}); import mlflow.pyfunc, pandas as pd; "
        f"m = mlflow.pyfunc.load_model({str(model_dir)!r}); "
        f"print(m.predict(pd.DataFrame({{'video': [{str(clip)!r}]}})).to_json(orient='records')); "
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    lines = result.stdout.strip().splitlines()
    print(lines[0][:300])
    return seconds, int(lines[-1]) / 1024


def whole_processes(clip: Path, model_path: str, backbone: str, per_video: int, work: Path) -> dict:
    """`deepfake predict CLIP` as a user runs it (registry from registry_load_time) against the naive script
    as a process; and the time from interpreter start to a loaded model."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ready = (
        "import time; start = time.perf_counter(); import deepfake.cli; "
        "from deepfake.serving.loading import load_detector_model; "
        "loaded = load_detector_model('models:/bench-detector@champion'); "
        "import sys; print(time.perf_counter() - start, loaded.seconds, 'mlflow' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", ready], capture_output=True, text=True, check=True, env=env)
    ready_s, load_s, mlflow_imported, torch_imported = out.stdout.split()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "deepfake.cli", "predict", "--model", "models:/bench-detector@champion", str(clip)],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    predict_s = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"deepfake predict failed: {result.stderr[-2000:]}")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--naive", str(clip), "--model", model_path, "--backbone", backbone],
        check=True,
        capture_output=True,
    )
    naive_s = time.perf_counter() - started
    return {
        "model_ready_s": float(ready_s),
        "load_s": float(load_s),
        "mlflow_imported": mlflow_imported == "True",
        "torch_imported": torch_imported == "True",
        "predict_process_s": predict_s,
        "naive_process_s": naive_s,
        "speedup": naive_s / predict_s,
        "row": json.loads(result.stdout.splitlines()[0]),
    }


def bench_clip(clip: Path, detectors: dict, args) -> dict:
    results = {"clip": str(clip)}
    for name, detector in detectors.items():
        detector.predict(clip)  # warm up: first-call allocations, lazy imports
        runs = [timed(detector.predict, clip) for _ in range(args.repeats)]
        results[name] = {
            "seconds": min(s for s, _ in runs),
            "row": {k: v for k, v in runs[0][1].items() if k != "tracks"},
        }
    split = [parts(detectors["ours"], clip) for _ in range(args.repeats)]
    results["parts"] = {key: min(p[key] for p in split) for key in ("decode_s", "detect_s", "classify_s", "faces")}
    results["parts_sum_s"] = sum(results["parts"][k] for k in ("decode_s", "detect_s", "classify_s"))
    config = detectors["ours"].config
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results["naive"] = pool.submit(
            naive, str(clip), args.model, args.backbone, args.per_video, config.input_size
        ).result()
    ours = results["ours"]["seconds"]
    results["speedup_vs_naive"] = results["naive"]["seconds"] / ours
    results["speedup_vs_previous"] = results["previous"]["seconds"] / ours
    results["ours_over_parts"] = ours / results["parts_sum_s"]
    print(json.dumps(results, indent=2), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models/model.pt"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--per-video", type=int, default=FrameSampling().per_video)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-long", action="store_true", help="skip the 10-minute peak-memory run")
    parser.add_argument("--out", default=str(ROOT / "bench/out/predict"))
    parser.add_argument("--naive", default="", help=argparse.SUPPRESS)  # the naive script's whole process
    args = parser.parse_args()
    if args.naive:
        print(json.dumps(naive(args.naive, args.model, args.backbone, args.per_video, 224)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not Path(args.model).is_file():
        import torch

        from deepfake.model.classifier import build_classifier

        args.model = str(out / "model.pt")
        torch.save(build_classifier(args.backbone, "imagenet")[0].state_dict(), args.model)

    config = DetectorConfig(backbone=args.backbone, sampling=FrameSampling(per_video=args.per_video))
    previous = dataclasses.replace(
        config,
        runtime="torch",
        sampling=dataclasses.replace(config.sampling, decoder="opencv"),
        faces=dataclasses.replace(FaceParams(), runtime="torch", detect_every=1, keep_prob=FaceParams().min_prob),
    )
    detectors = {
        "ours": VideoDetector(load_face_classifier(args.model, args.backbone, config.input_size), config),
        "previous": VideoDetector(load_classifier(args.model, args.backbone), previous),
    }
    clips = {
        "dfdc": ROOT.parent / "shared" / "data" / "real-videos" / "videos" / DFDC_CLIP,
        "generated": make_clip(out, 10),
    }
    results = {"per_video": args.per_video, "model": args.model}
    for name, clip in clips.items():
        if clip.is_file():
            results[name] = bench_clip(clip, detectors, args)
    results["registry_load_s"] = registry_load_time(Path(args.model), config, out)
    if clips["dfdc"].is_file():
        results["process"] = whole_processes(clips["dfdc"], args.model, args.backbone, args.per_video, out)
        print(json.dumps(results["process"], indent=2), flush=True)
    if not args.skip_long:
        long_clip = make_clip(out, 600)
        import mlflow

        model_dir = mlflow.artifacts.download_artifacts("models:/bench-detector@champion", dst_path=str(out / "model"))
        seconds, peak = peak_memory_of_predict(Path(model_dir), long_clip)
        results["long_video"] = {"clip": str(long_clip), "seconds": seconds, "peak_rss_mib": peak}
    print(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
