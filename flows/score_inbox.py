"""Prefect flow `score-inbox`: every new video dropped in an inbox folder, scored by the champion model.

Each video's result is appended to `results.jsonl` (and `results.csv`) in the inbox, then the video moves to
`done/` (scored: REAL, FAKE or NO_FACE) or `failed/` (ERROR, with the reason in its row). Results are keyed by
the file's SHA-256, so a rerun never rescores: a video found in the inbox whose content was already scored
(say the flow stopped between writing its row and moving it) is only moved. Files whose names start with a
dot are left alone, so an uploader can write `.name.mp4` and rename it when complete.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from deepfake.atomic import atomic_path, write_csv
from deepfake.serving.video_detector import json_row, result_table
from deepfake.video.probe import sha256_file

RESULTS = "results.jsonl"
DONE, FAILED = "done", "failed"


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_results(rows: list[dict], path: Path) -> None:
    """The JSON lines and the same rows as CSV beside them, each replaced whole."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    write_csv(result_table(rows), path.with_suffix(".csv"))


def waiting_videos(inbox: Path, results: Path) -> list[Path]:
    """Files directly in the inbox, oldest first; not the results, not hidden (still being written)."""
    skip = {results.name, results.with_suffix(".csv").name}
    files = [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in skip]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def move_to(path: Path, folder: Path, sha256: str) -> Path:
    """Move `path` into `folder`; a different file already there under that name keeps its name."""
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{sha256[:12]}{path.suffix}"
    os.replace(path, target)
    return target


@task(task_run_name="score {path.name}", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def score_video(detector, path: Path) -> dict:
    """One verdict row. A bad video is an ERROR row; an exception here (out of memory, say) is retried."""
    return detector.predict(path)


@flow(name="score-inbox", log_prints=True)
def score_inbox(
    inbox: str = "data/inbox", model: str | None = None, project: str = ".", retries: int = 2, retry_delay_s: float = 10
) -> dict:
    """Score the videos waiting in `inbox` with `model` (default: the champion of the project's register.name);
    return how many were scored, failed or already known."""
    from deepfake.config import project_config
    from deepfake.errors import DeepfakeError
    from deepfake.serving.loading import load_detector_model
    from deepfake.tracking import connect

    logger = get_run_logger()
    inbox_dir = Path(inbox)
    if not inbox_dir.is_dir():
        return Failed(message=f"inbox {inbox_dir} is not a folder")
    results_path = inbox_dir / RESULTS
    rows = read_results(results_path)
    known = {row["sha256"] for row in rows}
    summary = {"scored": 0, "failed": 0, "already_scored": 0, "results": str(results_path)}
    videos = waiting_videos(inbox_dir, results_path)
    if not videos:
        logger.info(f"inbox {inbox_dir}: nothing new")
        return summary
    if model is None:
        try:
            model = project_config(Path(project) / "params.yaml").register.model_uri
        except DeepfakeError as error:
            return Failed(message=str(error))
    loaded = None
    for path in videos:
        sha256 = sha256_file(path)
        if sha256 in known:
            moved = move_to(path, inbox_dir / DONE, sha256)
            logger.info(f"{path.name}: already scored, moved to {moved.parent.name}/")
            summary["already_scored"] += 1
            continue
        if loaded is None:  # only when there is work: an empty inbox every few minutes costs no model load
            try:
                connect(project, experiment=False)
                loaded = load_detector_model(model)
            except DeepfakeError as error:
                return Failed(message=str(error))
            logger.info(f"model {model} (version {loaded.version}) loaded in {loaded.seconds:.1f} s")
        state = score_video.with_options(retries=retries, retry_delay_seconds=retry_delay_s)(
            loaded.detector, path, return_state=True
        )
        if state.is_completed():
            row = state.result()
        else:
            row = loaded.detector.error_row(
                path, f"scoring failed after {retries + 1} tries: {state.result(raise_on_failure=False)}"
            )
        folder = FAILED if row["verdict"] == "ERROR" else DONE
        row = json_row(row) | {
            "video": path.name,
            "sha256": sha256,
            "model": model,
            "model_version": loaded.version,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "moved_to": f"{folder}/{path.name}",
        }
        rows.append(row)
        known.add(sha256)
        write_results(rows, results_path)  # the row first: if the move is lost, the rerun only moves
        moved = move_to(path, inbox_dir / folder, sha256)
        rows[-1]["moved_to"] = f"{folder}/{moved.name}"
        summary["failed" if folder == FAILED else "scored"] += 1
        logger.info(
            f"{path.name}: {row['verdict']} p_fake={row['p_fake']} -> {folder}/"
            + (f" ({row['reason']})" if row["reason"] else "")
        )
    write_results(rows, results_path)
    logger.info(
        f"inbox {inbox_dir}: {summary['scored']} scored, {summary['failed']} failed, "
        f"{summary['already_scored']} already scored; results in {results_path}"
    )
    return summary


if __name__ == "__main__":
    score_inbox()
