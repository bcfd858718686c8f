"""Accuracy evaluation (COCO mAP, per-class AP, precision-recall curves)."""

from spotdet.eval.coco import ClassAP, EvalReport, evaluate, evaluate_results_file

__all__ = ["ClassAP", "EvalReport", "evaluate", "evaluate_results_file"]
