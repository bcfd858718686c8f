"""The baseline for benchmarks/serve_load.py: what a user writes first — one model call per request.

    SPOTDET_MODEL=yolox-nano uvicorn benchmarks.naive_server:app --port 8001

No queue, no batching: FastAPI runs the sync handler in its thread pool and every request calls the
model on its own (ONNX Runtime sessions accept concurrent runs).
"""

from __future__ import annotations

import os

from fastapi import FastAPI, File, UploadFile

from spotdet import Detector

app = FastAPI()
detector = Detector(os.environ.get("SPOTDET_MODEL", "yolox-nano"))


@app.post("/predict")
def predict(image: UploadFile = File(...)):
    result = detector(image.file.read(), keep_image=False)[0]
    return {"detections": result.detections(), "timings": result.timings}
