"""Bulk jobs: sharded, resumable, preemption-safe batch detection on local worker processes or Ray.

>>> from spotdet.jobs import JobSpec, RunOptions, run_job, job_status
>>> summary = run_job("results/", JobSpec(source="images/", model="yolox-nano"), RunOptions(workers=2))
>>> summary.state, summary.outputs          # ('complete', [Path('results/results.jsonl')])
>>> run_job("results/", None)               # resume an interrupted job
"""

from spotdet.jobs.lock import JobLockedError
from spotdet.jobs.runner import EXIT_PREEMPTED, Reporter, RunSummary, run_job
from spotdet.jobs.spec import JobSpec, RunOptions
from spotdet.jobs.status import JobStatus, job_status
from spotdet.jobs.worker import WorkerStartError

__all__ = ["EXIT_PREEMPTED", "JobLockedError", "JobSpec", "JobStatus", "Reporter", "RunOptions", "RunSummary",
           "WorkerStartError", "job_status", "run_job"]
