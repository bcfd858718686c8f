"""COCO: the one annotation reader, category ids for the model's classes, and mAP evaluation (pycocotools).

Everything that speaks COCO (``spotdet eval``, batch jobs writing ``--format coco``, bench's mAP column)
reads annotation files and maps classes to category ids here.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from spotdet.errors import SpotdetError, UsageError

EVAL_CONF = 0.001
EVAL_MAX_DET = 100

# The 80 COCO classes' category ids in the official annotations (ids 1-90 with gaps), in class order.
COCO80_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                       27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
                       52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
                       78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


@dataclass
class EvalReport:
    model: str
    images: int
    map50_95: float  # COCO mAP@0.5:0.95, in points (0-100)
    map50: float
    seconds: float
    images_per_s: float
    failed: list[str] = field(default_factory=list)
    stats: list[float] = field(default_factory=list)  # the 12 COCOeval summary figures, in points

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def read_annotations(ann_file: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(images, categories) of a COCO annotation file; a clear error when it is not one."""
    try:
        meta = json.loads(Path(ann_file).read_text())
        images, categories = meta["images"], meta["categories"]
        if not all("id" in i and "file_name" in i for i in images):
            raise KeyError("every image needs id and file_name")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{ann_file}: not a COCO annotation file ({exc})") from None
    return images, categories


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


def score_detections(ann_file: Path, detections: list[dict[str, Any]], image_ids: list[int]) -> list[float]:
    """The 12 COCOeval bbox summary figures (fractions) for ``detections`` on ``image_ids``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        if not detections:
            return [0.0] * 12
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def evaluate(detector, data_dir: str | Path, conf: float = EVAL_CONF, iou: float | None = None,
             max_det: int = EVAL_MAX_DET, limit: int | None = None, imgsz: int | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Run ``detector`` on every annotated image and score it with COCOeval."""
    ann_file, image_dir = find_dataset(data_dir)
    images, categories = read_annotations(ann_file)
    if limit:
        images = images[:limit]
    if not images:
        raise UsageError(f"{ann_file}: no images listed")
    cat_ids = category_map(detector.names, categories)
    id_by_path = {str(image_dir / info["file_name"]): info["id"] for info in images}
    detections: list[dict[str, Any]] = []
    failed: list[str] = []
    done_ids: list[int] = []

    def record_failure(source, exc: SpotdetError) -> None:
        failed.append(str(exc))
        if on_progress:
            on_progress(len(done_ids) + len(failed), len(images))

    start = time.perf_counter()
    # COCO boxes refer to the stored pixel order, so EXIF orientation is not applied.
    for result in detector.stream(list(id_by_path), imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, keep_image=False,
                                  exif_orientation=False, on_error=record_failure):
        image_id = id_by_path[result.path]
        detections.extend(result.to_coco(image_id, cat_ids))
        done_ids.append(image_id)
        if on_progress:
            on_progress(len(done_ids) + len(failed), len(images))
    seconds = time.perf_counter() - start
    if not done_ids:
        raise SpotdetError(f"no image in {image_dir} could be read; first failure: {failed[0]}")
    stats = score_detections(ann_file, detections, [i["id"] for i in images])
    return EvalReport(model=detector.name, images=len(done_ids), map50_95=round(stats[0] * 100, 2),
                      map50=round(stats[1] * 100, 2), seconds=round(seconds, 3),
                      images_per_s=round(len(done_ids) / seconds, 2), failed=failed,
                      stats=[round(s * 100, 2) for s in stats])


def evaluate_results_file(results: str | Path, data_dir: str | Path) -> EvalReport:
    """Score a COCO results JSON (e.g. from ``spotdet batch run --format coco``) against a dataset folder.

    Every image listed in the annotations counts; an image without detections in the file scores as
    missed, exactly as in ``evaluate``.
    """
    ann_file, _ = find_dataset(data_dir)
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
    image_ids = [i["id"] for i in read_annotations(ann_file)[0]]
    unknown = {d["image_id"] for d in detections} - set(image_ids)
    if unknown:
        raise UsageError(f"{path}: {len(unknown)} image id(s) not in {ann_file.name}, e.g. {sorted(unknown)[:3]}")
    start = time.perf_counter()
    stats = score_detections(ann_file, detections, image_ids)
    seconds = time.perf_counter() - start
    return EvalReport(model=path.name, images=len(image_ids), map50_95=round(stats[0] * 100, 2),
                      map50=round(stats[1] * 100, 2), seconds=round(seconds, 3), images_per_s=0.0,
                      stats=[round(v * 100, 2) for v in stats])
