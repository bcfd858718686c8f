"""Weekly time windows such as ``"mon-fri 09:00-18:00"``: parsing, hours per week, membership.

Grammar (case-insensitive; several windows separated by ``;``)::

    window  := days " " HH:MM "-" HH:MM
    days    := "daily" | "weekdays" | "weekends" | day ("," day | "-" day)*
    day     := mon | tue | wed | thu | fri | sat | sun   (full names accepted)

An end time before the start crosses midnight (``fri 22:00-02:00`` runs into Saturday); ``24:00`` is
allowed as an end. Overlapping windows are merged when counting hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from spotdet.errors import UsageError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
_FULL = {name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                                           "sunday"))}
_ALIASES = {"daily": tuple(range(7)), "everyday": tuple(range(7)), "weekdays": tuple(range(5)),
            "weekends": (5, 6), "weekend": (5, 6)}
MINUTES_PER_WEEK = 7 * 24 * 60
WEEKS_PER_MONTH = 365.0 / 7.0 / 12.0  # 4.345
HOURS_PER_MONTH = 365.0 * 24.0 / 12.0  # 730
_WINDOW_RE = re.compile(r"^\s*(?P<days>[a-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


class WindowError(UsageError):
    """A window string that does not follow ``DAYS HH:MM-HH:MM``."""


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a daily start/end in minutes after midnight."""

    days: tuple[int, ...]
    start_min: int
    end_min: int  # may be <= start_min: the window then ends the next day
    text: str = ""

    @property
    def crosses_midnight(self) -> bool:
        return self.end_min <= self.start_min

    @property
    def minutes_per_day(self) -> int:
        return (self.end_min - self.start_min) % (24 * 60) or 24 * 60

    @property
    def hours_per_week(self) -> float:
        return len(self.days) * self.minutes_per_day / 60.0

    def week_minutes(self) -> set[int]:
        """Minutes of the week (0 = Monday 00:00) covered by this window."""
        covered: set[int] = set()
        for day in self.days:
            begin = day * 24 * 60 + self.start_min
            covered.update((begin + m) % MINUTES_PER_WEEK for m in range(self.minutes_per_day))
        return covered

    def contains(self, when: datetime) -> bool:
        minute = when.weekday() * 24 * 60 + when.hour * 60 + when.minute
        return minute in self.week_minutes()

    def __str__(self) -> str:
        return self.text or f"{','.join(DAY_NAMES[d] for d in self.days)} {fmt_minutes(self.start_min)}-" \
                             f"{fmt_minutes(self.end_min)}"


def fmt_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_day(token: str, text: str) -> int:
    token = token.strip()
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    if token in _FULL:
        return _FULL[token]
    raise WindowError(f"window {text!r}: unknown day {token!r} (use mon, tue, wed, thu, fri, sat, sun, "
                      "daily, weekdays or weekends)")


def parse_days(spec: str, text: str = "") -> tuple[int, ...]:
    """``"mon-fri"``, ``"sat,sun"``, ``"fri-mon"`` (wraps), ``"daily"`` -> sorted weekday indexes."""
    text = text or spec
    spec = spec.strip().lower()
    if spec in _ALIASES:
        return _ALIASES[spec]
    days: set[int] = set()
    for part in spec.split(","):
        if not part.strip():
            raise WindowError(f"window {text!r}: empty day in {spec!r}")
        if "-" in part:
            first, _, last = part.partition("-")
            a, b = _parse_day(first, text), _parse_day(last, text)
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        else:
            days.add(_parse_day(part, text))
    return tuple(sorted(days))


def _parse_time(value: str, text: str, allow_24: bool) -> int:
    hours, _, minutes = value.partition(":")
    h, m = int(hours), int(minutes)
    if allow_24 and h == 24 and m == 0:
        return 24 * 60
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise WindowError(f"window {text!r}: {value} is not a time of day (00:00-23:59, or 24:00 as an end)")
    return h * 60 + m


def parse_window(text: str) -> Window:
    """Parse one window, e.g. ``"mon-fri 09:00-18:00"``; raises WindowError with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise WindowError("empty window; expected e.g. 'mon-fri 09:00-18:00'")
    match = _WINDOW_RE.match(text.lower())
    if not match:
        raise WindowError(f"window {text!r} is not of the form 'DAYS HH:MM-HH:MM', e.g. 'mon-fri 09:00-18:00'")
    days = parse_days(match["days"], text)
    start = _parse_time(match["start"], text, allow_24=False)
    end = _parse_time(match["end"], text, allow_24=True)
    if start == end % (24 * 60) and end != 24 * 60:
        raise WindowError(f"window {text!r} starts and ends at the same time; use 00:00-24:00 for whole days")
    return Window(days=days, start_min=start, end_min=end, text=text.strip())


def parse_windows(texts: str | list[str] | tuple[str, ...]) -> list[Window]:
    """One or more windows: a list of strings and/or ``;``-separated strings."""
    items = [texts] if isinstance(texts, str) else list(texts)
    windows = [parse_window(part) for item in items for part in item.split(";") if part.strip()]
    if not windows:
        raise WindowError("no window given; expected e.g. 'mon-fri 09:00-18:00'")
    return windows


def hours_per_week(windows: list[Window]) -> float:
    """Hours per week covered by the union of ``windows`` (overlaps counted once)."""
    covered: set[int] = set()
    for w in windows:
        covered |= w.week_minutes()
    return len(covered) / 60.0


def hours_per_month(windows: list[Window]) -> float:
    return hours_per_week(windows) * WEEKS_PER_MONTH


def windows_overlap(windows: list[Window]) -> bool:
    total = sum(len(w.week_minutes()) for w in windows)
    return total != hours_per_week(windows) * 60
