"""The precision registry: one builder per name, unknown names refused with the choices, and each builder's
preconditions refusing a request with the reason before any graph is loaded."""

from __future__ import annotations

import pytest

from support.paths import COCO128
from spotdet.models.card import get_card
from spotdet.optimize import optimize
from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.precisions import PRECISIONS, Builder, builder_for
from spotdet.optimize.request import OptimizeRequest


def test_every_registered_precision_has_a_builder():
    assert list(PRECISIONS) == ["fp16", "int8-dynamic", "int8-static", "int4", "fp32"]  # fp32: the dequantizer
    for name, builder in PRECISIONS.items():
        assert isinstance(builder, Builder) and builder.name == name and callable(builder.build)
        assert builder_for(name) is builder
        assert 8 in builder.activation_bits


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(PrecisionUnsupportedError, match="precision must be one of") as exc:
        builder_for("int3")
    assert "'int3'" in str(exc.value) and all(name in str(exc.value) for name in PRECISIONS)
    with pytest.raises(PrecisionUnsupportedError, match="precision must be one of fp16, int8-dynamic"):
        optimize("yolox-nano", "int3")


def test_preconditions_refuse_with_the_reason():
    fp32, int8 = get_card("yolox-nano"), get_card("yolov8n-int8")
    with pytest.raises(PrecisionUnsupportedError, match="int8-static needs calibration images: --calib DIR"):
        builder_for("int8-static").check(fp32, OptimizeRequest("int8-static"))
    with pytest.raises(PrecisionUnsupportedError, match="calibration method must be one of minmax"):
        builder_for("int8-static").check(fp32, OptimizeRequest("int8-static", calib=COCO128, calib_method="mse"))
    for name in ("fp16", "int8-dynamic", "int4"):
        with pytest.raises(PrecisionUnsupportedError, match=f"--activation-bits 16 does not apply to {name}"):
            builder_for(name).check(fp32, OptimizeRequest(name, activation_bits=16))
    for name in [p for p in PRECISIONS if PRECISIONS[p].source == "fp32"]:
        with pytest.raises(PrecisionUnsupportedError,
                           match=f"yolov8n-int8 is int8-dynamic already; converting it to {name} would compound"):
            builder_for(name).check(int8, OptimizeRequest(name, calib=COCO128))
    # what each builder can serve passes
    builder_for("int8-static").check(fp32, OptimizeRequest("int8-static", calib=COCO128, activation_bits=16))
    builder_for("fp16").check(fp32, OptimizeRequest("fp16", calib=COCO128))  # calibration settings are ignored


def test_unsupported_requests_are_refused():
    """The same refusals through optimize(), as the CLI meets them."""
    with pytest.raises(PrecisionUnsupportedError, match="int8-dynamic already"):
        optimize("yolov8n-int8", "fp16")
    with pytest.raises(PrecisionUnsupportedError, match="needs calibration images"):
        optimize("yolox-nano", "int8-static")
    with pytest.raises(PrecisionUnsupportedError, match="--activation-bits 16 does not apply to fp16"):
        optimize("yolox-nano", "fp16", activation_bits=16)
    with pytest.raises(PrecisionUnsupportedError, match="already is fp32; ask for another --precision"):
        optimize("yolox-nano")
