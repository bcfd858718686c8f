"""OptimizeRequest: one frozen, validated set of build settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.mixed import DEFAULT_TARGET_DB
from spotdet.optimize.request import OptimizeRequest


def test_defaults_and_normalised_fields():
    r = OptimizeRequest("int8-static", calib="imgs", exclude_nodes=["a", "b"])
    assert r.calib == Path("imgs") and r.exclude_nodes == ("a", "b")
    assert r.target_db == DEFAULT_TARGET_DB and r.activation_bits == 8 and r.mixed and not r.dynamic_batch
    assert r == OptimizeRequest("int8-static", calib=Path("imgs"), exclude_nodes=("a", "b"),
                                target_db=DEFAULT_TARGET_DB)
    assert OptimizeRequest().precision is None  # keep the model's precision
    assert OptimizeRequest(exclude_nodes=[]).exclude_nodes == ()  # empty: quantize everything, not "the head"


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        OptimizeRequest("fp16").precision = "int4"


@pytest.mark.parametrize("kwargs,message", [
    ({"activation_bits": 4}, "activation bits must be 8 or 16, got 4"),
    ({"target_db": float("nan")}, "number of dB"),
    ({"precision": 16}, "must be a name"),
])
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(PrecisionUnsupportedError, match=message):
        OptimizeRequest(**kwargs)
