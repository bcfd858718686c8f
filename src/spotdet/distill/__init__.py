"""Distillation: a larger teacher labels unlabelled images, a cheap student is fine-tuned on them and exported.

>>> from spotdet.distill import distill
>>> distill("yolo11n-int8", "yolox-nano", "images/", out="distilled/").model_path

Pseudo-labelling needs only spotdet; training needs the ``distill`` extra (PyTorch, onnx2torch), imported
when training starts.
"""

from spotdet.distill.api import DistillResult, DistillReporter, distill

__all__ = ["DistillResult", "DistillReporter", "distill"]
