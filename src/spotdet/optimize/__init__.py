"""Model optimization: fp16, int8 (dynamic, calibrated static), int4 refusal, dynamic batch, and --auto."""

from spotdet.optimize.api import PRECISIONS, OptimizeRequest, OptimizeResult, optimize

__all__ = ["PRECISIONS", "OptimizeRequest", "OptimizeResult", "optimize"]
