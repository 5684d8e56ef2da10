"""The model card registered with each version: what it was trained on, how well it does, where it fails."""

from __future__ import annotations


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def model_card(*, name: str, train: dict, metrics: dict, params: dict, data: dict) -> str:
    """Markdown from the train summary, the evaluation metrics, the params and a description of the data."""
    video = metrics["video"]
    lines = [
        f"# {name}",
        "",
        "Classifies videos as REAL or FAKE: samples frames, finds faces with MTCNN, scores each face crop with a "
        "fine-tuned CNN, calibrates and aggregates the scores into one P(fake) per video.",
        "",
        "## Training data",
        "",
        "- sources: "
        + ", ".join(f"{name} `{source['root']}`" for name, source in params["dataset"]["sources"].items())
        + f"; videos and photos: {data.get('videos', 'n/a')} ({data.get('split_counts', 'n/a')})",
        f"- face crops: DVC hash `{data.get('faces_md5', 'unknown')}`; code: git `{data.get('git_commit', 'unknown')}`",
        f"- fakes seen in training: `{params['train']['fakes']}` (self_blend: pseudo-fakes made from real faces)",
        "",
        "## Model",
        "",
        f"- backbone `{train['backbone']}`, weights {train['weights_used']} ({train['weights_source']}), "
        f"input {train['input_size']} px",
        f"- weights kept: {train.get('kept', 'best epoch ' + str(train['best_epoch']))}, of {train['epochs_run']} run "
        f"(best by {train.get('selected_by', 'val loss')}: epoch {train['best_epoch']}); val loss {_fmt(train['val_loss'])}, "
        f"val AUC {_fmt(train['val_auc'])} against labelled fakes, {_fmt(train.get('val_blend_auc'))} against "
        f"held-out people's pseudo-fakes",
        f"- frames per video: {params['frames']['per_video'] if params['frames']['per_second'] is None else str(params['frames']['per_second']) + ' per second'}; "
        f"aggregation `{metrics['strategy']}`; temperature {_fmt(metrics['calibration']['temperature'])}; "
        f"decision threshold {_fmt(video.get('threshold'))} ({video.get('threshold_source')})",
        "",
        "## Test metrics",
        "",
        "| level | count | AUC | accuracy | balanced acc. | precision | recall | F1 | log loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level in ("face", "frame", "video"):
        m = metrics[level]
        lines.append(
            f"| {level} | {m.get('count')} | "
            + " | ".join(
                _fmt(m.get(k))
                for k in ("auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "log_loss")
            )
            + " |"
        )
    lines += [
        "",
        f"Video AUC 95% interval (bootstrap): {_fmt(video.get('auc_ci_low'))} – {_fmt(video.get('auc_ci_high'))}; "
        f"test videos without a face: {video.get('no_face_videos')}.",
        "",
        "## Robustness (test split)",
        "",
        "| condition | face AUC | video AUC | video accuracy |",
        "|---|---|---|---|",
    ]
    for condition, row in metrics["robustness"].items():
        lines.append(
            f"| {condition} | {_fmt(row.get('face_auc'))} | {_fmt(row.get('video_auc'))} | {_fmt(row.get('video_accuracy'))} |"
        )
    calibration = metrics["calibration"]
    lines += [
        "",
        "## Calibration",
        "",
        f"Temperature {_fmt(calibration['temperature'])} fitted on {calibration['fitted_on']}; expected calibration error "
        f"on test faces {_fmt(calibration['ece_face_before'])} before, {_fmt(calibration['ece_face_after'])} after; "
        f"on test videos {_fmt(calibration['ece_video_before'])} before, {_fmt(calibration['ece_video_after'])} after.",
        "",
        "## Known limits",
        "",
        "- Judges faces only: a video without a detectable face gets NO_FACE, not a verdict; manipulated "
        "backgrounds, voices and lip-sync-only fakes are out of scope.",
        "- Test sets here are small: read the AUC interval, not only the point estimate.",
        "- Trained on the data above: new generators, heavy compression or very low resolution can fool it; "
        "P(fake) is calibrated on the validation split of that data, not on your traffic.",
        "- A verdict is evidence for a human reviewer, not proof.",
    ]
    return "\n".join(lines) + "\n"
