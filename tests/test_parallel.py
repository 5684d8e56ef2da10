"""Running jobs in worker processes: one outcome per job, retries, permanent failures and workers that die.

The work functions live at module level so that spawned workers can import them (as tests.test_parallel).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import pytest

from deepfake.config import PoolSettings
from deepfake.errors import PermanentError
from deepfake.video.pool import Job, Outcome, limit_threads, run_jobs

# ---------------------------------------------------------------- work functions (run in the workers)


def work(payload):
    """payload is (kind, argument); what each kind does is spelled out below."""
    kind, arg = payload
    if kind == "double":
        return arg * 2
    if kind == "permanent":
        raise PermanentError(f"bad input: {arg}")
    if kind == "transient_once":  # fails the first time only; the marker file remembers across processes
        marker = Path(arg)
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return "recovered"
        raise OSError("temporarily unavailable")
    if kind == "always_oserror":
        raise OSError(f"disk on fire: {arg}")
    if kind == "threads":
        return os.environ.get("OMP_NUM_THREADS"), cv2.getNumThreads()
    if kind == "die_once":  # the worker process exits on the first attempt only
        marker = Path(arg)
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return "survived"
        os._exit(1)
    if kind == "die_always":
        time.sleep(0.3)  # let the other jobs finish first
        os._exit(1)
    raise AssertionError(f"unknown kind {kind!r}")


# ---------------------------------------------------------------- helpers


@pytest.fixture
def restore_threads(monkeypatch):
    """run_jobs/limit_threads change this process's cv2 threads and OMP_NUM_THREADS: put them back."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # monkeypatch restores the original value afterwards
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


def by_name(outcomes: list[Outcome]) -> dict[str, Outcome]:
    names = [outcome.job.name for outcome in outcomes]
    assert len(names) == len(set(names)), f"a job came back more than once: {names}"
    return {outcome.job.name: outcome for outcome in outcomes}


def mixed_jobs(tmp: Path) -> list[Job]:
    return [
        Job("a", ("double", 1)),
        Job("bad", ("permanent", "a.mp4 has no frames")),
        Job("b", ("double", 20)),
        Job("flaky", ("transient_once", str(tmp / "flaky.marker"))),
        Job("broken", ("always_oserror", "x")),
        Job("c", ("double", 300)),
        Job("threads", ("threads", None)),
    ]


# ---------------------------------------------------------------- one mixed batch, inline and in a pool


@pytest.fixture(scope="module", params=[1, 2], ids=["inline", "pool"])
def mixed(request, tmp_path_factory):
    """Run one batch of good and bad jobs once per worker count; the tests below check its outcomes."""
    tmp = tmp_path_factory.mktemp(f"mixed{request.param}")
    jobs = mixed_jobs(tmp)
    settings = PoolSettings(workers=request.param, threads_per_worker=3, retries=2, retry_delay_s=0)
    threads_before, omp_before = cv2.getNumThreads(), os.environ.get("OMP_NUM_THREADS")
    seen: list[int] = []
    try:
        outcomes = list(run_jobs(work, jobs, settings, postfix=lambda done: seen.append(len(done)) or {}))
    finally:
        cv2.setNumThreads(threads_before)
        if omp_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp_before
    return jobs, outcomes, seen


def test_every_job_yields_exactly_one_outcome(mixed):
    jobs, outcomes, seen = mixed
    assert len(outcomes) == len(jobs)
    assert all(isinstance(outcome, Outcome) for outcome in outcomes)
    assert set(by_name(outcomes)) == {job.name for job in jobs}
    assert {outcome.job for outcome in outcomes} == set(jobs)
    assert seen == list(range(1, len(jobs) + 1)), "postfix should see the outcomes so far after each one"


def test_good_jobs_succeed_first_time(mixed):
    _, outcomes, _ = mixed
    outcomes = by_name(outcomes)
    for name, expected in [("a", 2), ("b", 40), ("c", 600)]:
        outcome = outcomes[name]
        assert outcome.ok and outcome.error == ""
        assert outcome.result == expected
        assert outcome.attempts == 1


def test_permanent_error_fails_at_once(mixed):
    _, outcomes, _ = mixed
    outcome = by_name(outcomes)["bad"]
    assert not outcome.ok
    assert outcome.attempts == 1
    assert outcome.error == "bad input: a.mp4 has no frames"
    assert outcome.result is None


def test_transient_failure_is_retried_and_succeeds(mixed):
    _, outcomes, _ = mixed
    outcome = by_name(outcomes)["flaky"]
    assert outcome.ok, outcome.error
    assert outcome.error == ""
    assert outcome.result == "recovered"
    assert outcome.attempts == 2


def test_persistent_failure_gives_up_after_retries(mixed):
    _, outcomes, _ = mixed
    outcome = by_name(outcomes)["broken"]
    assert not outcome.ok
    assert outcome.result is None
    assert outcome.attempts == 3  # retries=2: the first try and two more
    assert outcome.error.startswith("OSError: disk on fire: x")
    assert "test_parallel.py:" in outcome.error, "the error should say where it was raised"
    assert outcome.error.endswith("(failed 3 tries)")


def test_jobs_run_with_the_thread_limit(mixed):
    _, outcomes, _ = mixed
    outcome = by_name(outcomes)["threads"]
    assert outcome.ok, outcome.error
    assert outcome.result == ("3", 3)


# ---------------------------------------------------------------- inline details (cheap: no processes)


def test_no_retries_means_one_attempt_and_no_tries_suffix(restore_threads):
    settings = PoolSettings(workers=1, retries=0, retry_delay_s=0)
    [outcome] = run_jobs(work, [Job("broken", ("always_oserror", "y"))], settings)
    assert outcome.attempts == 1
    assert outcome.error.startswith("OSError: disk on fire: y (at test_parallel.py:")
    assert "tries" not in outcome.error


def test_inline_runs_jobs_in_order_and_lazily(restore_threads):
    jobs = [Job(f"j{i}", ("double", i)) for i in range(5)]
    outcomes = run_jobs(work, jobs, PoolSettings(workers=1, retry_delay_s=0))
    first = next(outcomes)
    assert (first.job.name, first.result) == ("j0", 0)
    assert [(o.job.name, o.result) for o in outcomes] == [(f"j{i}", 2 * i) for i in range(1, 5)]


def test_no_jobs_no_outcomes(restore_threads):
    assert list(run_jobs(work, [], PoolSettings(workers=1))) == []
    assert list(run_jobs(work, [], PoolSettings(workers=2))) == []


def test_pool_settings_threads():
    assert PoolSettings(workers=2, threads_per_worker=5).threads == 5
    cores = os.cpu_count() or 1
    assert PoolSettings(workers=1).threads == max(1, cores)
    assert PoolSettings(workers=cores * 4).threads == 1


# ---------------------------------------------------------------- workers that die


@pytest.mark.timeout(120)
def test_worker_that_dies_once_is_retried_in_a_fresh_pool(tmp_path):
    jobs = [Job("dies", ("die_once", str(tmp_path / "died.marker")))]
    jobs += [Job(f"j{i}", ("double", i)) for i in range(4)]
    outcomes = list(run_jobs(work, jobs, PoolSettings(workers=2, retry_delay_s=0)))
    assert (tmp_path / "died.marker").exists(), "the first attempt should have run (and died)"
    got = by_name(outcomes)
    assert set(got) == {job.name for job in jobs}, f"missing outcomes: {sorted({j.name for j in jobs} - set(got))}"
    assert got["dies"].ok and got["dies"].result == "survived"
    assert got["dies"].attempts == 2
    for i in range(4):
        assert got[f"j{i}"].ok and got[f"j{i}"].result == 2 * i


@pytest.mark.timeout(120)
def test_worker_that_always_dies_ends_as_a_failure(tmp_path):
    jobs = [Job("dies", ("die_always", None)), Job("fine", ("double", 21))]
    started = time.monotonic()
    outcomes = list(run_jobs(work, jobs, PoolSettings(workers=2, retries=2, retry_delay_s=0)))
    assert time.monotonic() - started < 100
    got = by_name(outcomes)
    assert got["fine"].ok and got["fine"].result == 42
    assert "dies" in got, "the job whose worker died never came back as an Outcome"
    outcome = got["dies"]
    assert not outcome.ok
    assert "worker process died" in outcome.error
    assert outcome.attempts == 3
    assert outcome.error.endswith("(failed 3 tries)")


# ---------------------------------------------------------------- limit_threads


@pytest.mark.parametrize("threads", [1, 3])
def test_limit_threads_sets_cv2_and_omp(restore_threads, threads):
    limit_threads(threads)
    assert cv2.getNumThreads() == threads
    assert os.environ["OMP_NUM_THREADS"] == str(threads)
