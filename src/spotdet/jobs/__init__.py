"""Bulk jobs: sharded, resumable, preemption-safe batch detection on local worker processes or Ray.

>>> from spotdet.jobs import JobSpec, RunOptions, run_job, job_status
>>> summary = run_job("results/", JobSpec(source="images/", model="yolox-nano"), RunOptions(workers=2))
>>> summary.state, summary.outputs          # ('complete', [Path('results/results.jsonl')])
>>> run_job("results/", None)               # resume an interrupted job
"""

from spotdet.jobs.runner import EXIT_PREEMPTED, JobLockedError, JobSpec, Reporter, RunOptions, RunSummary, run_job
from spotdet.vision.sources import iter_sources
from spotdet.jobs.status import JobStatus, job_status

__all__ = ["EXIT_PREEMPTED", "JobLockedError", "JobSpec", "JobStatus", "Reporter", "RunOptions", "RunSummary",
           "iter_sources", "job_status", "run_job"]
