"""PeakMemory against allocations of a known size (independent of the reader itself)."""

from __future__ import annotations

import numpy as np
import pytest

from spotdet.bench.memory import PeakMemory, rss_mb

SPIKE_MB = 160


def _spike(mb: int) -> None:
    block = np.ones(mb * 2**20, dtype=np.uint8)  # np.ones touches every page: resident, not just reserved
    assert block.sum() == mb * 2**20
    del block


@pytest.mark.parametrize("method", ["VmHWM", "polling"])
def test_peak_catches_a_freed_spike_of_known_size(method):
    peak = PeakMemory()
    if method == "polling":
        peak.method = "polling"  # what happens where /proc/self/clear_refs cannot be written
    elif peak.method != "VmHWM":
        pytest.skip("the kernel high-water mark cannot be reset here")
    try:
        peak.reset()
        before = rss_mb()
        _spike(SPIKE_MB)
        after = rss_mb()
        # the block is gone from RSS again, but the peak remembers it
        assert after < before + SPIKE_MB / 2
        assert peak.peak_mb() >= before + SPIKE_MB * 0.9
    finally:
        peak.close()


def test_reset_forgets_an_earlier_spike():
    peak = PeakMemory()
    if peak.method != "VmHWM":
        pytest.skip("the kernel high-water mark cannot be reset here")
    try:
        _spike(SPIKE_MB)
        peak.reset()
        now = rss_mb()
        assert peak.peak_mb() < now + SPIKE_MB / 2  # the spike before reset() does not count
    finally:
        peak.close()
