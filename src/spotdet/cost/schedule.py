"""Crontab lines that start an instance at the beginning of each window and stop it at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from spotdet.cost.windows import HOURS_PER_MONTH, Window, WindowError, hours_per_month, windows_overlap

CRON_DAY = (1, 2, 3, 4, 5, 6, 0)  # datetime.weekday() index -> cron day-of-week (0 = Sunday)


def cron_days(days: tuple[int, ...] | list[int]) -> str:
    """Weekday indexes (0 = Monday) as a cron day-of-week field: ``(0..4)`` -> ``"1-5"``, all -> ``"*"``."""
    values = sorted({CRON_DAY[d] for d in days})
    if len(values) == 7:
        return "*"
    parts, run = [], [values[0]]
    for v in values[1:]:
        if v == run[-1] + 1:
            run.append(v)
        else:
            parts.append(run)
            run = [v]
    parts.append(run)
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in parts)


@dataclass
class Schedule:
    lines: list[str]
    hours_per_month: float
    always_on_hours_per_month: float
    monthly_usd: float | None
    always_on_monthly_usd: float | None
    monthly_saving_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def crontab(self) -> str:
        return "\n".join(self.lines) + "\n"


def cron_lines(window: Window, start_cmd: str, stop_cmd: str) -> list[str]:
    """Two crontab lines for one window; the stop moves to the next day when the window crosses midnight."""
    start_h, start_m = divmod(window.start_min, 60)
    end = window.end_min % (24 * 60)
    end_h, end_m = divmod(end, 60)
    stop_next_day = window.crosses_midnight or window.end_min == 24 * 60
    stop_days = tuple((d + 1) % 7 for d in window.days) if stop_next_day else window.days
    return [f"{start_m} {start_h} * * {cron_days(window.days)} {start_cmd}",
            f"{end_m} {end_h} * * {cron_days(stop_days)} {stop_cmd}"]


def make_schedule(windows: list[Window], start_cmd: str, stop_cmd: str,
                  price_per_hour: float | None = None) -> Schedule:
    """Crontab lines for ``windows`` and the monthly cost against running 24/7."""
    if not start_cmd.strip() or not stop_cmd.strip():
        raise WindowError("--start-cmd and --stop-cmd must not be empty")
    if any("\n" in c for c in (start_cmd, stop_cmd)):
        raise WindowError("--start-cmd and --stop-cmd must be single lines (a crontab entry is one line)")
    if windows_overlap(windows):
        raise WindowError("the windows overlap, so a stop would cut another window short; merge them into one")
    if any(w.minutes_per_day == 24 * 60 and len(w.days) == 7 for w in windows):
        raise WindowError("a window covering every hour of every day needs no schedule (that is 24/7)")
    lines = [line for w in windows for line in cron_lines(w, start_cmd.strip(), stop_cmd.strip())]
    hours = hours_per_month(windows)
    monthly = always = saving = None
    if price_per_hour is not None:
        monthly = hours * price_per_hour
        always = HOURS_PER_MONTH * price_per_hour
        saving = always - monthly
    return Schedule(lines, hours, HOURS_PER_MONTH, monthly, always, saving)
