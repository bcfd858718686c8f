"""Tiling on large images: mAP of the whole-image pass, of ``tile=True`` (each merge), and of SAHI wrapping the
same Detector, on the mosaic set that ``benchmarks/mosaic.py`` builds.

    python benchmarks/mosaic.py --out /tmp/spotdet-mosaic
    python benchmarks/tiling.py [--data /tmp/spotdet-mosaic] [--models picodet-s-416,yolox-nano]

Every row scores COCO mAP@0.5:0.95 with pycocotools (``spotdet.eval.coco.score_detections``) at the evaluation
settings of ``spotdet eval`` (conf 0.001, max 100 boxes). "px/img" is the network input pixels per image, all
passes counted (``Result.input_pixels``); "ms/img" is the wall time of the whole loop per image (decode,
passes, merge), measured in the same run, one row after the other: compare it within a table only.

SAHI (``pip install sahi``) runs ``get_sliced_prediction`` with its defaults (slices of the network input size,
overlap 0.2, a standard whole-image prediction, GREEDYNMM/IOS 0.5, which SAHI itself switches to NMS/IOU 0.5
below a confidence of 0.1, as here) on a ``DetectionModel`` that calls the same spotdet Detector once per slice.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from spotdet import Detector
from spotdet.eval.coco import EVAL_CONF, EVAL_MAX_DET, CocoDataset, category_map, load_dataset, score_detections
from spotdet.results import Boxes, Result
from spotdet.vision.tiling import TilePolicy


@dataclass
class Scored:
    """One row: what was run, its mAP and what it cost per image."""

    label: str
    map50_95: float
    map50: float
    map_small: float
    pixels_per_image: float
    passes_per_image: float
    ms_per_image: float

    def row(self) -> str:
        return (f"| {self.label} | {self.map50_95:.2f} | {self.map50:.2f} | {self.map_small:.2f} | "
                f"{self.pixels_per_image / 1e3:,.0f}k | {self.passes_per_image:.1f} | {self.ms_per_image:.0f} |")


HEADER = ("| run | mAP@0.5:0.95 | mAP@0.5 | mAP small | px/img | passes/img | ms/img |\n"
          "|---|---:|---:|---:|---:|---:|---:|")


def image_paths(ds: CocoDataset) -> dict[str, int]:
    """Image path -> image id, in the annotation file's order."""
    return {str(ds.image_dir / info["file_name"]): info["id"] for info in ds.images}


def score_results(label: str, results: Iterable[Any], ds: CocoDataset, names: dict[int, str]) -> Scored:
    """Score the Results of a run over ``ds`` (any order); cost from each Result's passes and timings."""
    ids, cats = image_paths(ds), category_map(names, ds.categories)
    detections: list[dict] = []
    pixels, passes = [], []
    start = time.perf_counter()
    for result in results:
        detections.extend(result.to_coco(ids[result.path], cats))
        pixels.append(result.input_pixels)
        passes.append(len(result.passes))
    seconds = time.perf_counter() - start
    stats = score_detections(ds.data, detections, list(ids.values()))
    return Scored(label, stats[0] * 100, stats[1] * 100, stats[3] * 100, float(np.mean(pixels)),
                  float(np.mean(passes)), seconds * 1000 / len(pixels))


def run_spotdet(det: Detector, ds: CocoDataset, label: str, max_det: int = EVAL_MAX_DET, **options: Any) -> Scored:
    """``det.stream`` over the dataset with the evaluation settings and ``options`` (tile, imgsz)."""
    stream = det.stream(list(image_paths(ds)), conf=EVAL_CONF, max_det=max_det, keep_image=False,
                        exif_orientation=False, **options)
    return score_results(label, stream, ds, det.names)


def sahi_model(det: Detector, conf: float, max_det: int):
    """A SAHI DetectionModel that runs spotdet's Detector on whatever (RGB) slice SAHI hands it."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction
    from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

    class SpotdetModel(DetectionModel):
        def set_model(self, model: Detector, **kwargs: Any) -> None:
            self.model = model

        def perform_inference(self, image: np.ndarray) -> None:
            bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
            self._original_predictions = self.model(bgr, conf=self.confidence_threshold, max_det=max_det,
                                                    keep_image=False)[0]

        def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=None,
                                                                      full_shape_list=None) -> None:
            r = self._original_predictions
            shift = fix_shift_amount_list(shift_amount_list or [[0, 0]])[0]
            full = fix_full_shape_list(full_shape_list)[0] if full_shape_list else None
            self._object_prediction_list_per_image = [[
                ObjectPrediction(bbox=box, category_id=int(c), category_name=self.model.names[int(c)],
                                 score=float(s), shift_amount=shift, full_shape=full)
                for box, s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())]]

    return SpotdetModel(model=det, confidence_threshold=conf,
                        category_mapping={str(k): v for k, v in det.names.items()})


def run_sahi(det: Detector, ds: CocoDataset, max_det: int = EVAL_MAX_DET) -> Scored | None:
    """SAHI's get_sliced_prediction with its defaults around the same Detector; None when SAHI is missing.

    SAHI keeps every merged box; the best ``max_det`` by score are kept, as the Detector does (COCOeval's own
    limit is per image *and class*, so without this SAHI would be scored on up to 100 boxes per class)."""
    try:
        from sahi.predict import get_sliced_prediction
        from sahi.slicing import get_slice_bboxes
    except ImportError:
        return None
    import logging

    logging.getLogger("sahi").setLevel(logging.ERROR)  # its low-confidence switch to NMS warns on every image
    model = sahi_model(det, EVAL_CONF, max_det)
    h, w = det.input_size()

    def results():
        for path in image_paths(ds):
            rgb = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            pred = get_sliced_prediction(rgb, model, slice_height=h, slice_width=w, overlap_height_ratio=0.2,
                                         overlap_width_ratio=0.2, verbose=0)
            preds = sorted(pred.object_prediction_list, key=lambda p: -p.score.value)[:max_det]
            slices = len(get_slice_bboxes(rgb.shape[0], rgb.shape[1], h, w, False, 0.2, 0.2))
            boxes = Boxes(np.asarray([p.bbox.to_xyxy() for p in preds], np.float32).reshape(-1, 4),
                          np.asarray([p.score.value for p in preds], np.float32),
                          np.asarray([p.category.id for p in preds], np.int64))
            yield Result(boxes, det.names, rgb.shape[:2], path=path, input_size=(h, w),
                         input_sizes=[(h, w)] * (slices + 1))

    return score_results("SAHI get_sliced_prediction", results(), ds, det.names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/spotdet-mosaic"))
    ap.add_argument("--models", default="picodet-s-416,yolox-nano")
    ap.add_argument("--no-sahi", action="store_true", help="skip the SAHI row")
    ap.add_argument("--max-det", type=int, default=EVAL_MAX_DET, help="boxes kept per image (every row); a "
                    "mosaic holds 9 COCO images, so 900 matches COCO's 100 per image")
    ap.add_argument("--merges", default="auto,greedy_nmm,nms", help="tile merges to run")
    args = ap.parse_args(argv)
    ds = load_dataset(args.data)
    print(f"data: {args.data} ({len(ds.images)} images, {len(ds.data['annotations'])} boxes)")
    for name in args.models.split(","):
        det = Detector(name, backend="onnxruntime")
        print(f"\n{name} (input {det.input_size()[1]}x{det.input_size()[0]}, onnxruntime, max_det {args.max_det})"
              f"\n{HEADER}")
        whole = run_spotdet(det, ds, "whole image", args.max_det)
        print(whole.row(), flush=True)
        rows = []
        for merge in args.merges.split(","):
            det.tile_policy = TilePolicy(merge=merge)
            rows.append(run_spotdet(det, ds, f"tile=True, merge={merge}", args.max_det, tile=True))
            print(rows[-1].row(), flush=True)
        det.tile_policy = TilePolicy()
        sahi = None if args.no_sahi else run_sahi(det, ds, args.max_det)
        print(sahi.row() if sahi else "| SAHI | not installed (pip install sahi) | | | | | |", flush=True)
        tiled = rows[0]  # the first merge listed (auto: the default policy)
        print(f"\ntile (default policy) - whole image: {tiled.map50_95 - whole.map50_95:+.2f} mAP"
              + (f"; tile - SAHI: {tiled.map50_95 - sahi.map50_95:+.2f} mAP" if sahi else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
