"""Pseudo-labels: the teacher(s) label the unlabelled images, and the labels become a COCO folder.

Labelling is a spotdet batch job per teacher (``spotdet.jobs.run_job``), so a run that is killed or preempted
continues where it stopped: the job folder keeps its committed shards, and the same call resumes it. With more
than one teacher, each teacher's boxes are merged per image with weighted box fusion (``ensemble-boxes``).

The result is ``<out>/instances.json``: a COCO annotation file whose ``file_name`` entries are the images'
absolute paths (the images are not copied), with each box's teacher ``score`` kept for inspection. Boxes the
teacher is unsure of (scored between ``ignore_conf`` and ``conf``) are written with ``iscrowd: 1``, COCO's mark
for "ignore this region": training neither rewards nor punishes the student for firing there, instead of
teaching it that every object the teacher was unsure of is background. It is what
training reads, so a user can open it in any COCO tool, correct it, and train on the corrected file. The
settings that made it are stored in its ``info``; a file made with the same settings is kept as it is (and
so are the user's corrections), a file made with other settings is rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spotdet.atomic import atomic_write_text
from spotdet.errors import SpotdetError
from spotdet.eval.coco import default_category_ids

LABELS_NAME = "instances.json"
JOBS_DIR = "jobs"
#: boxes of different teachers that overlap at least this much are fused into one (WBF's iou_thr)
FUSION_IOU = 0.55


@dataclass(frozen=True)
class LabelSettings:
    """What defines a set of pseudo-labels; stored in the labels' ``info`` to tell whether they are current."""

    teachers: tuple[str, ...]
    source: str
    conf: float
    iou: float
    weights: tuple[float, ...] | None = None
    ignore_conf: float | None = None  # boxes scored in [ignore_conf, conf) become ignore regions (iscrowd 1)

    @property
    def lowest(self) -> float:
        """The score a teacher box needs to be kept at all (as a label or as an ignore region)."""
        return min(self.conf, self.ignore_conf) if self.ignore_conf is not None else self.conf

    def to_dict(self) -> dict[str, Any]:
        return {"teachers": list(self.teachers), "source": self.source, "conf": self.conf, "iou": self.iou,
                "weights": list(self.weights) if self.weights else None, "ignore_conf": self.ignore_conf}


@dataclass
class ImageLabels:
    """One image's pseudo-labels: absolute path, size, and boxes (xyxy pixels), scores and class names."""

    path: str
    width: int
    height: int
    xyxy: np.ndarray
    scores: np.ndarray
    names: list[str]


def folder_name(name: str) -> str:
    """``name`` (a model name or a file's name) as a folder name: anything but letters, digits and -_. becomes _."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def job_dir(out_dir: Path, teacher: str, conf: float) -> Path:
    """The batch-job folder of one teacher: a new conf is a new job (the job runner refuses a changed spec)."""
    return out_dir / JOBS_DIR / f"{folder_name(Path(teacher).name)}-conf{conf:g}"


def label_with_teacher(teacher: str, source: str, conf: float, iou: float, out_dir: Path,
                       reporter: Any = None, threads: int | None = None) -> list[ImageLabels]:
    """Run (or resume) ``teacher`` over ``source`` as a batch job; its per-image records, failures dropped."""
    from spotdet.jobs import JobSpec, RunOptions, run_job
    from spotdet.options import DetectOptions

    # COCO boxes refer to the stored pixels, and training decodes the stored pixels too: no EXIF rotation.
    spec = JobSpec(source=source, model=teacher, options=DetectOptions.create(conf=conf, iou=iou),
                   fmt="jsonl", exif_orientation=False)
    folder = job_dir(out_dir, teacher, conf)
    summary = run_job(folder, spec, RunOptions(workers=1, threads=threads), reporter)
    if summary.state != "complete":
        raise SpotdetError(f"labelling with {teacher} stopped ({summary.state}); run the same command again to "
                           f"continue the job in {folder}")
    return list(_read_records(summary.outputs[0]))


def _read_records(results: Path):
    with open(results, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if "error" in record:
                continue
            dets = record["detections"]
            boxes = np.array([[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in dets], np.float32)
            yield ImageLabels(record["path"], record["width"], record["height"], boxes.reshape(-1, 4),
                              np.array([d["confidence"] for d in dets], np.float32),
                              [d["class_name"] for d in dets])


def fuse(per_teacher: list[list[ImageLabels]], conf: float, weights: tuple[float, ...] | None = None,
         iou_thr: float = FUSION_IOU) -> list[ImageLabels]:
    """Weighted box fusion of several teachers' labels, image by image (images every teacher labelled).

    WBF averages each cluster's score over *all* teachers (``conf_type="avg"``), so a box only one of two
    teachers found keeps half its score; fused boxes below ``conf`` are dropped. Agreement is what makes an
    ensemble's labels better than either teacher's.
    """
    if len(per_teacher) == 1:
        return per_teacher[0]
    from spotdet.extras import require

    require("distill", "merging several teachers (weighted box fusion)")
    from ensemble_boxes import weighted_boxes_fusion

    by_path = [{im.path: im for im in labels} for labels in per_teacher]
    names = sorted({n for labels in per_teacher for im in labels for n in im.names})
    class_of = {n: i for i, n in enumerate(names)}
    fused: list[ImageLabels] = []
    for path in (p for p in by_path[0] if all(p in t for t in by_path[1:])):
        ims = [t[path] for t in by_path]
        scale = np.array([ims[0].width, ims[0].height] * 2, np.float32)
        boxes, scores, labels = weighted_boxes_fusion(
            [np.clip(im.xyxy / scale, 0, 1) for im in ims], [im.scores for im in ims],
            [[class_of[n] for n in im.names] for im in ims], weights=list(weights) if weights else None,
            iou_thr=iou_thr, skip_box_thr=0.0, conf_type="avg")
        keep = scores >= conf  # ``conf`` here is the lowest score kept (LabelSettings.lowest)
        fused.append(ImageLabels(path, ims[0].width, ims[0].height, (boxes[keep] * scale).astype(np.float32),
                                 scores[keep].astype(np.float32), [names[int(c)] for c in labels[keep]]))
    return fused


def to_coco(images: list[ImageLabels], class_names: tuple[str, ...], settings: LabelSettings) -> dict[str, Any]:
    """The COCO annotation dict of ``images`` for a model with ``class_names`` (teacher classes it lacks are
    dropped). Category ids are the official COCO ids for the COCO-80 set, else class index + 1."""
    cat_ids = default_category_ids(dict(enumerate(class_names)))
    by_name = {n: cat_ids[i] for i, n in enumerate(class_names)}
    coco_images, annotations = [], []
    for image_id, im in enumerate(images, 1):
        coco_images.append({"id": image_id, "file_name": im.path, "width": im.width, "height": im.height})
        for (x1, y1, x2, y2), score, name in zip(im.xyxy.tolist(), im.scores.tolist(), im.names):
            if name not in by_name or x2 <= x1 or y2 <= y1:
                continue
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": by_name[name],
                                "bbox": [round(x1, 2), round(y1, 2), round(w, 2), round(h, 2)],
                                "area": round(w * h, 2), "iscrowd": int(score < settings.conf),
                                "score": round(float(score), 4)})
    categories = [{"id": cat_ids[i], "name": n} for i, n in enumerate(class_names)]
    return {"info": {"description": "pseudo-labels made by spotdet distill", "spotdet_distill": settings.to_dict()},
            "images": coco_images, "annotations": annotations, "categories": categories}


def stored_settings(labels_dir: Path) -> dict[str, Any] | None:
    """The settings recorded in an existing labels file, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((labels_dir / LABELS_NAME).read_text(encoding="utf-8"))["info"]["spotdet_distill"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_labels(settings: LabelSettings, class_names: tuple[str, ...], out_dir: Path,
                reporter_for: Callable[[str], Any] | None = None, threads: int | None = None) -> tuple[Path, bool]:
    """The COCO folder of pseudo-labels for ``settings`` in ``out_dir``: (folder, whether it was made now).

    An existing labels file with the same settings is kept untouched (a user may have corrected it).
    """
    labels_dir = out_dir / "labels"
    if stored_settings(labels_dir) == settings.to_dict():
        return labels_dir, False
    per_teacher = [label_with_teacher(t, settings.source, settings.lowest, settings.iou, out_dir,
                                      reporter_for(t) if reporter_for else None, threads)
                   for t in settings.teachers]
    images = fuse(per_teacher, settings.lowest, settings.weights)
    if not images:
        raise SpotdetError(f"no image in {settings.source} could be read by the teacher(s)")
    atomic_write_text(labels_dir / LABELS_NAME, json.dumps(to_coco(images, class_names, settings)))
    return labels_dir, True
