"""Model resolution: whatever the user names (zoo name, variant name, .onnx path, card) -> card + file.

Every command that runs or rewrites a model resolves it here once, so "which file, which card, which
precision" has one answer, and a missing file or unknown precision fails the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from spotdet.errors import UsageError
from spotdet.models.card import ModelCard, card_path_for, find_variant, get_card, read_card_file
from spotdet.models.store import fetch
from spotdet.models.verify import verify

ModelSpec = str | Path | ModelCard


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: its card and the local file that holds it."""

    card: ModelCard
    path: Path

    @property
    def name(self) -> str:
        return self.card.name


def resolve_card(spec: ModelSpec, family: str | None = None, precision: str | None = None) -> tuple[ModelCard, Path | None]:
    """The card for ``spec`` at ``precision``, and the file the user named (None for zoo/variant names).

    Cheap (reads no weights), so callers can validate names before any work; ``resolve_model`` adds the file.
    """
    card, path = _card_and_path(spec, family)
    variant = card_at_precision(card, precision)
    return variant, (path if variant is card else None)


def resolve_model(spec: ModelSpec, family: str | None = None, precision: str | None = None,
                  allow_download: bool = True) -> ModelRef:
    """Card + local file for ``spec`` at ``precision``; downloads (verified) when the zoo file is nowhere local.

    The file is checked against the card's sha256 (``verify``: a remembered hash, so a stat when unchanged);
    a mismatch raises ChecksumError instead of loading a damaged or different model.
    """
    card, path = resolve_card(spec, family, precision)
    path = path or fetch(card, allow_download=allow_download)
    verify(card, path)
    return ModelRef(card, path)


def _card_and_path(spec: ModelSpec, family: str | None) -> tuple[ModelCard, Path | None]:
    if isinstance(spec, ModelCard):
        return spec, None
    text = str(spec)
    if text.endswith(".onnx") or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"{path}: no such model file")
        own_card = card_path_for(path)
        if own_card.is_file() and family is None:
            return replace(read_card_file(own_card), file=str(path)), path
        from spotdet.models.byo import card_from_onnx  # reads the file with onnx: imported only for a file

        return card_from_onnx(path, family=family), path
    return get_card(text), None


def card_at_precision(card: ModelCard, precision: str | None) -> ModelCard:
    """The card itself, or its locally made variant at ``precision``.

    A runtime precision (bf16) is a way of compiling the fp32 file, not a file of its own: the card stays.
    """
    from spotdet.backends import RUNTIME_PRECISIONS

    if precision is None or precision == card.precision:
        return card
    if precision in RUNTIME_PRECISIONS:
        if card.precision != "fp32":
            raise UsageError(f"precision {precision!r} compiles an fp32 model; {card.name} is {card.precision}")
        return card
    variant = find_variant(card, precision)
    if variant is None:
        raise UsageError(
            f"no {precision} variant of {card.name} found (it is {card.precision}); create one with "
            f"`spotdet optimize {card.name} --precision {precision}`"
        )
    return variant
