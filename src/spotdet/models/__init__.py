"""Model cards, the zoo, where model files are found, and model resolution."""

from spotdet.models.byo import card_from_onnx
from spotdet.models.card import ModelCard, PreprocessSpec, get_card, zoo
from spotdet.models.ref import ModelRef, resolve_card, resolve_model
from spotdet.models.store import fetch

__all__ = ["ModelCard", "ModelRef", "PreprocessSpec", "card_from_onnx", "fetch", "get_card", "resolve_card",
           "resolve_model", "zoo"]
