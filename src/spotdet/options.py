"""DetectOptions: every per-call detection setting, its default and its validation, in one place.

The Detector, the HTTP service, batch jobs, bench and the CLI all take a ``DetectOptions`` (or build one from
their flags with ``DetectOptions.create``), so a default changes in one line and a bad value fails with the
same message everywhere. Classes may be named by id or by name (``classes=["person", 2]``); the names are
turned into the model's ids by ``class_ids``, which knows the model's label list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterable, Mapping, Sequence

from spotdet.errors import UsageError

DEFAULT_CONF = 0.25
DEFAULT_IOU = 0.6
DEFAULT_MAX_DET = 300
MIN_IMGSZ = 32
#: pixel limit (width x height) of the service, `spotdet detect` and batch jobs; lives here, not in
#: vision.image_io, so the CLI can show it without importing OpenCV and numpy
DEFAULT_MAX_PIXELS = 40_000_000
AUTO = "auto"  # imgsz="auto": adaptive resolution (spotdet.adaptive chooses the input per image)

ClassSpec = int | str
Imgsz = int | tuple[int, int]


@dataclass(frozen=True)
class DetectOptions:
    """What to keep from one image's detections, and at which input size to run.

    ``conf``: minimum score, in [0, 1). ``iou``: class-aware NMS overlap threshold, in (0, 1].
    ``max_det``: most boxes kept. ``classes``: keep only these (ids or names; None = all).
    ``imgsz``: network input, an int (square) or (h, w); None = the model's own size; ``"auto"`` = chosen per
    image by the adaptive-resolution policy (``spotdet.adaptive``; needs a model with variable input size).
    ``tile``: slice each image into overlapping tiles at the network input size plus one whole-image pass, run
    them as one batch and merge the boxes (``spotdet.vision.tiling``), for small objects in large images.
    """

    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    max_det: int = DEFAULT_MAX_DET
    classes: tuple[ClassSpec, ...] | None = None
    imgsz: Imgsz | str | None = None
    tile: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf < 1.0:
            raise UsageError(f"conf must be in [0, 1), got {self.conf}")
        if not 0.0 < self.iou <= 1.0:
            raise UsageError(f"iou must be in (0, 1], got {self.iou}")
        if isinstance(self.max_det, bool) or int(self.max_det) != self.max_det or self.max_det < 1:
            raise UsageError(f"max_det must be an integer >= 1, got {self.max_det}")
        object.__setattr__(self, "conf", float(self.conf))
        object.__setattr__(self, "iou", float(self.iou))
        object.__setattr__(self, "max_det", int(self.max_det))
        object.__setattr__(self, "classes", _normalise_classes(self.classes))
        object.__setattr__(self, "imgsz", _normalise_imgsz(self.imgsz))
        object.__setattr__(self, "tile", _flag(self.tile, "tile"))
        if self.tile and self.adaptive:
            raise UsageError("tile and imgsz='auto' cannot be combined: tiling runs at the network input size")

    @property
    def adaptive(self) -> bool:
        """imgsz="auto": the input size is chosen per image."""
        return self.imgsz == AUTO

    @property
    def multi_pass(self) -> bool:
        """Whether an image may take more than one network pass (tiling, adaptive resolution)."""
        return self.tile or self.adaptive

    @classmethod
    def create(cls, base: "DetectOptions | None" = None, **overrides: Any) -> "DetectOptions":
        """``base`` (or the defaults) with every override that is not None applied, validated once."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise UsageError(f"unknown detection option(s): {', '.join(sorted(unknown))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **given) if base is not None else cls(**given)

    def class_ids(self, names: Mapping[int, str]) -> tuple[int, ...] | None:
        """``classes`` as the model's class ids; an unknown name or id is a UsageError listing what exists."""
        if self.classes is None:
            return None
        by_name = {v: k for k, v in names.items()}
        ids = []
        for item in self.classes:
            if isinstance(item, int) and item in names:
                ids.append(item)
            elif isinstance(item, str) and item in by_name:
                ids.append(by_name[item])
            else:
                raise UsageError(f"unknown class {item!r} (use ids 0-{len(names) - 1} or names such as "
                                 f"{', '.join(repr(n) for n in list(names.values())[:3])})")
        return tuple(ids)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes) if self.classes is not None else None
        data["imgsz"] = list(self.imgsz) if isinstance(self.imgsz, tuple) else self.imgsz
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DetectOptions":
        """The inverse of ``to_dict`` (how batch jobs store their options)."""
        return cls.create(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})


def parse_classes(text: str | Sequence[ClassSpec] | None) -> tuple[ClassSpec, ...] | None:
    """``"person, 2,car"`` (a CLI flag or a query string) -> ("person", 2, "car"); lists pass through."""
    return _normalise_classes(text)


def _normalise_classes(value: str | Iterable[ClassSpec] | None) -> tuple[ClassSpec, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[ClassSpec] = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
            out.append(int(item) if item.isdigit() else item)
        elif isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            out.append(int(item))
        elif hasattr(item, "__index__") and not isinstance(item, bool) and int(item) >= 0:  # numpy ints
            out.append(int(item))
        else:
            raise UsageError(f"classes must be class ids (>= 0) or names, got {item!r}")
    if not out:
        raise UsageError("classes is empty: name at least one class, or leave it out to keep all")
    return tuple(out)


def _normalise_imgsz(value: Any) -> Imgsz | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip().lower()
        if value == AUTO:
            return AUTO
        if "x" in value:  # "640x480" = width x height, as sizes are written everywhere else
            w, _, h = value.partition("x")
            if not (w.strip().isdigit() and h.strip().isdigit()):
                raise UsageError(f"imgsz must be N, WxH or 'auto', got {value!r}")
            return _normalise_imgsz((int(h), int(w)))
        if not value.isdigit():
            raise UsageError(f"imgsz must be a positive integer, WxH or 'auto', got {value!r}")
        value = int(value)
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise UsageError(f"imgsz must be an int or (h, w), got {value!r}")
        h, w = (_size(v) for v in value)
        return h if h == w else (h, w)
    return _size(value)


def _flag(value: Any, name: str) -> bool:
    """A bool, or the strings a query string or a CLI gives for one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise UsageError(f"{name} must be true or false, got {value!r}")


def _size(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < MIN_IMGSZ:
        raise UsageError(f"imgsz must be an integer >= {MIN_IMGSZ}, got {v!r}")
    return int(v)
