"""The quality benchmark, scoring half: a registered model's video verdicts on footage it never trained on.

Sets (from ../shared/data):
  dev     dev-videos: DeepFaceLive swaps, each beside its identically encoded original, plus other real clips;
  ffpp    the FaceForensics++ c23/c40 pairs in real-videos: each fake with the original it was made from.
Per set: video AUC with a bootstrap 95% interval, AUC per family (each family's fakes against all the set's
reals), fakes scored above their own original (of the pairs), log loss of the calibrated P(fake) and the
constant-prior log loss it must beat, accuracy at the model's own threshold, videos without a face. Rows per
video go to bench/out/quality/<set>.csv, the summary to bench/out/quality/summary.json.

    python bench/quality.py [--model models:/deepfake-detector@champion] [--sets dev,ffpp] [--project .]

Training the recipe on the shared data (the other half of the benchmark) is left to the quality work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"


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


SETS = {"dev": dev_set, "ffpp": ffpp_set}


def summarise(table: pd.DataFrame, threshold: float) -> dict:
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
        "log_loss": metrics.get("log_loss"),
        "prior_log_loss": float(-(prior * np.log(prior) + (1 - prior) * np.log(1 - prior))) if 0 < prior < 1 else None,
        "accuracy_at_threshold": metrics.get("accuracy"),
        "threshold": threshold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="registered model URI; default: the project's champion")
    parser.add_argument("--project", default=str(ROOT), help="the project whose registry (mlflow.db) to use")
    parser.add_argument("--sets", default="dev,ffpp")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    parser.add_argument(
        "--no-round-trip",
        action="store_true",
        help="score decoded frames and crops as they are, without the storage round trip (for comparison)",
    )
    args = parser.parse_args()

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
        scored.to_csv(out / f"{name}.csv", index=False)
        summary["sets"][name] = summarise(scored, config.threshold)
        print(json.dumps({name: summary["sets"][name]}, indent=1), flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
