"""The Detector: a model card + an ONNX Runtime session + the family's decoder, behind one call."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from spotdet.engine.session import EngineSession, create_session, is_out_of_memory
from spotdet.errors import ResourceExhaustedError, SpotdetError, UsageError
from spotdet.models.byo import card_from_onnx
from spotdet.models.card import ModelCard, card_path_for, find_variant, get_card, read_card_file
from spotdet.models.store import resolve
from spotdet.postprocess.decoders import get_decoder
from spotdet.postprocess.nms import class_aware_nms
from spotdet.results import Boxes, Result
from spotdet.vision.image_io import ImageSource, load_image
from spotdet.vision.prefetch import prefetched
from spotdet.vision.preprocess import Transform, resize_to_input, to_tensor


PREFETCH = 2
STREAM_BATCH = 8  # images per session.run in stream() when the model has a dynamic batch dimension
log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """An image read, decoded and resized to the network input ``size`` (h, w), waiting for inference."""

    image: np.ndarray
    path: str | None
    canvas: np.ndarray
    transform: Transform
    size: tuple[int, int]
    timings: dict[str, float]


@dataclass(frozen=True)
class Settings:
    """Per-image postprocessing settings (validated by ``Detector.settings``)."""

    conf: float
    iou: float
    max_det: int
    classes: tuple[int, ...] | None = None
    keep_image: bool = True


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def load_card(model: str | Path | ModelCard, family: str | None = None) -> tuple[ModelCard, Path | None]:
    """A zoo name, a path to an ONNX file, or a card -> (card, explicit file path or None)."""
    if isinstance(model, ModelCard):
        return model, None
    text = str(model)
    if text.endswith(".onnx") or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"{path}: no such model file")
        own_card = card_path_for(path)
        if own_card.is_file() and family is None:
            return replace(read_card_file(own_card), file=str(path)), path
        return card_from_onnx(path, family=family), path
    return get_card(text), None


def select_precision(card: ModelCard, precision: str | None) -> ModelCard:
    """The card itself, or its locally made variant at ``precision``."""
    if precision is None or precision == card.precision:
        return card
    variant = find_variant(card, precision)
    if variant is None:
        raise UsageError(
            f"no {precision} variant of {card.name} found (it is {card.precision}); create one with "
            f"`spotdet optimize {card.name} --precision {precision}`"
        )
    return variant


class Detector:
    """Object detector on ONNX Runtime.

    >>> det = Detector("yolox-nano")            # zoo name, or a path to your own .onnx
    >>> res = det(["a.jpg", bgr_array, pil_image], conf=0.3)
    >>> res[0].boxes.xyxy, res[0].boxes.conf, res[0].boxes.cls, res[0].names
    >>> res[0].save("out.jpg"); res[0].to_json()
    """

    def __init__(self, model: str | Path | ModelCard, precision: str | None = None, device: str = "auto",
                 threads: int | None = None, family: str | None = None, conf: float = 0.25, iou: float = 0.6,
                 max_det: int = 300, allow_download: bool = True) -> None:
        card, path = load_card(model, family)
        self.card = select_precision(card, precision)
        if self.card is not card:
            path = None
        self.model_path = path or resolve(self.card, allow_download=allow_download)
        self.engine: EngineSession = create_session(self.model_path, device=device, threads=threads)
        self.decoder = get_decoder(self.card.family)
        self.names = dict(enumerate(self.card.names))
        self.conf, self.iou, self.max_det = _check_thresholds(conf, iou, max_det)

    # -- properties -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.card.name

    @property
    def provider(self) -> str:
        return self.engine.provider

    def input_size(self, imgsz: int | Sequence[int] | None = None) -> tuple[int, int]:
        """The (h, w) the network runs at; a fixed-shape model accepts only its own size."""
        shape = self.engine.input_shape
        fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
        native = (shape[2], shape[3]) if fixed else tuple(self.card.input_size)
        if imgsz is None:
            return native
        want = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
        if fixed and want != native:
            raise UsageError(
                f"{self.name} has a fixed input of {native[1]}x{native[0]}; imgsz={want[1]}x{want[0]} is not "
                f"possible (use imgsz={native[1]} or a model exported with dynamic shapes)"
            )
        stride = int(self.card.decoder.get("stride", 32))
        if min(want) < stride:
            raise UsageError(f"imgsz must be at least {stride}, got {want}")
        return tuple(-(-v // stride) * stride for v in want)  # round up to a multiple of the stride

    # -- inference --------------------------------------------------------------------------------
    def __call__(self, source: ImageSource | Iterable[ImageSource], imgsz: int | Sequence[int] | None = None,
                 conf: float | None = None, iou: float | None = None, max_det: int | None = None,
                 classes: Sequence[int] | None = None, keep_image: bool = True,
                 exif_orientation: bool = True) -> list[Result]:
        """Detect objects in one source or a list of sources; returns one Result per image.

        Raises ImageLoadError for the first source that cannot be read; use ``stream(on_error=...)``
        to skip bad images instead.
        """
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        return list(self.stream(sources, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, classes=classes,
                                keep_image=keep_image, exif_orientation=exif_orientation,
                                prefetch=PREFETCH if len(sources) > 1 else 0))

    predict = __call__

    def settings(self, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
                 classes: Sequence[int] | None = None, keep_image: bool = True) -> "Settings":
        """Validated per-call settings, defaulting to the detector's own."""
        conf, iou, max_det = _check_thresholds(
            self.conf if conf is None else conf, self.iou if iou is None else iou,
            self.max_det if max_det is None else max_det)
        return Settings(conf, iou, max_det, None if classes is None else tuple(int(c) for c in classes), keep_image)

    def stream(self, sources: Iterable[ImageSource], imgsz: int | Sequence[int] | None = None,
               conf: float | None = None, iou: float | None = None, max_det: int | None = None,
               classes: Sequence[int] | None = None, keep_image: bool = True, exif_orientation: bool = True,
               on_error: Callable[[ImageSource, SpotdetError], None] | None = None,
               prefetch: int = PREFETCH) -> Iterator[Result]:
        """Yield one Result per readable source, in order, decoding ahead of inference.

        A background thread reads, decodes and resizes up to ``prefetch`` images while the model runs
        (OpenCV releases the GIL), so on a stream of files decoding is hidden behind inference.
        Memory stays flat: at most ``prefetch`` + one batch of images are held at a time.
        With ``on_error`` set, unreadable sources are reported to it and skipped; otherwise the first
        one raises.
        """
        settings = self.settings(conf, iou, max_det, classes, keep_image)
        size = self.input_size(imgsz)
        batch_size = STREAM_BATCH if self.engine.dynamic_batch else 1
        prepare = functools.partial(self._prepare_at, size=size, exif_orientation=exif_orientation)
        batch: list[Prepared] = []
        for src, item in prefetched(prepare, sources, depth=prefetch):
            if isinstance(item, SpotdetError):
                if on_error is None:
                    raise item
                on_error(src, item)
                continue
            batch.append(item)
            if len(batch) == batch_size:
                yield from self.infer(batch, settings)
                batch = []
        if batch:
            yield from self.infer(batch, settings)

    def prepare(self, src: ImageSource, imgsz: int | Sequence[int] | None = None,
                exif_orientation: bool = True) -> "Prepared":
        """Read, decode and resize one image for the network (the CPU work before inference)."""
        return self._prepare_at(src, self.input_size(imgsz), exif_orientation)

    def _prepare_at(self, src: ImageSource, size: tuple[int, int], exif_orientation: bool) -> "Prepared":
        t = time.perf_counter()
        img, path = load_image(src, exif_orientation=exif_orientation)
        decode_ms = _ms(t)
        return self._resize(img, path, size, {"decode": decode_ms})

    def _resize(self, img: np.ndarray, path: str | None, size: tuple[int, int],
                timings: dict[str, float]) -> "Prepared":
        t = time.perf_counter()
        canvas, transform = resize_to_input(img, size, self.card.preprocess)
        return Prepared(img, path, canvas, transform, size, {**timings, "preprocess": _ms(t)})

    def infer(self, batch: list["Prepared"], settings: "Settings | Sequence[Settings]") -> list[Result]:
        """Run prepared images through the model and postprocess each with its own settings.

        A model with a dynamic batch dimension gets one session.run per group of same-size images; a
        static batch-1 model runs them back to back. If the runtime cannot allocate memory for a group,
        the group is split in halves and retried; a single image that still does not fit is retried at a
        smaller input size when the model allows it. What was done is noted in ``Result.notes``.
        """
        per_item = [settings] * len(batch) if isinstance(settings, Settings) else list(settings)
        if len(per_item) != len(batch):
            raise UsageError("infer: one Settings per prepared image is required")
        results: list[Result | None] = [None] * len(batch)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(batch):
            groups.setdefault(p.size, []).append(i)
        for indices in groups.values():
            step = len(indices) if self.engine.dynamic_batch else 1
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                for i, res in zip(chunk, self._run_group([batch[i] for i in chunk], [per_item[i] for i in chunk])):
                    results[i] = res
        return results  # type: ignore[return-value]

    def _run_group(self, group: list["Prepared"], settings: list["Settings"], notes: tuple[str, ...] = ()) -> list[Result]:
        t = time.perf_counter()
        tensor = to_tensor([p.canvas for p in group], self.card.preprocess)
        tensor_ms = _ms(t) / len(group)
        t = time.perf_counter()
        try:
            outputs = self.engine.run(tensor)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return self._out_of_memory(group, settings, notes)
        infer_ms = _ms(t) / len(group)
        results = []
        for i, (p, st) in enumerate(zip(group, settings)):
            t = time.perf_counter()
            boxes = self._postprocess([o[i] for o in outputs], p.size, p.transform, st.conf, st.iou, st.max_det,
                                      st.classes)
            tm = dict(p.timings)
            tm["preprocess"] += tensor_ms
            tm["infer"] = infer_ms
            tm["postprocess"] = _ms(t)
            tm["total"] = sum(tm.values())
            results.append(Result(boxes=boxes, names=self.names, orig_shape=p.image.shape[:2],
                                  orig_img=p.image if st.keep_image else None, path=p.path, model=self.name,
                                  timings=tm, notes=list(notes), batch_size=len(group)))
        return results

    def _out_of_memory(self, group: list["Prepared"], settings: list["Settings"],
                       notes: tuple[str, ...]) -> list[Result]:
        if len(group) > 1:
            half = len(group) // 2
            note = (*notes, f"out of memory at batch {len(group)}: split into {half}+{len(group) - half}")
            log.warning(note[-1])
            return (self._run_group(group[:half], settings[:half], note)
                    + self._run_group(group[half:], settings[half:], note))
        p = group[0]
        smaller = self._smaller_size(p.size)
        if smaller is None:
            raise ResourceExhaustedError(
                f"{self.name}: out of memory for one {p.size[1]}x{p.size[0]} image and the model's input size "
                "is fixed; free memory or use a smaller model")
        note = (*notes, f"out of memory at {p.size[1]}x{p.size[0]}: retried at {smaller[1]}x{smaller[0]}")
        log.warning(note[-1])
        return self._run_group([self._resize(p.image, p.path, smaller, {"decode": p.timings["decode"]})],
                               settings, note)

    def _smaller_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        shape = self.engine.input_shape
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            return None
        stride = int(self.card.decoder.get("stride", 32))
        smaller = tuple(max(stride, int(v * 0.75) // stride * stride) for v in size)
        return None if smaller == size else smaller  # type: ignore[return-value]

    def _postprocess(self, outputs: list[np.ndarray], size: tuple[int, int], transform: Transform, conf: float,
                     iou: float, max_det: int, classes: Sequence[int] | None) -> Boxes:
        boxes, scores, cls = self.decoder(outputs, size, conf, self.card.decoder)
        if classes is not None:
            mask = np.isin(cls, np.asarray(list(classes)))
            boxes, scores, cls = boxes[mask], scores[mask], cls[mask]
        keep = class_aware_nms(boxes, scores, cls, iou, max_det)
        if len(keep) == 0:
            return Boxes.empty()
        return Boxes(transform.to_original(boxes[keep]), scores[keep], cls[keep].astype(np.int64))

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, family={self.card.family!r}, provider={self.provider!r})"


def _check_thresholds(conf: float, iou: float, max_det: int) -> tuple[float, float, int]:
    if not 0.0 <= conf < 1.0:
        raise UsageError(f"conf must be in [0, 1), got {conf}")
    if not 0.0 < iou <= 1.0:
        raise UsageError(f"iou must be in (0, 1], got {iou}")
    if max_det < 1:
        raise UsageError(f"max_det must be >= 1, got {max_det}")
    return float(conf), float(iou), int(max_det)
