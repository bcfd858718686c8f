"""COCO: the one annotation reader, category ids for the model's classes, and mAP evaluation (pycocotools).

pycocotools does the matching; everything reported is read from its results: the 12 summary figures
(``STAT_KEYS``), AP per category and the precision-recall curves, both from ``COCOeval.eval["precision"]``,
the array its summary averages, so per-class APs average to the mAP.

Everything that speaks COCO (``spotdet eval``, batch jobs writing ``--format coco``, bench's mAP column)
reads annotation files and maps classes to category ids here.

An annotation file is checked when it is read, before any model runs: pycocotools assumes every ground-truth
entry has ``iscrowd`` and ``area`` and a well-formed box, and fails with a traceback after the whole model run
otherwise. Optional fields are filled as COCO tools do (``iscrowd`` 0, ``area`` = box width x height, a
fresh ``id``); what cannot be scored (a box that is not four finite numbers with a non-negative width and
height, an unknown image or category id) is refused with a UsageError listing the first problems.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from spotdet.errors import SpotdetError, UsageError
from spotdet.options import Imgsz

EVAL_CONF = 0.001
EVAL_MAX_DET = 100

# The 80 COCO classes' category ids in the official annotations (ids 1-90 with gaps), in class order.
COCO80_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                       27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
                       52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
                       78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


#: COCOeval's 12 summary figures, in ``COCOeval.stats`` order, as named in reports. AP is averaged over IoU
#: 0.5:0.95 unless named 50 or 75, at most 100 detections per image; AR is the recall kept with at most 1, 10
#: or 100 detections per image; small / medium / large are boxes under 32x32, up to 96x96, above 96x96 pixels.
STAT_KEYS = ("ap50_95", "ap50", "ap75", "ap50_95_small", "ap50_95_medium", "ap50_95_large",
             "ar_max1", "ar_max10", "ar_max100", "ar_max100_small", "ar_max100_medium", "ar_max100_large")


@dataclass(frozen=True)
class ClassAP:
    """One category's AP (in points) on the evaluated images; None where it has no ground-truth box."""

    category_id: int
    name: str
    gt_boxes: int  # ground-truth boxes (not crowd regions) of this category in the evaluated images
    ap50_95: float | None
    ap50: float | None


@dataclass(frozen=True)
class PRCurve:
    """Precision at COCOeval's 101 recall points (0, 0.01, ..., 1), all areas, 100 detections per image,
    averaged over the categories that have ground truth: at IoU 0.5, and over IoU 0.5:0.95."""

    recall: list[float]
    precision50: list[float]
    precision50_95: list[float]


@dataclass(frozen=True)
class Scores:
    """What COCOeval found: the 12 summary figures (fractions; None where a range has no ground truth),
    per-category AP and the mean precision-recall curves."""

    stats: list[float | None]
    per_class: list[ClassAP]
    pr_curve: PRCurve | None


@dataclass
class EvalReport:
    """One evaluation: the headline mAP with its price (input pixels, images/s), COCO's figures, AP per class."""

    model: str
    images: int
    map50_95: float  # COCO mAP@0.5:0.95, in points (0-100)
    map50: float
    seconds: float
    images_per_s: float
    failed: list[str] = field(default_factory=list)
    #: the 12 COCOeval summary figures by name (``STAT_KEYS``), in points; None: no ground truth in that range
    stats: dict[str, float | None] = field(default_factory=dict)
    per_class: list[ClassAP] = field(default_factory=list)  # categories with ground truth, in dataset order
    #: mean network input pixels per evaluated image, all passes counted (``Result.input_pixels``): what
    #: --imgsz and --tile cost, without timing noise; None when scoring a results file
    input_pixels_per_image: float | None = None
    #: images of the annotation file without a single detection: each one counts as missed
    images_without_detections: int = 0
    pr_curve: PRCurve | None = None  # for ``spotdet.eval.plot``; left out of ``to_dict``

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["pr_curve"]
        return data


def find_dataset(data_dir: str | Path) -> tuple[Path, Path]:
    """(annotation file, image folder) of a COCO-style folder; clear errors when the layout is wrong."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory")
    ann = root / "instances.json"
    if not ann.is_file():
        found = sorted(root.glob("*.json")) + sorted(root.glob("annotations/instances*.json"))
        if len(found) != 1:
            raise UsageError(f"{root}: expected instances.json (COCO annotations) in the folder")
        ann = found[0]
    images = root / "images"
    return ann, images if images.is_dir() else root


@dataclass(frozen=True)
class CocoDataset:
    """A COCO-style folder, read and checked: its annotation file, image folder and (filled) annotations."""

    ann_file: Path
    image_dir: Path
    data: dict[str, Any]  # "images", "categories", "annotations": checked, optional fields filled

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.data["images"]

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.data["categories"]


def load_dataset(data_dir: str | Path) -> CocoDataset:
    """``find_dataset`` + ``read_dataset``: a dataset folder ready to score against, or a clear UsageError."""
    ann, images = find_dataset(data_dir)
    return CocoDataset(ann, images, read_dataset(ann))


def _load(ann_file: str | Path) -> dict[str, Any]:
    try:
        meta = json.loads(Path(ann_file).read_text())
        if not isinstance(meta, dict):
            raise TypeError(f"the top level is a {type(meta).__name__}, not an object")
        images, categories = meta["images"], meta["categories"]
        if not isinstance(images, list) or not isinstance(categories, list):
            raise TypeError("images and categories must be lists")
        if not all(isinstance(i, dict) and _is_int(i.get("id")) and "file_name" in i for i in images):
            raise KeyError("every image needs an integer id and a file_name")
        if not all(isinstance(c, dict) and _is_int(c.get("id")) and "name" in c for c in categories):
            raise KeyError("every category needs an integer id and a name")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{ann_file}: not a COCO annotation file ({exc})") from None
    return meta


def read_annotations(ann_file: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(images, categories) of a COCO annotation file; a clear error when it is not one.

    What a batch job needs (image and category ids); ``read_dataset`` also checks the annotations themselves.
    """
    meta = _load(ann_file)
    return meta["images"], meta["categories"]


def read_dataset(ann_file: str | Path, max_problems: int = 5) -> dict[str, Any]:
    """The annotation file as pycocotools needs it: checked, with optional fields filled (see the module doc)."""
    meta = _load(ann_file)
    anns = meta.get("annotations", [])
    if not isinstance(anns, list):
        raise UsageError(f"{ann_file}: not a COCO annotation file (annotations must be a list)")
    image_ids = {i["id"] for i in meta["images"]}
    category_ids = {c["id"] for c in meta["categories"]}
    used_ids = {a["id"] for a in anns if isinstance(a, dict) and _is_int(a.get("id"))}
    next_id = max(used_ids, default=0) + 1
    seen_ids: set[int] = set()
    problems: list[str] = []
    filled: list[dict[str, Any]] = []
    for k, ann in enumerate(anns):
        problem = _annotation_problem(ann, image_ids, category_ids, seen_ids)
        if problem:
            label = f"annotation #{k}" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
            problems.append(f"{label}: {problem}")
            continue
        ann = dict(ann)
        if "id" not in ann:
            ann["id"], next_id = next_id, next_id + 1
        seen_ids.add(ann["id"])
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
        filled.append(ann)
    if problems:
        shown = "; ".join(problems[:max_problems])
        more = f" (and {len(problems) - max_problems} more)" if len(problems) > max_problems else ""
        raise UsageError(f"{ann_file}: {len(problems)} annotation(s) cannot be scored: {shown}{more}")
    return {**meta, "annotations": filled}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _annotation_problem(ann: Any, image_ids: set, category_ids: set, seen_ids: set[int]) -> str | None:
    """Why one ground-truth entry cannot be scored, or None."""
    if not isinstance(ann, dict):
        return f"not an object ({ann!r})"
    if "id" in ann and (not _is_int(ann["id"]) or ann["id"] in seen_ids):
        return f"id {ann['id']!r} is not a unique integer"
    if not _is_int(ann.get("image_id")) or ann["image_id"] not in image_ids:
        return f"image_id {ann.get('image_id')!r} is not among the images"
    if not _is_int(ann.get("category_id")) or ann["category_id"] not in category_ids:
        return f"category_id {ann.get('category_id')!r} is not among the categories"
    box = ann.get("bbox")
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(map(_is_number, box)) and box[2] >= 0
            and box[3] >= 0):
        return f"bbox must be [x, y, width, height]: 4 finite numbers, width and height >= 0; got {box!r}"
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
        return f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}"
    if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
        return f"area must be a number >= 0, got {ann['area']!r}"
    return None


def category_map(names: dict[int, str], categories: list[dict[str, Any]]) -> dict[int, int]:
    """Model class index -> dataset category id, matched by class name."""
    by_name = {c["name"]: c["id"] for c in categories}
    mapping = {i: by_name[n] for i, n in names.items() if n in by_name}
    if not mapping:
        raise UsageError("none of the model's class names appear in the dataset's categories")
    return mapping


def default_category_ids(names: dict[int, str]) -> dict[int, int]:
    """Category ids when no annotation file says: the official COCO ids for the COCO-80 label set, else i + 1."""
    from spotdet.models.labels import COCO80

    if tuple(names.values()) == tuple(COCO80):
        return dict(zip(names, COCO80_CATEGORY_IDS))
    return {i: i + 1 for i in names}


def score_detections(ground_truth: str | Path | dict[str, Any], detections: list[dict[str, Any]],
                     image_ids: list[int]) -> list[float]:
    """The 12 COCOeval bbox summary figures (fractions, -1 where a range has no ground truth) for
    ``detections`` on ``image_ids``.

    ``ground_truth``: an annotation file, or what ``read_dataset`` made of one.
    """
    dataset = ground_truth if isinstance(ground_truth, dict) else read_dataset(ground_truth)
    scores = score(dataset, detections, image_ids)
    return [-1.0 if s is None else s for s in scores.stats]


def score(dataset: dict[str, Any], detections: list[dict[str, Any]], image_ids: list[int]) -> Scores:
    """COCOeval (bbox) of ``detections`` on ``image_ids``: summary, per-category AP and PR curves.

    ``dataset``: what ``read_dataset`` made of an annotation file.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        if not detections:
            return Scores([0.0] * len(STAT_KEYS), _class_aps(dataset, image_ids, None), None)
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [None if s < 0 else float(s) for s in ev.stats]
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    return Scores(stats, _class_aps(dataset, image_ids, precision, list(ev.params.catIds)),
                  _pr_curve(precision, ev.params.recThrs))


def _mean_valid(values) -> float | None:
    """Mean of the entries COCOeval filled (it writes -1 where a category has no ground truth)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _class_aps(dataset: dict[str, Any], image_ids: list[int], precision, cat_ids: list[int] | None = None
               ) -> list[ClassAP]:
    """AP of each category with ground truth in ``image_ids``, from COCOeval's precision array (all areas,
    100 detections per image: the same slice its summary averages, so their mean is the mAP)."""
    wanted = set(image_ids)
    gt_boxes: dict[int, int] = {}
    for ann in dataset["annotations"]:
        if ann["image_id"] in wanted and not ann["iscrowd"]:
            gt_boxes[ann["category_id"]] = gt_boxes.get(ann["category_id"], 0) + 1
    column = {c: k for k, c in enumerate(cat_ids or [])}
    out = []
    for cat in dataset["categories"]:
        n = gt_boxes.get(cat["id"], 0)
        if not n:
            continue
        if precision is None:  # no detections at all: every category with ground truth scores 0
            ap, ap50 = 0.0, 0.0
        else:
            p = precision[:, :, column[cat["id"]], 0, -1]
            ap, ap50 = _mean_valid(p), _mean_valid(p[0])
        out.append(ClassAP(cat["id"], str(cat["name"]), n, _points(ap), _points(ap50)))
    return out


def _pr_curve(precision, recall_points) -> PRCurve:
    import numpy as np

    p = np.where(precision[:, :, :, 0, -1] > -1, precision[:, :, :, 0, -1], np.nan)  # [T, R, K]
    has_gt = ~np.all(np.isnan(p), axis=(0, 1))
    p = p[:, :, has_gt]
    return PRCurve(recall=[round(float(r), 2) for r in recall_points],
                   precision50=[round(float(v), 5) for v in np.nanmean(p[0], axis=1)],
                   precision50_95=[round(float(v), 5) for v in np.nanmean(p, axis=(0, 2))])


def _points(fraction: float | None) -> float | None:
    return None if fraction is None else round(fraction * 100, 2)


def _report(model: str, images: int, scores: Scores, seconds: float, images_per_s: float, **extra: Any
            ) -> EvalReport:
    stats = [_points(s) for s in scores.stats]
    return EvalReport(model=model, images=images, map50_95=stats[0] or 0.0, map50=stats[1] or 0.0,
                      seconds=round(seconds, 3), images_per_s=images_per_s, stats=dict(zip(STAT_KEYS, stats)),
                      per_class=scores.per_class, pr_curve=scores.pr_curve, **extra)


def evaluate(detector, data_dir: str | Path | CocoDataset, conf: float = EVAL_CONF, iou: float | None = None,
             max_det: int = EVAL_MAX_DET, limit: int | None = None, imgsz: Imgsz | str | None = None,
             tile: bool = False, on_progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Run ``detector`` on every annotated image and score it with COCOeval.

    ``data_dir``: a dataset folder, or the ``load_dataset`` of one (read and checked before the model runs).
    ``imgsz`` (N, (h, w), "WxH" or "auto") and ``tile`` are the DetectOptions the model runs with; what they
    cost shows as ``input_pixels_per_image`` next to the mAP they buy.
    """
    dataset = data_dir if isinstance(data_dir, CocoDataset) else load_dataset(data_dir)
    ann_file, image_dir = dataset.ann_file, dataset.image_dir
    images = dataset.images
    if limit:
        images = images[:limit]
    if not images:
        raise UsageError(f"{ann_file}: no images listed")
    cat_ids = category_map(detector.names, dataset.categories)
    id_by_path = {str(image_dir / info["file_name"]): info["id"] for info in images}
    detections: list[dict[str, Any]] = []
    failed: list[str] = []
    done_ids: list[int] = []
    input_pixels = 0
    empty = 0

    def record_failure(source, exc: SpotdetError) -> None:
        failed.append(str(exc))
        if on_progress:
            on_progress(len(done_ids) + len(failed), len(images))

    start = time.perf_counter()
    # COCO boxes refer to the stored pixel order, so EXIF orientation is not applied.
    for result in detector.stream(list(id_by_path), imgsz=imgsz, tile=tile, conf=conf, iou=iou, max_det=max_det,
                                  keep_image=False, exif_orientation=False, on_error=record_failure):
        image_id = id_by_path[result.path]
        found = result.to_coco(image_id, cat_ids)
        detections.extend(found)
        empty += not found
        input_pixels += result.input_pixels
        done_ids.append(image_id)
        if on_progress:
            on_progress(len(done_ids) + len(failed), len(images))
    seconds = time.perf_counter() - start
    if not done_ids:
        raise SpotdetError(f"no image in {image_dir} could be read; first failure: {failed[0]}")
    # failed images stay in the scored set: their ground truth counts as missed
    scores = score(dataset.data, detections, [i["id"] for i in images])
    return _report(detector.name, len(done_ids), scores, seconds, round(len(done_ids) / seconds, 2),
                   failed=failed, input_pixels_per_image=round(input_pixels / len(done_ids), 1),
                   images_without_detections=empty + len(failed))


def evaluate_results_file(results: str | Path, data_dir: str | Path | CocoDataset) -> EvalReport:
    """Score a COCO results JSON (e.g. from ``spotdet batch run --format coco``) against a dataset folder.

    Every image listed in the annotations counts; an image without detections in the file scores as
    missed, exactly as in ``evaluate``.
    """
    dataset = data_dir if isinstance(data_dir, CocoDataset) else load_dataset(data_dir)
    path = Path(results)
    try:
        detections = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such results file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON file ({exc})") from None
    keys = {"image_id", "category_id", "bbox", "score"}
    if not isinstance(detections, list) or not all(isinstance(d, dict) and keys <= set(d) for d in detections):
        raise UsageError(f"{path}: not a COCO results list (each entry needs {', '.join(sorted(keys))})")
    bad = next((d for d in detections if not (isinstance(d["bbox"], list) and len(d["bbox"]) == 4
                                             and all(map(_is_number, d["bbox"])) and _is_number(d["score"]))), None)
    if bad is not None:
        raise UsageError(f"{path}: not a COCO results list (bbox must be 4 numbers and score a number; got {bad})")
    image_ids = [i["id"] for i in dataset.images]
    unknown = {d["image_id"] for d in detections} - set(image_ids)
    if unknown:
        raise UsageError(f"{path}: {len(unknown)} image id(s) not in {dataset.ann_file.name}, e.g. "
                         f"{sorted(unknown)[:3]}")
    start = time.perf_counter()
    scores = score(dataset.data, detections, image_ids)
    seconds = time.perf_counter() - start
    without = len(set(image_ids) - {d["image_id"] for d in detections})
    return _report(path.name, len(image_ids), scores, seconds, 0.0, images_without_detections=without)
