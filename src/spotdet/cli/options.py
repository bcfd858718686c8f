"""Options shared by several commands (their defaults come from ``spotdet.options``)."""

from __future__ import annotations

import os
from typing import Optional

import typer

from spotdet.options import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, DEFAULT_MAX_PIXELS

ModelOpt = typer.Option(..., "--model", "-m", help="Zoo name (see `spotdet models list`) or path to an .onnx file.")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | tensorrt.")
GPU_ENV = "SPOTDET_GPU"  # read by spotdet.backends.onnxruntime.default_gpu (not imported here: the CLI starts light)


def _export_gpu(value: Optional[int]) -> Optional[int]:
    """``--gpu N`` reaches every model the command loads (and its worker processes) through $SPOTDET_GPU."""
    if value is not None:
        os.environ[GPU_ENV] = str(value)
    return value


GpuOpt: Optional[int] = typer.Option(None, "--gpu", min=0, envvar=GPU_ENV, callback=_export_gpu,
                                     help="GPU index for --device cuda | tensorrt | auto (default 0, or $SPOTDET_GPU).")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads (default: all cores).")
FamilyOpt = typer.Option(None, "--family", help="Family of your own .onnx when its metadata does not say (yolox).")
ImgszOpt: Optional[str] = typer.Option(None, "--imgsz", help="Input size: N, WxH, or 'auto' (chosen per image; "
                                       "needs a variable-size model). Default: the model's own.")
TileOpt = typer.Option(False, "--tile", help="Slice large images into overlapping tiles at the network input "
                       "size (plus one whole-image pass) and merge the boxes: finds small objects, costs more pixels.")
ConfOpt = typer.Option(DEFAULT_CONF, "--conf", min=0.0, max=0.999, help="Minimum confidence.")
IouOpt = typer.Option(DEFAULT_IOU, "--iou", min=0.0, max=1.0, help="IoU threshold of class-aware NMS.")
MaxDetOpt = typer.Option(DEFAULT_MAX_DET, "--max-det", min=1, help="Most detections kept per image.")
ClassesOpt: Optional[str] = typer.Option(None, "--classes", help="Keep only these classes: ids or names, "
                                         "comma-separated (e.g. person,car or 0,2).")
BackendOpt = typer.Option("auto", "--backend", help="Inference runtime: auto | onnxruntime | openvino (auto: "
                           "OpenVINO for fp32 models on a CPU when installed, else ONNX Runtime).")
PrecisionOpt: Optional[str] = typer.Option(None, "--precision", help="Run a variant made by `spotdet optimize` "
                                           "(fp16, int8-static, ...), or bf16 (compiled by OpenVINO at load).")
VidStrideOpt = typer.Option(1, "--vid-stride", min=1, help="Video sources: detect on every Nth frame.")
MaxPixelsOpt = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, help="Images with more pixels (width x "
                            "height, read from the header before decoding) fail without being decoded; 0: no limit.")


def max_pixels_limit(value: int) -> int | None:
    """The ``--max-pixels`` value as Detector/JobSpec take it: None for 0 (no limit)."""
    return value or None
