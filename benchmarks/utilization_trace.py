"""Write a generated multi-day GPU utilization trace in nvidia-smi's CSV format, for `spotdet advise`.

    python benchmarks/utilization_trace.py office.csv --profile office --days 7
    spotdet advise --nvidia-smi-csv office.csv --instance aws-g4dn.xlarge

Profiles (local time, one line per --interval seconds):
  office     weekdays 09:00-18:00 at 45-85 % with a lunch dip, 0-3 % otherwise (idle most of the time)
  saturated  around the clock 60-100 %, above 80 % for roughly 40 % of the time (undersized GPU)
A few malformed lines (as a flaky logger would write) are mixed in; advise skips and counts them.
"""

from __future__ import annotations

import argparse
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

HEADER = "timestamp, utilization.gpu [%], memory.used [MiB], memory.total [MiB]"


def level(profile: str, t: datetime, rng: random.Random) -> float:
    if profile == "office":
        if t.weekday() < 5 and 9 <= t.hour < 18:
            base = 65 + 20 * math.sin((t.hour - 9) / 9 * math.pi) - (25 if t.hour == 12 else 0)
            return max(0.0, min(100.0, base + rng.gauss(0, 8)))
        return float(rng.choice([0, 0, 0, 1, 2, 3]))
    hour_wave = 80 + 15 * math.sin(t.hour / 24 * 2 * math.pi)
    return max(0.0, min(100.0, hour_wave + rng.gauss(0, 10)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--profile", choices=("office", "saturated"), default="office")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--interval", type=float, default=60.0, help="seconds between lines")
    ap.add_argument("--start", default="2025-01-06 00:00", help="local start time (a Monday by default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t = datetime.strptime(args.start, "%Y-%m-%d %H:%M")
    end = t + timedelta(days=args.days)
    lines, bad = [HEADER], 0
    while t < end:
        util = level(args.profile, t, rng)
        mem = 900 + util * 60
        lines.append(f"{t:%Y/%m/%d %H:%M:%S}.{rng.randrange(1000):03d}, {util:.0f} %, {mem:.0f} MiB, 16384 MiB")
        if rng.random() < 0.001:
            lines.append(rng.choice([f"{t:%Y/%m/%d %H:%M:%S}.000, [N/A], [N/A], 16384 MiB", "nvidia-smi: lost",
                                     f"{t:%Y/%m/%d %H:%M:%S}.000, 12 %"]))
            bad += 1
        t += timedelta(seconds=args.interval)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 1 - bad} samples and {bad} malformed lines to {args.out}")


if __name__ == "__main__":
    main()
