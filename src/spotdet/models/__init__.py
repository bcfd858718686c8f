"""Model cards, the zoo, where model files are found, and model resolution.

``card_from_onnx`` is loaded on first use (PEP 562): it needs onnx, which the zoo's cards do not.
"""

from typing import TYPE_CHECKING

from spotdet.models.card import ModelCard, PreprocessSpec, get_card, zoo
from spotdet.models.ref import ModelRef, resolve_card, resolve_model
from spotdet.models.store import fetch

if TYPE_CHECKING:
    from spotdet.models.byo import card_from_onnx


def __getattr__(name: str):
    if name == "card_from_onnx":
        from spotdet.models.byo import card_from_onnx

        return card_from_onnx
    raise AttributeError(f"module 'spotdet.models' has no attribute {name!r}")

__all__ = ["ModelCard", "ModelRef", "PreprocessSpec", "card_from_onnx", "fetch", "get_card", "resolve_card",
           "resolve_model", "zoo"]
