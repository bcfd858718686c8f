"""The Detector: a resolved model (card + file) + an inference backend + the family's decoder, behind one call."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from spotdet import adaptive
from spotdet.backends import RUNTIME_PRECISIONS, Backend, dynamic_batch, fixed_size, load_backend
from spotdet.errors import ResourceExhaustedError, SpotdetError, UsageError
from spotdet.hardware.compat import warn_if_built_elsewhere
from spotdet.models.card import ModelCard
from spotdet.models.ref import ModelRef, ModelSpec, card_at_precision, resolve_model
from spotdet.options import AUTO, DetectOptions, Imgsz
from spotdet.postprocess.decoders import get_decoder
from spotdet.postprocess.nms import class_aware_nms
from spotdet.results import STAGES, Boxes, Result
from spotdet.vision import tiling
from spotdet.vision.image_io import ImageSource, load_image
from spotdet.vision.prefetch import prefetched
from spotdet.vision.preprocess import Transform, resize_to_input, to_tensor


PREFETCH = 2
STREAM_BATCH = 8  # images per backend run in stream() when the model takes batches (``takes_batches``)
log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """An image read, decoded and resized to the network input ``size`` (h, w), waiting for inference."""

    image: np.ndarray
    path: str | None
    canvas: np.ndarray | None  # None: decoded only, for detect_passes to cut its own inputs from ``image``
    transform: Transform | None
    size: tuple[int, int]
    timings: dict[str, float]
    keep_image: bool = True  # whether the Result holds the decoded image (to draw or save it)


def _readable(items: Iterable[tuple[ImageSource, Any]],
              on_error: Callable[[ImageSource, SpotdetError], None] | None) -> Iterator[Any]:
    """The items that were read; each failure goes to ``on_error`` (skipped), or is raised when there is none."""
    for src, item in items:
        if isinstance(item, SpotdetError):
            if on_error is None:
                raise item
            on_error(src, item)
            continue
        yield item


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Detector:
    """Object detector on ONNX Runtime.

    >>> det = Detector("yolox-nano")            # zoo name, or a path to your own .onnx
    >>> res = det(["a.jpg", bgr_array, pil_image], conf=0.3)
    >>> res[0].boxes.xyxy, res[0].boxes.conf, res[0].boxes.cls, res[0].names
    >>> res[0].save("out.jpg"); res[0].to_json()
    """

    def __init__(self, model: ModelSpec | ModelRef, precision: str | None = None, device: str = "auto",
                 threads: int | None = None, family: str | None = None, backend: str | Backend = "auto",
                 options: DetectOptions | None = None, allow_download: bool = True, max_pixels: int | None = None,
                 **overrides: Any) -> None:
        """``overrides`` are DetectOptions fields (conf, iou, max_det, classes, imgsz) used as this detector's
        defaults; every call may override them again. ``backend``: a runtime name, or a Backend object already
        built for ``model``'s file (the Ray ingress passes one that only knows the input shape: it prepares
        images with this class's own checks and resizing while the model runs in the replicas). ``max_pixels``: refuse encoded images (files, bytes) with
        more pixels, before decoding them (ImageTooLargeError); None = no limit."""
        runtime_precision = precision in RUNTIME_PRECISIONS  # bf16: a way to compile the fp32 file, not a file
        self.ref = model if isinstance(model, ModelRef) else resolve_model(model, family, precision, allow_download)
        self.card: ModelCard = self.ref.card
        self.model_path: Path = self.ref.path
        if runtime_precision and isinstance(model, ModelRef):  # resolve_model checked it for every other spec
            card_at_precision(self.card, precision)
        #: what the model runs at: the card's precision, or the runtime precision it was compiled with
        self.precision: str = precision if runtime_precision else self.card.precision
        self.backend: Backend = backend if not isinstance(backend, str) else load_backend(
            self.model_path, backend=backend, device=device, threads=threads, precision=precision,
            model_precision=self.card.precision, size=tuple(self.card.input_size))
        if "CPU" in str(getattr(self.backend, "provider", "")).upper():
            warn_if_built_elsewhere(self.card.name, self.card.precision, self.card.built_on)
        self.decoder = get_decoder(self.card.family)
        self.names = dict(enumerate(self.card.names))
        self.options = DetectOptions.create(options, **overrides)
        if max_pixels is not None and max_pixels < 1:
            raise UsageError(f"max_pixels must be >= 1, got {max_pixels}")
        self.max_pixels = max_pixels
        #: how tile=True slices and merges (vision.tiling.TilePolicy); replace it to tune tiling for this detector
        self.tile_policy = tiling.TilePolicy()
        #: how imgsz="auto" chooses the input per image (adaptive.AdaptivePolicy); replace it to tune it
        self.adaptive_policy = adaptive.AdaptivePolicy()
        self.check_options(self.options)  # unknown class names, impossible sizes fail here, not on the first image

    # -- properties -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.card.name

    @property
    def provider(self) -> str:
        """What executes the model in its runtime (ONNX Runtime's execution provider, OpenVINO's device)."""
        return self.backend.provider

    @property
    def dynamic_batch(self) -> bool:
        return dynamic_batch(self.backend)

    @property
    def takes_batches(self) -> bool:
        """Whether ``infer`` hands the backend several images in one run: a model with a dynamic batch, or a
        backend that splits a batch over parallel streams itself (OpenVINO, ``split_batches``). Only
        ``dynamic_batch`` makes the service's batcher wait for more requests: a split batch is not cheaper per
        image for the first one, only faster through a stream of them."""
        return self.dynamic_batch or bool(getattr(self.backend, "split_batches", False))

    def check_options(self, options: DetectOptions) -> DetectOptions:
        """Fail now, with the reason, on options this model cannot run: an unknown class, a size a fixed-shape
        model cannot take, imgsz="auto" on a fixed-shape model."""
        options.class_ids(self.names)
        if options.adaptive:
            if fixed_size(self.backend) is not None:
                raise UsageError(
                    f"{self.name} has a fixed input size, so imgsz='auto' cannot choose one; make a variable-size "
                    f"variant first: spotdet optimize {self.name} --dynamic-shape")
        else:
            self.input_size(options.imgsz)
        return options

    def input_size(self, imgsz: Imgsz | Sequence[int] | None = None) -> tuple[int, int]:
        """The (h, w) the network runs at; a fixed-shape model accepts only its own size."""
        fixed = fixed_size(self.backend)
        native = fixed or tuple(self.card.input_size)
        if imgsz is None:
            return native
        if imgsz == AUTO:
            raise UsageError("imgsz='auto' chooses the size per image: run it through Detector.detect_passes")
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
    def options_for(self, options: DetectOptions | None = None, **overrides: Any) -> DetectOptions:
        """This detector's options, replaced by ``options`` when given, then by any non-None override."""
        return DetectOptions.create(options or self.options, **overrides)

    def __call__(self, source: ImageSource | Iterable[ImageSource], options: DetectOptions | None = None, *,
                 keep_image: bool = True, exif_orientation: bool = True, **overrides: Any) -> list[Result]:
        """Detect objects in one source or a list of sources; returns one Result per image.

        ``overrides``: DetectOptions fields for this call (conf=0.5, classes=["person"], imgsz=640, ...).
        Raises ImageLoadError for the first source that cannot be read; use ``stream(on_error=...)``
        to skip bad images instead.
        """
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        return list(self.stream(sources, options, keep_image=keep_image, exif_orientation=exif_orientation,
                                prefetch=PREFETCH if len(sources) > 1 else 0, **overrides))

    predict = __call__

    def stream(self, sources: Iterable[ImageSource], options: DetectOptions | None = None, *,
               keep_image: bool = True, exif_orientation: bool = True,
               on_error: Callable[[ImageSource, SpotdetError], None] | None = None,
               prefetch: int = PREFETCH, **overrides: Any) -> Iterator[Result]:
        """Yield one Result per readable source, in order, decoding ahead of inference.

        A background thread reads, decodes and resizes up to ``prefetch`` images while the model runs
        (OpenCV releases the GIL), so on a stream of files decoding is hidden behind inference.
        Memory stays flat: at most ``prefetch`` + one batch of images are held at a time.
        With ``on_error`` set, unreadable sources are reported to it and skipped; otherwise the first
        one raises.
        """
        opts = self.check_options(self.options_for(options, **overrides))  # fail before reading any image
        if opts.multi_pass:
            yield from self._stream_passes(sources, opts, keep_image, exif_orientation, on_error, prefetch)
            return
        size = self.input_size(opts.imgsz)
        batch_size = STREAM_BATCH if self.takes_batches else 1
        prepare = functools.partial(self._prepare_at, size=size, exif_orientation=exif_orientation,
                                    keep_image=keep_image)
        batch: list[Prepared] = []
        for item in _readable(prefetched(prepare, sources, depth=prefetch), on_error):
            batch.append(item)
            if len(batch) == batch_size:
                yield from self.infer(batch, opts)
                batch = []
        if batch:
            yield from self.infer(batch, opts)

    def _stream_passes(self, sources: Iterable[ImageSource], opts: DetectOptions, keep_image: bool,
                       exif_orientation: bool, on_error: Callable[[ImageSource, SpotdetError], None] | None,
                       prefetch: int) -> Iterator[Result]:
        """``stream`` for options that may take several passes per image: decode ahead, then one image at a
        time through ``detect_passes`` (its passes already form one batch)."""
        decode = functools.partial(self.decode, exif_orientation=exif_orientation)
        for image, path, timings in _readable(prefetched(decode, sources, depth=prefetch), on_error):
            yield self.detect_passes(image, path, timings, opts, keep_image=keep_image)

    def decode(self, src: ImageSource, exif_orientation: bool = True) -> tuple[np.ndarray, str | None,
                                                                                 dict[str, float]]:
        """Read and decode one image (with this detector's pixel limit): (BGR image, path, {"decode_ms"})."""
        t = time.perf_counter()
        img, path = load_image(src, exif_orientation=exif_orientation, max_pixels=self.max_pixels)
        return img, path, {"decode_ms": _ms(t)}

    def decoded(self, src: ImageSource, exif_orientation: bool = True, keep_image: bool = True) -> Prepared:
        """A decoded image not yet resized: what ``detect_passes`` takes when the passes are run later (the
        service queues these for tiled and adaptive requests)."""
        img, path, timings = self.decode(src, exif_orientation)
        return Prepared(img, path, None, None, self.input_size(), {**timings, "preprocess_ms": 0.0}, keep_image)

    def detect_passes(self, image: np.ndarray, path: str | None, timings: dict[str, float], options: DetectOptions,
                      keep_image: bool = True) -> Result:
        """One decoded image through tiling (``options.tile``) or adaptive resolution (``imgsz="auto"``).

        ``timings`` holds what was spent before (``decode_ms``). The Result records every pass in
        ``input_sizes`` and its cost in ``input_pixels``.
        """
        if options.tile:
            return self._detect_tiled(image, path, timings, options, keep_image)
        if options.adaptive:
            return self._detect_adaptive(image, path, timings, options, keep_image)
        raise UsageError("detect_passes: the options ask for one pass; use infer()")

    def _detect_tiled(self, image: np.ndarray, path: str | None, timings: dict[str, float], options: DetectOptions,
                      keep_image: bool) -> Result:
        """Overlapping tiles at the network input plus the whole image, one ``infer`` batch, boxes merged.

        ``self.tile_policy`` says how (``vision.tiling.TilePolicy``); an image no larger than one tile takes
        only the whole-image pass. Each tile is a crop of the decoded image resized to the network input like
        any image (at scale 1 when the tile is the input size), so its Transform maps boxes to crop pixels and
        the tile origin shifts them to the image's.
        """
        policy = self.tile_policy
        net = self.input_size()
        tile_hw = policy.size or net
        h, w = image.shape[:2]
        windows = tiling.tile_windows(h, w, tile_hw, policy.overlap) if tiling.needs_tiles(h, w, tile_hw) else None
        prepared: list[Prepared] = []
        origins: list[tuple[int, int]] = []
        if windows is None or policy.whole_image:
            prepared.append(self._resize(image, path, net, timings, keep_image))
            origins.append((0, 0))
        for x0, y0, x1, y1 in (windows if windows is not None else []):
            prepared.append(self._resize(image[y0:y1, x0:x1], path, net, {"decode_ms": 0.0}, False))
            origins.append((int(x0), int(y0)))
        passes = self.infer(prepared, options)
        if len(passes) == 1:
            return passes[0]
        return self._merge_passes(passes, origins, image, path, timings, options, keep_image)

    def _merge_passes(self, passes: list[Result], origins: list[tuple[int, int]], image: np.ndarray,
                      path: str | None, timings: dict[str, float], options: DetectOptions,
                      keep_image: bool) -> Result:
        """One Result from the tile passes: boxes shifted to the image and merged, stage times summed."""
        t = time.perf_counter()
        boxes = np.concatenate([tiling.shift_boxes(r.boxes.xyxy, o) for r, o in zip(passes, origins)])
        scores = np.concatenate([r.boxes.conf for r in passes])
        cls = np.concatenate([r.boxes.cls for r in passes])
        policy = self.tile_policy
        merge = tiling.merge_method(policy.merge, options.conf)
        # every pass's boxes were clipped to its crop by its Transform, so shifted and merged they stay inside the image
        xyxy, conf, ids = tiling.merge_detections(boxes, scores, cls, merge, policy.match_threshold, options.max_det)
        return self._combined(Boxes(xyxy, conf, ids), passes, image, path, timings, keep_image, _ms(t))

    def _combined(self, boxes: Boxes, passes: list[Result], image: np.ndarray, path: str | None,
                  timings: dict[str, float], keep_image: bool, merge_ms: float = 0.0) -> Result:
        """The Result of several passes over one image: every pass's size kept, each stage's time summed."""
        tm = {"decode_ms": timings.get("decode_ms", 0.0)}
        for key in ("preprocess_ms", "infer_ms", "postprocess_ms"):
            tm[key] = sum(r.timings.get(key, 0.0) for r in passes)
        tm["postprocess_ms"] += merge_ms
        tm["total_ms"] = sum(tm[k] for k in STAGES)
        notes = list(dict.fromkeys(n for r in passes for n in r.notes))
        return Result(boxes=boxes, names=self.names, orig_shape=image.shape[:2],
                      orig_img=image if keep_image else None, path=path, model=self.name, timings=tm, notes=notes,
                      batch_size=max(r.batch_size for r in passes), input_size=passes[0].input_size,
                      input_sizes=[tuple(r.input_size) for r in passes])

    def _detect_adaptive(self, image: np.ndarray, path: str | None, timings: dict[str, float],
                         options: DetectOptions, keep_image: bool) -> Result:
        """The small input first; the large one only when ``adaptive.escalation_reason`` says it is likely
        to pay back (``self.adaptive_policy``: two or more sure objects that are small or medium at the small
        input). An escalated image returns the large pass's boxes (merging both passes' boxes was measured
        and gained nothing over the line: docs/resolution.md); its Result lists both sizes in
        ``input_sizes`` and both passes' time and pixels."""
        policy = self.adaptive_policy
        small, large = self.input_size(policy.small), self.input_size(policy.large)
        first = self.infer([self._resize(image, path, small, timings, keep_image)], options)[0]
        if adaptive.escalation_reason(first, policy) is None:
            return first
        second = self.infer([self._resize(image, path, large, {"decode_ms": 0.0}, keep_image)], options)[0]
        return self._combined(second.boxes, [first, second], image, path, timings, keep_image)

    def prepare(self, src: ImageSource, imgsz: Imgsz | Sequence[int] | None = None, exif_orientation: bool = True,
                keep_image: bool = True) -> Prepared:
        """Read, decode and resize one image for the network (the CPU work before inference)."""
        return self._prepare_at(src, self.input_size(imgsz), exif_orientation, keep_image)

    def _prepare_at(self, src: ImageSource, size: tuple[int, int], exif_orientation: bool,
                    keep_image: bool = True) -> Prepared:
        img, path, timings = self.decode(src, exif_orientation)
        return self._resize(img, path, size, timings, keep_image)

    def _resize(self, img: np.ndarray, path: str | None, size: tuple[int, int], timings: dict[str, float],
                keep_image: bool = True) -> Prepared:
        t = time.perf_counter()
        canvas, transform = resize_to_input(img, size, self.card.preprocess)
        return Prepared(img, path, canvas, transform, size, {**timings, "preprocess_ms": _ms(t)}, keep_image)

    def infer(self, batch: list[Prepared], options: DetectOptions | Sequence[DetectOptions] | None = None) -> list[Result]:
        """Run prepared images through the model and postprocess each with its own settings.

        ``options`` applies to every image, or gives one DetectOptions per image (the service batches
        requests with different thresholds); its ``imgsz`` was applied when the images were prepared.
        A model with a dynamic batch dimension gets one backend run per group of same-size images; a
        static batch-1 model runs them back to back. If the runtime cannot allocate memory for a group,
        the group is split in halves and retried; a single image that still does not fit is retried at a
        smaller input size when the model allows it. What was done is noted in ``Result.notes``.
        """
        if options is None or isinstance(options, DetectOptions):
            per_item = [options or self.options] * len(batch)
        else:
            per_item = list(options)
        if len(per_item) != len(batch):
            raise UsageError("infer: one DetectOptions per prepared image is required")
        results: list[Result | None] = [None] * len(batch)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(batch):
            groups.setdefault(p.size, []).append(i)
        for indices in groups.values():
            step = len(indices) if self.takes_batches else 1
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                for i, res in zip(chunk, self._run_group([batch[i] for i in chunk], [per_item[i] for i in chunk])):
                    results[i] = res
        return results  # type: ignore[return-value]

    def _run_group(self, group: list[Prepared], options: list[DetectOptions],
                   notes: tuple[str, ...] = ()) -> list[Result]:
        t = time.perf_counter()
        tensor = to_tensor([p.canvas for p in group], self.card.preprocess)
        tensor_ms = _ms(t) / len(group)
        t = time.perf_counter()
        try:
            outputs = self.backend.run(tensor)
        except Exception as exc:
            if not self.backend.is_out_of_memory(exc):
                raise
            return self._out_of_memory(group, options, notes)
        infer_ms = _ms(t) / len(group)
        results = []
        for i, (p, opts) in enumerate(zip(group, options)):
            t = time.perf_counter()
            boxes = self._postprocess([o[i] for o in outputs], p.size, p.transform, opts)
            tm = {"decode_ms": p.timings["decode_ms"], "preprocess_ms": p.timings["preprocess_ms"] + tensor_ms,
                  "infer_ms": infer_ms, "postprocess_ms": _ms(t)}
            tm["total_ms"] = sum(tm[k] for k in STAGES)
            results.append(Result(boxes=boxes, names=self.names, orig_shape=p.image.shape[:2],
                                  orig_img=p.image if p.keep_image else None, path=p.path, model=self.name,
                                  timings=tm, notes=list(notes), batch_size=len(group), input_size=p.size))
        return results

    def _out_of_memory(self, group: list[Prepared], options: list[DetectOptions],
                       notes: tuple[str, ...]) -> list[Result]:
        if len(group) > 1:
            half = len(group) // 2
            note = (*notes, f"out of memory at batch {len(group)}: split into {half}+{len(group) - half}")
            log.warning(note[-1])
            return (self._run_group(group[:half], options[:half], note)
                    + self._run_group(group[half:], options[half:], note))
        p = group[0]
        smaller = self._smaller_size(p.size)
        if smaller is None:
            raise ResourceExhaustedError(
                f"{self.name}: out of memory for one {p.size[1]}x{p.size[0]} image and the model's input size "
                "is fixed; free memory or use a smaller model")
        note = (*notes, f"out of memory at {p.size[1]}x{p.size[0]}: retried at {smaller[1]}x{smaller[0]}")
        log.warning(note[-1])
        return self._run_group([self._resize(p.image, p.path, smaller, {"decode_ms": p.timings["decode_ms"]},
                                             p.keep_image)], options, note)

    def _smaller_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        if fixed_size(self.backend) is not None:
            return None
        stride = int(self.card.decoder.get("stride", 32))
        smaller = tuple(max(stride, int(v * 0.75) // stride * stride) for v in size)
        return None if smaller == size else smaller  # type: ignore[return-value]

    def _postprocess(self, outputs: list[np.ndarray], size: tuple[int, int], transform: Transform,
                     opts: DetectOptions) -> Boxes:
        boxes, scores, cls = self.decoder(outputs, size, opts.conf, self.card.decoder)
        # Computed per call (microseconds): a cache on the method (functools.lru_cache) would be the class's and
        # keep every Detector, and its runtime session, alive for as long as the process runs.
        classes = opts.class_ids(self.names)
        if classes is not None:
            mask = np.isin(cls, np.asarray(classes))
            boxes, scores, cls = boxes[mask], scores[mask], cls[mask]
        keep = class_aware_nms(boxes, scores, cls, opts.iou, opts.max_det)
        if len(keep) == 0:
            return Boxes.empty()
        return Boxes(transform.to_original(boxes[keep]), scores[keep], cls[keep].astype(np.int64))

    def __repr__(self) -> str:
        return (f"Detector({self.name!r}, family={self.card.family!r}, precision={self.precision!r}, "
                f"backend={self.backend.name!r}, provider={self.provider!r})")

