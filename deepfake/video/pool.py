"""Running per-video jobs in worker processes or on a Dask cluster, with retries and a progress bar.

One bad video never stops the others: a job that raises a PermanentError fails at once, any other
exception is retried, and whatever still fails comes back as a failure with its reason.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from deepfake.config import PoolSettings
from deepfake.errors import PermanentError


@dataclass(frozen=True)
class Job:
    name: str
    payload: Any


@dataclass
class Outcome:
    job: Job
    result: Any = None
    error: str = ""
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return not self.error


def limit_threads(threads: int) -> None:
    """Keep one process's numeric libraries to `threads` threads, so workers don't fight over cores.

    Torch reads OMP_NUM_THREADS when it is first imported, so a worker that never needs torch never pays
    for importing it here.
    """
    import sys

    import cv2

    os.environ["OMP_NUM_THREADS"] = str(threads)
    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _attempt(work: Callable[[Any], Any], job: Job) -> tuple[Any, str, bool]:
    """(result, error, retryable) for one try of one job; never raises."""
    try:
        return work(job.payload), "", False
    except PermanentError as error:
        return None, str(error), False
    except Exception as error:  # noqa: BLE001 - any other failure may be transient: the caller retries it
        where = traceback.extract_tb(error.__traceback__)[-1]
        return None, f"{type(error).__name__}: {error} (at {os.path.basename(where.filename)}:{where.lineno})", True


# How a stage runs its jobs: run_jobs below, or another engine yielding Outcomes the same way.
Runner = Callable[..., Iterator["Outcome"]]


def run_jobs(
    work: Callable[[Any], Any],
    jobs: Iterable[Job],
    settings: PoolSettings,
    *,
    desc: str = "videos",
    postfix: Callable[[list[Outcome]], dict] | None = None,
) -> Iterator[Outcome]:
    """Run `work(job.payload)` for every job and yield each Outcome as it finishes (in any order).

    With one worker the jobs run in this process; with more, in spawned processes (fork is unsafe once
    torch has started its threads). A worker that dies (killed, out of memory) costs its job an attempt.
    """
    jobs = list(jobs)
    done: list[Outcome] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="video", disable=None, dynamic_ncols=True)
    try:
        if settings.dask:
            source = _run_dask(work, jobs, settings)
        elif settings.workers <= 1:
            source = _run_inline(work, jobs, settings)
        else:
            source = _run_pool(work, jobs, settings)
        for outcome in source:
            done.append(outcome)
            bar.update(1)
            if postfix:
                bar.set_postfix(postfix(done), refresh=False)
            yield outcome
    finally:
        bar.close()


def _run_inline(work, jobs: list[Job], settings: PoolSettings) -> Iterator[Outcome]:
    limit_threads(settings.threads)
    for job in jobs:
        outcome = Outcome(job)
        while True:
            outcome.attempts += 1
            outcome.result, outcome.error, retryable = _attempt(work, job)
            if not retryable or outcome.attempts > settings.retries:
                break
            time.sleep(settings.retry_delay_s)
        yield _final(outcome, settings)


def _run_pool(work, jobs: list[Job], settings: PoolSettings) -> Iterator[Outcome]:
    context = multiprocessing.get_context("spawn")
    outcomes = {job.name: Outcome(job) for job in jobs}
    pending = list(jobs)
    while pending:
        with ProcessPoolExecutor(
            settings.workers, mp_context=context, initializer=limit_threads, initargs=(settings.threads,)
        ) as pool:
            running = {}
            try:
                while pending or running:
                    while pending and len(running) < settings.workers * 2:
                        future = pool.submit(_attempt, work, pending[0])
                        job = pending.pop(0)
                        outcomes[job.name].attempts += 1
                        running[future] = job
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        # result() raises BrokenProcessPool while the job is still listed as running.
                        attempt = future.result()
                        job = running.pop(future)
                        outcome = outcomes[job.name]
                        outcome.result, outcome.error, retryable = attempt
                        if retryable and outcome.attempts <= settings.retries:
                            time.sleep(settings.retry_delay_s)
                            pending.append(job)
                        else:
                            yield _final(outcome, settings)
            except BrokenProcessPool:
                # A worker died mid-job; every job in flight is suspect. Retry them in a fresh pool.
                for job in running.values():
                    outcome = outcomes[job.name]
                    outcome.error = "worker process died (killed or out of memory)"
                    if outcome.attempts <= settings.retries:
                        pending.append(job)
                    else:
                        yield _final(outcome, settings)


def _run_dask(work, jobs: list[Job], settings: PoolSettings) -> Iterator[Outcome]:
    """The jobs on a Dask cluster: `settings.dask` is "local" (a LocalCluster of `workers` single-threaded
    processes) or a scheduler address whose workers have this project installed and see its data folders
    at the same paths. Retries follow the same rule as here: anything but a PermanentError."""
    from distributed import Client, LocalCluster, as_completed

    if settings.dask == "local":
        cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    else:
        cluster = None
    try:
        with Client(cluster if cluster is not None else settings.dask) as client:
            client.run(limit_threads, settings.threads)
            outcomes = {job.name: Outcome(job) for job in jobs}
            running = {}
            for job in jobs:
                outcomes[job.name].attempts += 1
                running[client.submit(_attempt, work, job, pure=False)] = job
            finished = as_completed(list(running))
            for future in finished:
                job = running.pop(future)
                outcome = outcomes[job.name]
                try:
                    outcome.result, outcome.error, retryable = future.result()
                except Exception as error:  # noqa: BLE001 - a worker lost mid-job (KilledWorker): retried like a crash
                    outcome.result, outcome.error, retryable = (
                        None,
                        f"Dask worker failed: {type(error).__name__}: {error}",
                        True,
                    )
                if retryable and outcome.attempts <= settings.retries:
                    outcome.attempts += 1
                    retry = client.submit(_attempt, work, job, pure=False)
                    running[retry] = job
                    finished.add(retry)
                else:
                    yield _final(outcome, settings)
    finally:
        if cluster is not None:
            cluster.close()


def _final(outcome: Outcome, settings: PoolSettings) -> Outcome:
    if outcome.error and outcome.attempts > 1:
        outcome.error = f"{outcome.error} (failed {outcome.attempts} tries)"
    return outcome
