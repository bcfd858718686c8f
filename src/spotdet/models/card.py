"""Model cards: the data that describes a detector (file, layout family, preprocessing, published figures)."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from spotdet.errors import ModelNotFoundError, UsageError
from spotdet.models.labels import label_set
from spotdet.models.locations import search_dirs

TIERS = ("nano", "small", "medium", "large")
RESIZE_MODES = ("letterbox", "stretch")


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the network's input tensor: ``(resize(pixel) - mean) / std`` in ``channels`` order."""

    resize: str = "letterbox"
    align: str = "center"
    pad_value: int = 114
    channels: str = "bgr"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise UsageError(f"preprocess.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.align not in ("center", "topleft"):
            raise UsageError(f"preprocess.align must be 'center' or 'topleft', got {self.align!r}")
        if self.channels not in ("bgr", "rgb"):
            raise UsageError(f"preprocess.channels must be 'bgr' or 'rgb', got {self.channels!r}")


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str
    file: str
    input_size: tuple[int, int]  # (height, width)
    names: tuple[str, ...]
    preprocess: PreprocessSpec
    decoder: dict[str, Any] = field(default_factory=dict)
    tier: str = "unknown"
    precision: str = "fp32"
    params_m: float | None = None
    gflops: float | None = None
    published_map: float | None = None
    published_map50: float | None = None
    reference_dev_map: float | None = None
    license: str = "unknown"
    parent: str | None = None  # the card this one was derived from (e.g. by ``spotdet optimize``)
    sha256: str | None = None
    url: str | None = None
    notes: str = ""
    #: the machine a locally made variant was built and checked on (spotdet.hardware.compat.built_on_record)
    built_on: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)


def card_from_dict(name: str, data: dict[str, Any]) -> ModelCard:
    """Build a card from one TOML table (or an equivalent dict), filling label lists and tuples."""
    data = dict(data)
    labels = data.pop("labels", None)
    names = tuple(data.pop("names", ()) or (label_set(labels) if labels else ()))
    pre = data.pop("preprocess", {})
    pre = PreprocessSpec(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()}
    )
    tier = data.get("tier", "unknown")
    if tier not in TIERS + ("unknown",):
        raise UsageError(f"card {name}: tier must be one of {TIERS}, got {tier!r}")
    return ModelCard(
        name=name,
        names=names,
        preprocess=pre,
        input_size=tuple(data.pop("input_size")),
        decoder=dict(data.pop("decoder", {})),
        **data,
    )


@lru_cache(maxsize=1)
def zoo() -> dict[str, ModelCard]:
    """All cards shipped with the package, by name, in file order."""
    text = resources.files("spotdet.models").joinpath("zoo.toml").read_text(encoding="utf-8")
    tables = tomllib.loads(text)["models"]
    return {name: card_from_dict(name, table) for name, table in tables.items()}


CARD_SUFFIX = ".card.toml"


def card_path_for(model_file: str | Path) -> Path:
    """Where the card of a locally made model file lives: ``model.onnx`` -> ``model.card.toml``."""
    path = Path(model_file)
    return path.with_name(path.stem + CARD_SUFFIX)


def read_card_file(path: str | Path) -> ModelCard:
    """Load a one-model card file; its ``file`` is resolved relative to the card's folder."""
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))["models"]
        (name, table), = tables.items()
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        raise UsageError(f"{path}: not a spotdet card file ({exc})") from None
    card = card_from_dict(name, table)
    return replace(card, file=str(path.parent / card.file))


def write_card_file(card: ModelCard, path: str | Path) -> Path:
    """Write ``card`` as a one-model TOML card file next to its model (``file`` stored relative)."""
    import tomli_w

    from spotdet.atomic import atomic_write_text

    path = Path(path)
    data = {k: v for k, v in asdict(card).items() if v is not None and k != "name"}
    data["file"] = Path(card.file).name
    data["input_size"] = list(card.input_size)
    data["preprocess"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["preprocess"].items()}
    names = data.pop("names")
    if tuple(names) == label_set("coco80"):
        data["labels"] = "coco80"
    else:
        data["names"] = list(names)
    return atomic_write_text(path, tomli_w.dumps({"models": {card.name: data}}))


def user_cards() -> dict[str, ModelCard]:
    """Cards of locally made models (``*.card.toml``) in SPOTDET_MODEL_DIR folders and the cache."""
    cards: dict[str, ModelCard] = {}
    for folder in search_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*" + CARD_SUFFIX)):
                try:
                    card = read_card_file(path)
                except UsageError:
                    continue
                cards.setdefault(card.name, card)
    return cards


def find_variant(card: ModelCard, precision: str) -> ModelCard | None:
    """A locally made card derived from ``card`` at ``precision`` (e.g. by ``spotdet optimize``).

    The plainly named variant (``<name>-<precision>``) wins over others at that precision, such as
    a dynamic-batch one (``<name>-<precision>-dynbatch``), which is asked for by its own name.
    """
    matches = [c for c in user_cards().values() if c.parent == card.name and c.precision == precision]
    matches.sort(key=lambda c: (c.name != f"{card.name}-{precision}", c.name))
    return matches[0] if matches else None


def get_card(name: str) -> ModelCard:
    cards = zoo()
    if name in cards:
        return cards[name]
    cards = {**cards, **user_cards()}
    if name in cards:
        return cards[name]
    close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"unknown model {name!r}.{hint} Known models: {', '.join(cards)} "
        "(or pass a path to an .onnx file)."
    )
