"""Prefect flow `retrain`: the DVC pipeline, unattended.

Each stage of dvc.yaml is one task running `dvc repro --single-item STAGE` in the project, so the flow and a
hand-run `dvc repro` share one cache and one dvc.lock: a stage whose inputs did not change is skipped either
way. Stages that need the accelerator (training) wait for a slot of the `gpu` concurrency limit. Inputs are
pulled from the DVC remote first and the new outputs pushed after, so another machine can `dvc pull` them.
The register stage runs the promotion gate; its decision is part of the summary the flow returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from dvc.exceptions import DvcException
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.states import Failed

GPU_LIMIT = "gpu"
GPU_STAGES = ("train",)


class StageFailed(Exception):
    """A stage exited non-zero; the message is the stage's own last words."""


def read_pipeline(project: str | os.PathLike) -> tuple[list[str], str | None]:
    """The stages of dvc.yaml in the order they must run (dependencies first), and the default remote."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        # DVC's graph points from a stage to the stages it depends on.
        stages = [stage.name for stage in reversed(list(nx.topological_sort(repo.index.graph)))]
        return stages, repo.config["core"].get("remote")


def dvc_env() -> dict[str, str]:
    """The environment DVC runs in: the stages' own `python` is this interpreter, whatever PATH says."""
    return os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }


def dvc(project: str | os.PathLike, *args: str) -> tuple[int, list[str]]:
    """Run a DVC command in `project`, streaming its output to the run's log; (exit code, output lines)."""
    logger = get_run_logger()
    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=dvc_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as process:
        for line in process.stdout:
            line = line.rstrip()
            if line:
                logger.info(line)
                tail.append(line)
    return process.returncode, list(tail)


def failure_message(stage: str, output: list[str]) -> str:
    """What the stage said before DVC's own 'failed to reproduce' line: usually one line naming the problem."""
    commands = [i for i, line in enumerate(output) if line.startswith("> ")]  # DVC echoes the command it runs
    after = output[commands[-1] + 1 :] if commands else output
    own = [line for line in after if not line.startswith(("ERROR: failed to reproduce", "ERROR: failed to run"))]
    return f"stage {stage} failed: " + (" | ".join(own[-3:]) if own else "no output")


@task(task_run_name="dvc repro {stage}", retries=2, retry_delay_seconds=30, cache_policy=NO_CACHE)
def reproduce(project: str, stage: str) -> bool:
    """Bring one stage up to date; True when it ran, False when DVC found nothing changed."""
    code, output = dvc(project, "repro", "--single-item", stage)
    if code != 0:
        raise StageFailed(failure_message(stage, output))
    return any(line.startswith(f"Running stage '{stage}'") for line in output)


@task(task_run_name="dvc {direction}", retries=2, retry_delay_seconds=30, cache_policy=NO_CACHE)
def transfer(project: str, direction: str) -> None:
    """Pull the pipeline's cached data from the default remote, or push it there."""
    args = ["pull", "--allow-missing"] if direction == "pull" else ["push"]
    code, output = dvc(project, *args)
    if code != 0:
        raise StageFailed(f"dvc {direction} failed: " + " | ".join(output[-3:]))


def ensure_concurrency_limit(name: str, limit: int = 1) -> None:
    """Create the limit with one slot if the server has none of that name (an operator's setting is kept)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))


def read_promotion(project: str | os.PathLike) -> dict | None:
    from deepfake.config import project_config

    path = Path(project) / project_config(Path(project) / "params.yaml").paths.reports / "promotion.json"
    return json.loads(path.read_text()) if path.is_file() else None


def summary_markdown(summary: dict) -> str:
    promotion = summary["promotion"]
    decision = (
        f"{promotion['name']} v{promotion['version']} → **{promotion['alias']}** "
        f"({promotion['metric']} {promotion['value']}; {promotion['reason']})"
        if promotion
        else "no model registered"
    )
    return "\n".join(
        [
            "# Retrain",
            "",
            f"- ran: {', '.join(summary['ran']) or 'nothing (all up to date)'}",
            f"- skipped: {', '.join(summary['skipped']) or 'none'}",
            f"- registry: {decision}",
            f"- remote: {summary['remote'] or 'none configured'} (pushed: {summary['pushed']})",
        ]
    )


@flow(name="retrain", log_prints=True)
def retrain(
    project: str = ".",
    pull: bool = True,
    push: bool = True,
    retries: int = 2,
    retry_delay_s: float = 30,
    gpu_timeout_s: float | None = None,
) -> dict:
    """Run the DVC pipeline stage by stage and return what ran, what was skipped and the registry's decision."""
    project = str(Path(project).resolve())
    logger = get_run_logger()
    try:
        stages, remote = read_pipeline(project)
    except DvcException as error:
        return Failed(message=f"{project}: {error}")
    if pull and remote:
        transfer(project, "pull")
    ran, skipped = [], []
    for stage in stages:
        run_stage = reproduce.with_options(retries=retries, retry_delay_seconds=retry_delay_s)
        if stage in GPU_STAGES:
            ensure_concurrency_limit(GPU_LIMIT)
            try:
                with concurrency(GPU_LIMIT, occupy=1, timeout_seconds=gpu_timeout_s, strict=True):
                    state = run_stage(project, stage, return_state=True)
            except TimeoutError:
                return Failed(message=f"stage {stage}: no `{GPU_LIMIT}` slot free within {gpu_timeout_s} s")
        else:
            state = run_stage(project, stage, return_state=True)
        if state.is_failed():
            # The stage's own message, not the traceback of the task that ran it.
            return Failed(message=str(state.result(raise_on_failure=False)))
        (ran if state.result() else skipped).append(stage)
    pushed = bool(push and remote)
    if pushed:
        transfer(project, "push")
    summary = {"ran": ran, "skipped": skipped, "promotion": read_promotion(project), "remote": remote, "pushed": pushed}
    logger.info(summary_markdown(summary))
    create_markdown_artifact(summary_markdown(summary), key="retrain-summary", description="What the retrain flow did")
    return summary


if __name__ == "__main__":
    retrain()
