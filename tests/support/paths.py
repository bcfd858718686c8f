"""Where the real models and datasets live: ../shared beside the repository unless SPOTDET_SHARED says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SPOTDET_SHARED", REPO.parent / "shared"))
MODEL_DIR = SHARED / "models"
DATA_DIR = SHARED / "data"
VAL_DIR = DATA_DIR / "coco-val-dev"
COCO128 = DATA_DIR / "coco128-train"

ZOO_MODELS = ["fastestdet", "yolox-nano", "picodet-s-320", "picodet-s-416", "yolov8n-int8", "yolo11n-int8"]
