"""Prefect flow `faces`: the faces stage with its per-video jobs fanned out over a Dask cluster.

Used by the faces stage when `workers.dask` is set in params.yaml: `local` starts a Dask LocalCluster of
`workers.workers` single-threaded worker processes; an address (`tcp://scheduler:8786`) uses an existing
cluster, whose workers must have this project installed and see its data folder at the same path. The jobs,
keys and outputs are the stage's own (`update_faces`): only where each video's detection runs changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect_dask import DaskTaskRunner

from deepfake.extract import StageResult, update_faces
from deepfake.faces import FaceParams
from deepfake.parallel import Job, Outcome, PermanentError, PoolSettings, limit_threads


def transient(task, task_run, state) -> bool:
    """Retry anything but a PermanentError (the video itself is bad)."""
    try:
        state.result()
    except PermanentError:
        return False
    except Exception:  # noqa: BLE001 - any other failure may pass on a second try
        return True
    return True


@task(task_run_name="faces {job.name}", cache_policy=NO_CACHE)
def run_job(work: Callable[[Any], Any], job: Job) -> Any:
    limit_threads(1)  # one thread per Dask worker process, as the cluster is sized
    return work(job.payload)


def task_runner_jobs(work: Callable[[Any], Any], jobs: list[Job], settings: PoolSettings, **_) -> Iterator[Outcome]:
    """`run_jobs`' contract, with each job a task on the flow's task runner; outcomes as they finish."""
    submit = run_job.with_options(retries=settings.retries, retry_delay_seconds=settings.retry_delay_s,
                                  retry_condition_fn=transient)
    futures = {submit.submit(work, job): job for job in jobs}
    for future in as_completed(list(futures)):
        job = futures[future]
        try:
            yield Outcome(job, result=future.result(), attempts=1)
        except Exception as error:  # noqa: BLE001 - the job's failure, retries spent: reported, not raised
            yield Outcome(job, error=f"{type(error).__name__}: {error}", attempts=1)


def dask_task_runner(address: str, workers: int) -> DaskTaskRunner:
    if address == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": max(1, workers), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    return DaskTaskRunner(address=address)


@flow(name="faces", validate_parameters=False)
def faces_flow(videos: pd.DataFrame, frames_dir: str, out_dir: str, params: FaceParams, jpeg_quality: int,
               pool: PoolSettings) -> StageResult:
    return update_faces(videos, frames_dir, out_dir, params, jpeg_quality, pool, run=task_runner_jobs)


def update_faces_on_dask(videos: pd.DataFrame, frames_dir: str, out_dir: str, params: FaceParams, jpeg_quality: int,
                         pool: PoolSettings) -> StageResult:
    """`update_faces` with its jobs on the Dask cluster named by `pool.dask`."""
    runner = dask_task_runner(pool.dask, pool.workers)
    return faces_flow.with_options(task_runner=runner)(videos, str(frames_dir), str(out_dir), params, jpeg_quality, pool)
