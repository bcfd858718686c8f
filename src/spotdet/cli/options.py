"""Options shared by several commands."""

from __future__ import annotations

from typing import Optional

import typer

ModelOpt = typer.Option(..., "--model", "-m", help="Zoo name (see `spotdet models list`) or path to an .onnx file.")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | tensorrt.")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads (default: all cores).")
FamilyOpt = typer.Option(None, "--family", help="Family of your own .onnx when its metadata does not say (yolox).")
ImgszOpt: Optional[int] = typer.Option(None, "--imgsz", min=32, help="Input size (default: the model's own).")
IouOpt = typer.Option(0.6, "--iou", min=0.0, max=1.0, help="IoU threshold of class-aware NMS.")


def make_detector(model: str, device: str, threads: int | None, family: str | None):
    from spotdet.detector import Detector

    return Detector(model, device=device, threads=threads, family=family)
