"""Cards for users' own ONNX files ("bring your own model"), read from the file's shape and metadata."""

from __future__ import annotations

import ast
from pathlib import Path

from spotdet.backends.onnx_tools import Dim, dims, graph_precision, load_onnx, real_inputs
from spotdet.errors import UnsupportedModelError, UsageError
from spotdet.models.card import ModelCard, PreprocessSpec
from spotdet.models.labels import COCO80

# Families a bare ONNX file can be read as, with the preprocessing their exporters imply.
BYO_PREPROCESS: dict[str, PreprocessSpec] = {
    "ultralytics": PreprocessSpec("letterbox", "center", 114, "rgb", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
    "yolox": PreprocessSpec("letterbox", "topleft", 114, "bgr", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
BYO_DECODER: dict[str, dict] = {"ultralytics": {}, "yolox": {"strides": [8, 16, 32]}}
SUPPORTED = "ultralytics (YOLOv5u/v8/11 exports, detected from their metadata) and yolox (pass family='yolox')"


def _names_from_metadata(raw: str | None, num_classes: int) -> tuple[str, ...]:
    if raw:
        try:
            parsed = ast.literal_eval(raw)
            if isinstance(parsed, dict):
                return tuple(str(parsed[k]) for k in sorted(parsed))
            if isinstance(parsed, (list, tuple)):
                return tuple(map(str, parsed))
        except (ValueError, SyntaxError):
            pass
    if num_classes == len(COCO80):
        return COCO80
    return tuple(f"class{i}" for i in range(num_classes))


def card_from_onnx(path: str | Path, family: str | None = None) -> ModelCard:
    """Infer a card from an ONNX export; raises UnsupportedModelError naming the supported families."""
    path = Path(path)
    if family is not None and family not in BYO_PREPROCESS:
        raise UsageError(f"family {family!r} is not supported for your own models; supported: {SUPPORTED}")
    model = load_onnx(path, check=False, weights=False)
    meta = {p.key: p.value for p in model.metadata_props}
    inputs = real_inputs(model)
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(
            f"{path.name}: expected one image input and one output, found {len(inputs)} inputs and "
            f"{len(outputs)} outputs; supported families: {SUPPORTED}"
        )
    in_dims, out_dims = dims(inputs[0]), dims(outputs[0])
    if family is None:
        family = "ultralytics" if meta.get("task") == "detect" or "names" in meta and "stride" in meta else None
    if family is None:
        raise UnsupportedModelError(
            f"{path.name}: cannot tell the model family (input {in_dims}, output {out_dims}, no Ultralytics "
            f"metadata); supported: {SUPPORTED}"
        )
    imgsz = _input_size(in_dims, meta)
    if family == "ultralytics":
        channels = out_dims[1] if len(out_dims) == 3 else None
        if not isinstance(channels, int) or channels <= 4:
            raise UnsupportedModelError(f"{path.name}: output {out_dims} is not the Ultralytics [B, 4+classes, N] layout")
        num_classes = channels - 4
    else:
        last = out_dims[-1] if len(out_dims) == 3 else None
        if not isinstance(last, int) or last <= 5:
            raise UnsupportedModelError(f"{path.name}: output {out_dims} is not the YOLOX [B, N, 5+classes] layout")
        num_classes = last - 5
    decoder = dict(BYO_DECODER[family])
    if "stride" in meta and family == "ultralytics":
        decoder["stride"] = int(ast.literal_eval(meta["stride"]))
    return ModelCard(
        name=path.stem,
        family=family,
        file=str(path),
        input_size=imgsz,
        names=_names_from_metadata(meta.get("names"), num_classes),
        preprocess=BYO_PREPROCESS[family],
        decoder=decoder,
        license=meta.get("license", "unknown"),
        precision=graph_precision(model),
        notes="card read from the ONNX file",
    )


def _input_size(in_dims: list[Dim], meta: dict[str, str]) -> tuple[int, int]:
    if len(in_dims) == 4 and isinstance(in_dims[2], int) and isinstance(in_dims[3], int):
        return in_dims[2], in_dims[3]
    if "imgsz" in meta:
        size = ast.literal_eval(meta["imgsz"])
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return 640, 640
