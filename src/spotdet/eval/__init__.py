"""Accuracy evaluation (COCO mAP)."""

from spotdet.eval.coco import EvalReport, evaluate

__all__ = ["EvalReport", "evaluate"]
