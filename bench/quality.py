"""The quality benchmark: video verdicts on footage the model never trained on, of a registered model or of
the recipe trained afresh.

Sets (from ../shared/data):
  dev     dev-videos: DeepFaceLive swaps, each beside its identically encoded original, plus other real clips;
  ffpp    the FaceForensics++ c23/c40 pairs in real-videos: each fake with the original it was made from;
  heads   real-videos' SadTalker talking heads (generated whole, no blending boundary) against dev-videos' reals;
  pooled  all of the sets' videos together, each once: one AUC across sources, each family against all reals.
Per set: video AUC with a bootstrap 95% interval, AUC per family (each family's fakes against all the set's
reals), fakes scored above their own original (of the pairs), log loss of the calibrated P(fake) and the
constant-prior log loss it must beat, accuracy at the model's own threshold, videos without a face; with
--train also how far sharpening and camera noise move real faces' scores (dev-videos' reals: enhanced fakes must
not pass as real, and a source's noise must not set its score). Rows per video go to bench/out/quality/<set>.csv,
the summary to bench/out/quality/summary.json.

    python bench/quality.py [--model models:/deepfake-detector@champion] [--sets dev,ffpp,heads] [--project .]

Training half (`--train`): trains the recipe of a workspace's params.yaml (default build/shared-model, the
one `make shared-model` fills: real-faces photos plus the REAL clips of real-videos) on that workspace's face
crops less every benchmark video's (the FF++ originals are REAL clips there) and its group's, once per seed, with `--set key=value` overrides for ablations; then scores the benchmark sets' face
crops (cut once with the recipe's frames and faces settings, cached under bench/out/quality/cache) through the
same face-to-tensor path and aggregation as `deepfake predict`, at T = 1 and threshold 0.5. Writes
bench/out/quality/<name>/summary.json and appends one row per seed and set to bench/out/quality/table.csv.

    python bench/quality.py --train --name base --seeds 0,1,2
    python bench/quality.py --train --name res288 --set model.input_size=288 --set train.precision=bf16

Two runs compared (`--compare RUN BASELINE`): per set and pair of seeds, RUN's video AUC minus BASELINE's on the
same videos, with a paired bootstrap interval (both resampled alike), far tighter than the two AUCs' own intervals.
Writes bench/out/quality/compare.RUN.BASELINE.csv.

    python bench/quality.py --compare h264-50 base-heldout
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / "out" / "quality" / "cache"  # the sets' crops, shared by every --train run and --out


def dev_set() -> pd.DataFrame:
    folder = SHARED / "dev-videos"
    sources = pd.read_csv(folder / "sources.csv")
    metadata = json.loads((folder / "metadata.json").read_text())
    rows = []
    for row in sources.itertuples():
        family = "deepfacelive" if row.label == "FAKE" else row.file.split("--")[0]
        rows.append(
            {
                "file": row.file,
                "label": row.label,
                "family": family,
                "original": metadata.get(row.file, {}).get("original") or "",
            }
        )
    return pd.DataFrame(rows).assign(path=lambda t: [str(folder / "videos" / f) for f in t["file"]])


def ffpp_set() -> pd.DataFrame:
    folder = SHARED / "real-videos"
    sources = pd.read_csv(folder / "sources.csv")
    metadata = json.loads((folder / "metadata.json").read_text())
    fakes = {
        f: m["original"] for f, m in metadata.items() if m.get("original") and f.startswith(("ffpp-", "icpr2020dfdc--"))
    }
    originals = set(fakes.values())
    # The c40 fakes name one original; their pairs' other originals are the set's reals too.
    originals |= {f for f in metadata if f.startswith("ffpp-c40--orig_")}
    chosen = sources[sources["file"].isin(set(fakes) | originals)]
    return pd.DataFrame(
        {
            "file": chosen["file"],
            "label": chosen["label"],
            "family": [
                m.replace("FF++ ", "").lower() if label == "FAKE" else "original"
                for m, label in zip(chosen["manipulation"], chosen["label"])
            ],
            "original": [fakes.get(f, "") for f in chosen["file"]],
            "path": [str(folder / "videos" / f) for f in chosen["file"]],
        }
    )


def heads_set() -> pd.DataFrame:
    """Audio-driven talking heads (SadTalker's outputs in real-videos, several of painted portraits): the whole
    face is generated, so there is no blending boundary to find. The recipe trains on real-videos' REAL clips
    only, never on its fakes; they are scored against dev-videos' real clips, which no run trains on. Different
    sources on each side: a view of this family of fakes, not a fair pairing."""
    folder = SHARED / "real-videos"
    sources = pd.read_csv(folder / "sources.csv")
    fakes = sources[(sources["label"] == "FAKE") & sources["file"].str.startswith("sadtalker--")]
    heads = pd.DataFrame(
        {
            "file": fakes["file"],
            "label": "FAKE",
            "family": "sadtalker",
            "original": "",
            "path": [str(folder / "videos" / f) for f in fakes["file"]],
        }
    )
    reals = dev_set().query("label == 'REAL'").assign(original="")
    return pd.concat([heads, reals], ignore_index=True)


SETS = {"dev": dev_set, "ffpp": ffpp_set, "heads": heads_set}


def summarise(table: pd.DataFrame, threshold: float, frames: pd.DataFrame | None = None) -> dict:
    from sklearn.metrics import roc_auc_score

    from deepfake.evaluation.metrics import bootstrap_auc, classification_metrics

    scored = table.dropna(subset=["p_fake"])
    labels = (scored["label"] == "FAKE").astype(int).to_numpy()
    scores = scored["p_fake"].to_numpy(float)
    metrics = classification_metrics(labels, scores, threshold)
    low, high = bootstrap_auc(labels, scores, rounds=2000, seed=0)
    reals = scored[scored["label"] == "REAL"]
    families = {}
    for family, fakes in scored[scored["label"] == "FAKE"].groupby("family"):
        both = pd.concat([reals, fakes])
        families[family] = round(float(roc_auc_score(both["label"] == "FAKE", both["p_fake"])), 4)
    by_file = scored.set_index("file")["p_fake"]
    pairs = [(f, o) for f, o in zip(scored["file"], scored["original"]) if o and o in by_file.index]
    prior = labels.mean()
    return {
        "videos": len(table),
        "scored": len(scored),
        "no_face_or_error": int(len(table) - len(scored)),
        "fake": int(labels.sum()),
        "real": int(len(labels) - labels.sum()),
        "video_auc": metrics.get("auc"),
        "auc_ci95": [low, high],
        "auc_by_family": families,
        "fake_above_its_original": f"{sum(by_file[f] > by_file[o] for f, o in pairs)} of {len(pairs)}",
        "paired_auc": paired_auc(scored),
        "frames_fake_above_original": frames_fake_above_original(scored, frames),
        "log_loss": metrics.get("log_loss"),
        "prior_log_loss": float(-(prior * np.log(prior) + (1 - prior) * np.log(1 - prior))) if 0 < prior < 1 else None,
        "accuracy_at_threshold": metrics.get("accuracy"),
        "threshold": threshold,
    }


def pooled(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Every set's videos as one set, each video once: one AUC over all sources and families, as a benchmark of
    many generators reports it, where per-source offsets count against the model (a family's AUC is then its
    fakes against all the reals)."""
    return pd.concat(tables, ignore_index=True).drop_duplicates("file")


def paired_auc(scored: pd.DataFrame) -> float | None:
    """AUC of the fakes that name an original against those originals only: within-source, where
    compression and scene are shared, so source cues cannot help."""
    from sklearn.metrics import roc_auc_score

    originals = set(scored["original"]) - {""}
    pick = scored[(scored["original"] != "") | scored["file"].isin(originals)]
    if pick["label"].nunique() < 2:
        return None
    return round(float(roc_auc_score(pick["label"] == "FAKE", pick["p_fake"])), 4)


# ---------------------------------------------------------------- training half


def averaged_weights(paths: list[str]) -> dict:
    """The state_dicts' floating-point tensors averaged (batch-norm statistics too), other tensors (counters)
    taken from the last: the weights of several epochs of one run, as stochastic weight averaging makes them."""
    import torch

    from deepfake.model.training import average_states

    return average_states([torch.load(path, weights_only=True) for path in paths])


def run_history(run: Path) -> pd.DataFrame:
    """A --train run's epochs so far: its seedN.history.csv once finished, else its checkpoint's (so an epoch of
    a run still training can be scored)."""
    from deepfake.model.training import read_checkpoint

    finished = run.with_name(f"{run.name}.history.csv")
    if finished.is_file():
        return pd.read_csv(finished)
    checkpoint = run.with_name(f"{run.name}.checkpoint.pt")
    saved = read_checkpoint(checkpoint) if checkpoint.is_file() else None
    if saved is None:
        raise SystemExit(f"{finished}: not found, nor a readable {checkpoint.name}: which run's weights are these?")
    return pd.DataFrame(json.loads(saved["history"]))


def without_benchmark_videos(
    faces: pd.DataFrame, videos: pd.DataFrame, sets: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, list[str]]:
    """The training faces less those of every video a benchmark set scores and of every video grouped with one
    (a fake and its original share a group), so that no benchmark figure is of a face the model trained on: the
    FF++ originals are REAL clips of real-videos, which the workspace trains on. Returns the faces kept and the
    held-out videos' paths relative to their source."""
    scored = {Path(path).resolve() for table in sets.values() for path in table["path"]}
    hit = videos["path"].map(lambda path: Path(path).resolve() in scored)
    held_out = videos[videos["group"].isin(set(videos.loc[hit, "group"]))]
    return faces[~faces["video_id"].isin(set(held_out["video_id"]))], sorted(held_out["relpath"])


def bench_faces(name: str, table: pd.DataFrame, config, cache: Path) -> tuple[pd.DataFrame, Path]:
    """The set's face crops, cut with the recipe's frames and faces settings (cached by content and settings)."""
    from deepfake.config import PoolSettings, SplitParams
    from deepfake.data.dataset import combine, scan_source
    from deepfake.video.extraction import update_faces, update_frames

    scans = {}
    for root, files in table.groupby(table["path"].map(lambda p: Path(p).parent.parent))["file"]:
        scan = scan_source(root)
        scan.videos = scan.videos[scan.videos["relpath"].isin("videos/" + files)]
        scans[root.name] = scan
    videos = combine(scans, SplitParams(val=0, test=0)).videos
    pool = PoolSettings(workers=2, retry_delay_s=0)
    folder = cache / name
    update_frames(videos, folder / "frames", config.frames, pool)
    faces = update_faces(videos, folder / "frames", folder / "faces", config.faces, pool).table
    faces = faces.merge(videos[["video_id", "relpath"]], on="video_id")
    faces["file"] = faces["relpath"].str.removeprefix("videos/")
    return faces, folder / "faces"


@contextlib.contextmanager
def cache_lock(cache: Path):
    """Held for a whole --train run: bench_faces prunes a set's cached crops to the videos it is given, so a second
    run at once (another recipe's frames settings, or fewer videos) would delete crops this one still has to read."""
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise SystemExit(
                f"{cache}: another benchmark run (process {lock.read().strip() or '?'}) is using the cached crops; "
                "run one at a time"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def score_crops(
    model, faces: pd.DataFrame, faces_dir: Path, table: pd.DataFrame, config, temperature: float = 1.0
) -> pd.DataFrame:
    from deepfake.evaluation.evaluate import crop_logits, score_split

    logits = crop_logits(model, list(faces["crop"]), faces_dir, config.model.input_size, config.evaluate)
    videos = score_split(faces, logits, temperature, config.aggregate).videos
    per_file = faces.groupby("video_id")["file"].first()
    videos["file"] = videos["video_id"].map(per_file)
    # Each frame as fake as its most fake face (the aggregation's frame rule), for the pairs' frame by frame view.
    frames = faces.assign(logit=logits).groupby(["file", "frame_index"], as_index=False)["logit"].max()
    return table.merge(videos[["file", "p_fake"]], on="file", how="left"), frames


def real_shifts(model, faces: pd.DataFrame, faces_dir: Path, config) -> dict[str, float]:
    """Median change of real faces' fake logit when each face is changed in a way that says nothing of a fake (up to
    600 faces, evenly spread; near 0 for a model that does not read these as realness or fakeness):
    `sharpened_shift`, sharpened as face enhancers and talking-head generators leave faces (unsharp mask by
    `evaluate.sharpen`, the evaluate stage's robustness amount; strongly negative means an enhanced fake passes as
    real); `noise3_shift` and `noise8_shift`, with camera noise of 3 and 8 grey levels (cameras differ in noise by
    that much, so a large shift gives every source its own offset)."""
    from deepfake.evaluation.evaluate import crop_logits
    from deepfake.images import sharpen
    from deepfake.model.augment import sensor_noise

    reals = faces[faces["label"] == "REAL"]
    reals = reals.iloc[np.linspace(0, len(reals) - 1, min(len(reals), 600)).astype(int)]
    crops, size = list(reals["crop"]), config.model.input_size
    clean = crop_logits(model, crops, faces_dir, size, config.evaluate)
    changes = {
        "sharpened_shift": lambda crop: sharpen(crop, config.evaluate.sharpen),
        "noise3_shift": lambda crop: sensor_noise(crop, 3.0, np.random.default_rng(0)),
        "noise8_shift": lambda crop: sensor_noise(crop, 8.0, np.random.default_rng(0)),
    }
    return {
        name: round(float(np.median(crop_logits(model, crops, faces_dir, size, config.evaluate, change) - clean)), 3)
        for name, change in changes.items()
    }


def frames_fake_above_original(scored: pd.DataFrame, frames: pd.DataFrame | None) -> dict | None:
    """Within each fake/original pair whose halves share their frames (DeepFaceLive's side-by-side demos), the
    share of frames with a face in both where the fake's frame scores above the original's: frame by frame,
    scene, pose and encoding alike, far more comparisons than one per pair (0.5 is chance)."""
    if frames is None:
        return None
    shares = []
    for fake, original in zip(scored["file"], scored["original"]):
        if not original:
            continue
        both = frames[frames["file"] == fake].merge(frames[frames["file"] == original], on="frame_index")
        if len(both):
            shares.append(float((both["logit_x"] > both["logit_y"]).mean()))
    if not shares:
        return None
    return {
        "mean_share": round(float(np.mean(shares)), 4),
        "pairs_above_half": f"{sum(share > 0.5 for share in shares)} of {len(shares)}",
    }


def override(config, assignments: list[str]):
    """The config with `key=value` settings replaced (values read as YAML), checked like params.yaml."""
    import yaml

    from deepfake.config import Config, build

    values = config.to_dict()
    for assignment in assignments:
        key, _, text = assignment.partition("=")
        *parents, leaf = key.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(text)
    return build(Config, values, "")


def train_and_score(args) -> None:
    import dataclasses
    import types

    import torch

    from deepfake.atomic import atomic_path, write_csv
    from deepfake.config import load_config
    from deepfake.model.onnx_classifier import load_face_classifier
    from deepfake.model.training import VALIDATION_KEYS, fit, save_model, with_media_kind

    workspace = Path(args.workspace)
    missing = f"{workspace}: no face crops to train on; `make shared-faces` makes them (about 4 minutes)"
    if not (workspace / "params.yaml").is_file():
        raise SystemExit(missing)
    config = override(load_config(workspace / "params.yaml"), args.set)
    faces_dir = workspace / config.paths.faces
    if not (faces_dir / "faces.csv").is_file():
        raise SystemExit(missing)
    faces = pd.read_csv(faces_dir / "faces.csv")
    out = Path(args.out) / args.name
    out.mkdir(parents=True, exist_ok=True)
    sets = {name: SETS[name]() for name in args.sets.split(",")}
    crops = {name: bench_faces(name, table, config, CACHE) for name, table in sets.items()}
    summary = {"name": args.name, "overrides": args.set, "workspace": str(workspace), "seeds": {}}
    earlier = out / "summary.json"
    if not args.weights and earlier.is_file():  # more seeds of the same recipe join the earlier ones
        kept = json.loads(earlier.read_text())
        if kept.get("overrides") == args.set:
            summary["seeds"] = kept["seeds"]
    if not args.weights:  # a run trained here never sees a benchmark video; --weights models trained as they were
        # Held out of every set, not only those scored now: runs scoring fewer sets still train on the same faces.
        everything = {name: make() for name, make in SETS.items()}
        videos = pd.read_csv(workspace / config.paths.interim / "videos.csv")
        faces = with_media_kind(faces, videos)  # as the train stage does
        faces, held_out = without_benchmark_videos(faces, videos, everything)
        summary["held_out_of_training"] = held_out
        print(f"{len(held_out)} benchmark videos and their groups held out of training", flush=True)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")] if not args.weights else [config.train.seed]:
        if args.weights:  # a model trained elsewhere (`make shared-model`, or a --train run's seedN.pt)
            paths = args.weights.split(",")  # several: averaged; the run's history is the last one's
            weights = loaded = Path(paths[-1])
            if len(paths) > 1:
                loaded = out / f"seed{seed}.averaged.pt"
                with atomic_path(loaded) as tmp:
                    torch.save(averaged_weights(paths), tmp)
            model = load_face_classifier(
                loaded, config.model.backbone, config.model.input_size, config.evaluate.runtime
            )
            reports = weights.parent.parent / config.paths.reports
            keys = [f"val_{key}" for key in VALIDATION_KEYS]
            trained = None
            if (reports / "metrics.json").is_file():  # as registered: its evaluate stage's choices on validation
                history = pd.read_csv(reports / "history.csv")
                trained = json.loads((reports / "train.json").read_text())
                best_epoch = int(trained["best_epoch"])
                metrics = json.loads((reports / "metrics.json").read_text())
                calibration = (metrics["calibration"]["temperature"], metrics["video"]["threshold"])
            else:  # a --train run's seedN.pt (its best epoch) or seedN.epochE.pt (epoch E)
                run, _, epoch = weights.stem.partition(".epoch")
                history = run_history(weights.with_name(run))
                best_epoch = int(epoch) if epoch else int(history["val_blend_auc"].idxmax()) + 1
                calibration = (1.0, 0.5)
            if trained and "kept" in trained:  # the train stage validated the weights it kept (an average, say)
                kept, validation = trained["kept"], {key: trained.get(key) for key in keys}
            else:  # an average made here was not validated: its figures are not the last epoch's
                kept = " + ".join(Path(path).name for path in paths)
                validation = dict(history.iloc[best_epoch - 1][keys]) if len(paths) == 1 else dict.fromkeys(keys)
            result = types.SimpleNamespace(
                model=model, history=history, best_epoch=best_epoch, kept=kept, validation=validation
            )
        else:
            calibration = (1.0, 0.5)  # no validation-fitted calibration for a bare training run
            params = dataclasses.replace(config.train, seed=seed)
            result = fit(
                faces,
                faces_dir,
                config.model,
                params,
                checkpoint=out / f"seed{seed}.checkpoint.pt",
                # Every epoch's weights, so a later epoch can be scored (--weights) without training again.
                after_epoch=lambda epoch, model, seed=seed: save_model(model, out / f"seed{seed}.epoch{epoch}.pt"),
            )
            save_model(result.model, out / f"seed{seed}.pt")
            write_csv(result.history, out / f"seed{seed}.history.csv")
        summary["seeds"][str(seed)] = {
            "best_epoch": result.best_epoch,
            "kept": result.kept,
            "history": result.history.to_dict("records"),
        }
        per_set = {}
        for name, table in sets.items():
            set_faces, set_dir = crops[name]
            per_set[name] = score_crops(result.model, set_faces, set_dir, table, config, calibration[0])
            # committed: no machine paths (`file` names the video within its set)
            write_csv(per_set[name][0].drop(columns="path"), out / f"seed{seed}.{name}.csv")
        if len(per_set) > 1:
            per_set["pooled"] = (pooled([scored for scored, _ in per_set.values()]), None)
        shifts = real_shifts(result.model, *crops["dev"], config) if "dev" in crops else {}
        summary["seeds"][str(seed)].update(shifts)
        for name, (scored, frames) in per_set.items():
            result_set = summarise(scored, calibration[1], frames)
            summary["seeds"][str(seed)][name] = result_set
            rows.append(
                {
                    "name": args.name,
                    "overrides": " ".join(args.set),
                    "seed": seed,
                    "set": name,
                    "auc": result_set["video_auc"],
                    "auc_low": result_set["auc_ci95"][0],
                    "auc_high": result_set["auc_ci95"][1],
                    "paired_auc": result_set["paired_auc"],
                    "fake_above_original": result_set["fake_above_its_original"],
                    "frames_fake_above": (result_set["frames_fake_above_original"] or {}).get("mean_share"),
                    "log_loss": result_set["log_loss"],
                    "prior_log_loss": result_set["prior_log_loss"],
                    "temperature": calibration[0],
                    "threshold": calibration[1],
                    "accuracy_at_threshold": result_set["accuracy_at_threshold"],
                    **shifts,
                    "best_epoch": result.best_epoch,
                    "kept": result.kept,
                    "val_blend_auc": result.validation["val_blend_auc"],
                    "images_per_s": float(result.history["images_per_s"].median()),
                }
            )
            print(json.dumps({f"seed {seed} {name}": result_set}, indent=1), flush=True)
        with atomic_path(out / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    table = pd.DataFrame(rows)
    for name in table["set"].unique():  # over every seed of this recipe, earlier runs' included
        aucs = pd.Series(
            {seed: result[name]["video_auc"] for seed, result in summary["seeds"].items() if name in result}
        )
        print(
            f"{args.name} {name}: AUC {aucs.mean():.3f} (seeds {', '.join(f'{s} {a:.3f}' for s, a in aucs.items())}, "
            f"spread {aucs.max() - aucs.min():.3f})"
        )
    path = Path(args.out) / "table.csv"
    if path.is_file():  # earlier rows may lack a column added since: aligned by name, empty there
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    write_csv(table, path)


def compare(args) -> None:
    """Each set's video AUC of run A minus run B's, on the same videos, with a paired bootstrap interval; for
    every pair of their seeds (the difference between two seeds of one recipe is the yardstick)."""
    import re

    from deepfake.atomic import write_csv
    from deepfake.evaluation.metrics import bootstrap_auc_difference

    def scored(name: str) -> dict[tuple[int, str], pd.DataFrame]:
        found = {}
        for path in sorted((Path(args.out) / name).glob("seed*.csv")):
            match = re.fullmatch(r"seed(\d+)\.(\w+)\.csv", path.name)
            if match and match[2] in SETS:
                found[int(match[1]), match[2]] = pd.read_csv(path, keep_default_na=False)
        for seed in {seed for seed, _ in found}:
            found[seed, "pooled"] = pooled([table for (s, _), table in found.items() if s == seed])
        if not found:
            raise SystemExit(f"{Path(args.out) / name}: no scored sets (seedN.<set>.csv); run --train --name {name}")
        return found

    run, baseline = (scored(name) for name in args.compare)
    rows = []
    for (seed, name), table in run.items():
        for (base_seed, base_name), base_table in baseline.items():
            if base_name != name or (args.compare[0] == args.compare[1] and base_seed == seed):
                continue  # one run's seeds against each other, not each against itself
            both = table.merge(base_table[["file", "p_fake"]], on="file", suffixes=("", "_baseline"))
            both = both[(both["p_fake"] != "") & (both["p_fake_baseline"] != "")]
            labels = (both["label"] == "FAKE").astype(int).to_numpy()
            difference, low, high = bootstrap_auc_difference(
                labels, both["p_fake"].astype(float), both["p_fake_baseline"].astype(float), rounds=2000
            )
            rows.append(
                {"set": name, "seed": seed, "baseline_seed": base_seed, "videos": len(both)}
                | {"auc_difference": difference, "low": low, "high": high}
            )
    if not rows:  # e.g. a run against itself with one seed, or two runs scored on different sets
        raise SystemExit(f"{' and '.join(args.compare)}: no set and pair of seeds in common to compare")
    table = pd.DataFrame(rows).sort_values(["set", "seed", "baseline_seed"])
    print(f"{args.compare[0]} - {args.compare[1]}: video AUC difference [paired 95% interval]")
    for row in table.itertuples():
        print(
            f"  {row.set:7s} seed {row.seed} vs {row.baseline_seed}: {row.auc_difference:+.3f} "
            f"[{row.low:+.3f}, {row.high:+.3f}] over {row.videos} videos"
        )
    write_csv(table, Path(args.out) / f"compare.{args.compare[0]}.{args.compare[1]}.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="registered model URI; default: the project's champion")
    parser.add_argument("--project", default=str(ROOT), help="the project whose registry (mlflow.db) to use")
    parser.add_argument("--sets", default="dev,ffpp,heads")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    parser.add_argument(
        "--no-round-trip",
        action="store_true",
        help="score decoded frames and crops as they are, without the storage round trip (for comparison)",
    )
    parser.add_argument("--train", action="store_true", help="train the recipe on a workspace's faces, then score")
    parser.add_argument("--workspace", default=str(ROOT / "build" / "shared-model"))
    parser.add_argument("--name", default="recipe", help="--train: the run's folder under --out")
    parser.add_argument("--seeds", default="0", help="--train: comma-separated seeds")
    parser.add_argument(
        "--weights",
        default="",
        help="--train: score these trained weights instead of training (seedN.pt: the best epoch; seedN.epochE.pt: "
        "epoch E; several, comma-separated: their average, e.g. seed1.epoch3.pt,seed1.epoch4.pt,seed1.epoch5.pt)",
    )
    parser.add_argument(
        "--set", action="append", default=[], help="--train: override a setting, e.g. model.input_size=288"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN", "BASELINE"),
        help="the AUC differences of two --train runs under --out, with paired intervals (nothing is scored)",
    )
    args = parser.parse_args()
    if args.compare:
        return compare(args)
    if args.train:
        with cache_lock(CACHE):
            return train_and_score(args)

    from deepfake.atomic import write_csv, write_json
    from deepfake.config import project_config
    from deepfake.serving.loading import load_detector_model
    from deepfake.tracking import connect

    model = args.model or project_config(Path(args.project) / "params.yaml").register.model_uri
    connect(args.project, experiment=False)
    loaded = load_detector_model(model)
    if args.no_round_trip:
        from dataclasses import replace

        config = loaded.detector.config
        loaded.detector.config = replace(
            config, sampling=replace(config.sampling, jpeg_quality=None), faces=replace(config.faces, jpeg_quality=None)
        )
    config = loaded.detector.config
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": model,
        "version": loaded.version,
        "backbone": config.backbone,
        "temperature": config.temperature,
        "threshold": config.threshold,
        "storage_round_trip": not args.no_round_trip,
        "sets": {},
    }
    tables = []
    for name in args.sets.split(","):
        table = SETS[name]()
        rows = []
        for number, row in enumerate(table.itertuples(), 1):
            result = loaded.detector.predict(row.path)
            rows.append(
                {
                    **row._asdict(),
                    "verdict": result["verdict"],
                    "p_fake": result["p_fake"] if result["verdict"] in ("REAL", "FAKE") else np.nan,
                }
            )
            print(f"{name} {number}/{len(table)} {row.file}: {result['verdict']} {result['p_fake']:.3f}", flush=True)
        scored = pd.DataFrame(rows).drop(columns=["Index"])
        write_csv(scored.drop(columns="path"), out / f"{name}.csv")
        tables.append(scored)
        summary["sets"][name] = summarise(scored, config.threshold)
        print(json.dumps({name: summary["sets"][name]}, indent=1), flush=True)
    if len(tables) > 1:
        summary["sets"]["pooled"] = summarise(pooled(tables), config.threshold)
        print(json.dumps({"pooled": summary["sets"]["pooled"]}, indent=1), flush=True)
    write_json(summary, out / "summary.json")


if __name__ == "__main__":
    main()
