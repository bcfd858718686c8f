"""Model cards, the zoo and where model files are found."""

from spotdet.models.byo import card_from_onnx
from spotdet.models.card import ModelCard, PreprocessSpec, get_card, zoo
from spotdet.models.store import resolve

__all__ = ["ModelCard", "PreprocessSpec", "card_from_onnx", "get_card", "resolve", "zoo"]
