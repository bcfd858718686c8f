"""What every precision builder shares: the ``Built`` result, the ``Builder`` registry entry, and the
checks that hold for every conversion."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from spotdet.models.card import ModelCard
from spotdet.optimize.errors import PrecisionUnsupportedError
from spotdet.optimize.mixed import MixedInfo
from spotdet.optimize.request import OptimizeRequest

#: every builder converts from this precision: converting a converted model would compound the error
SOURCE_PRECISION = "fp32"


@dataclass
class Built:
    """A converted graph and what the caller and the new card should say about it."""

    graph: onnx.ModelProto
    notes: list[str] = field(default_factory=list)  # for the user: speed caveats, calibration summary
    excluded: list[str] = field(default_factory=list)  # nodes kept in float
    mixed_info: MixedInfo | None = None  # int8-static's float-activation selection, when it ran
    card_notes: list[str] = field(default_factory=list)  # the build's own parts of the new card's notes


#: build(graph, card, request, progress) -> Built; ``graph`` is the source model as loaded (the builder
#: prepares its own copy), ``progress`` shows a bar for long steps (calibration)
BuildFn = Callable[[onnx.ModelProto, ModelCard, OptimizeRequest, bool], Built]
#: refuses, with the reason, a request the builder cannot serve; runs before any graph is loaded
CheckFn = Callable[[ModelCard, OptimizeRequest], None]


@dataclass(frozen=True)
class Builder:
    """One precision in the registry: its name, its build function and its preconditions."""

    name: str
    build: BuildFn
    activation_bits: tuple[int, ...] = (8,)  # the --activation-bits values it can build
    requires: CheckFn | None = None  # the builder's own preconditions (calibration images, ...)
    source: str = SOURCE_PRECISION  # the precision it converts from (fp32 for all but the dequantizer)

    def check(self, card: ModelCard, request: OptimizeRequest) -> None:
        """Refuse (PrecisionUnsupportedError, with the reason) what this builder cannot make from ``card``."""
        if card.precision != self.source:
            if self.source != SOURCE_PRECISION:
                raise PrecisionUnsupportedError(f"{self.name} is built from an {self.source} model here; "
                                                f"{card.name} is {card.precision}")
            raise PrecisionUnsupportedError(
                f"{card.name} is {card.precision} already; converting it to {self.name} would compound the error. "
                f"Start from the {SOURCE_PRECISION} model")
        if request.activation_bits not in self.activation_bits:
            raise PrecisionUnsupportedError(
                f"--activation-bits {request.activation_bits} does not apply to {self.name} (it builds "
                f"{'/'.join(map(str, self.activation_bits))}-bit activations only)")
        if self.requires is not None:
            self.requires(card, request)


def quantized_copy(quantize: Callable[[Path], None]) -> onnx.ModelProto:
    """Run an ONNX Runtime quantizer that writes its result to a file, and load that file."""
    with tempfile.TemporaryDirectory(prefix="spotdet-quant-") as tmp:
        out = Path(tmp) / "q.onnx"
        quantize(out)
        return onnx.load(str(out))
