"""The one progress-bar style used for counted work (images evaluated, calibrated, benchmarked)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn


def count_progress(console: Console | None = None, disable: bool = False) -> Progress:
    """Description, bar, done/total, elapsed and remaining time; on stderr, removed when finished."""
    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console or Console(stderr=True), transient=True, disable=disable)
