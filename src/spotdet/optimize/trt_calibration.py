"""INT8 on TensorRT from the user's images: an fp32 variant plus the calibration table TensorRT reads.

``spotdet optimize MODEL --precision int8 --calib DIR --device tensorrt`` keeps the graph in fp32 (TensorRT
quantizes while it builds the engine) and writes, beside the variant, the dynamic range of every tensor measured
on the calibration images: ONNX Runtime's calibrator (``create_calibrator``) runs the model on the images with
the model's own preprocessing (``calibration.ImageCalibrationReader``), and ``write_calibration_table`` writes
the table in the flatbuffers format that ONNX Runtime's TensorRT provider reads through
``trt_int8_calibration_table_name`` (``backends/tensorrt.py`` sets it when the table is there).

TensorRT's INT8 ranges are symmetric (one value per tensor: ``[-r, r]``). ONNX Runtime's writer takes
``max(highest, lowest)`` of each range, which would clip the negative side of an asymmetric range, so the
ranges are made symmetric (``r = max(|lowest|, |highest|)``) before writing.

The calibration runs on the CPU provider: the table depends only on the model and the images, so it is the same
table whichever machine writes it, and a GPU machine can use one written elsewhere.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import onnx

from spotdet.atomic import atomic_path
from spotdet.backends.onnx_tools import real_inputs, remove_initializer_inputs
from spotdet.backends.tensorrt import calibration_table_for
from spotdet.models.card import ModelCard
from spotdet.optimize.calibration import ImageCalibrationReader, calibration_images
from spotdet.optimize.errors import CalibrationError, PrecisionUnsupportedError
from spotdet.optimize.precisions.base import Builder, Built
from spotdet.optimize.precisions.int8_static import calibrate_method
from spotdet.optimize.request import OptimizeRequest

#: the precision name of a TensorRT-calibrated variant (the file is fp32, the table beside it)
TRT_INT8 = "int8"
TABLE_FILE = "calibration.flatbuffers"  # the name ONNX Runtime's writer gives the table


def calibration_ranges(model_path: Path, card: ModelCard, files: list[Path], method: str = "minmax") -> dict[str, float]:
    """The symmetric dynamic range ``r`` of every tensor of the model at ``model_path`` on the images ``files``."""
    from onnxruntime.quantization import create_calibrator

    method_id = calibrate_method(method)
    input_name = real_inputs(onnx.load(str(model_path), load_external_data=False))[0].name
    reader = ImageCalibrationReader(files, card, input_name)
    with tempfile.TemporaryDirectory(prefix="spotdet-trtcal-") as tmp:
        calibrator = create_calibrator(model_path, [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method_id, providers=["CPUExecutionProvider"],
                                       extra_options={"symmetric": True})
        calibrator.collect_data(reader)
        data = calibrator.compute_data()
    ranges = {}
    for name, value in data.items():
        low, high = value.range_value
        ranges[name] = float(np.max(np.abs(np.concatenate([np.ravel(low), np.ravel(high)]))))
    if not ranges:
        raise CalibrationError(f"calibration of {model_path} measured no tensor")
    return ranges


def write_table(ranges: dict[str, float], dest: Path) -> Path:
    """Write ``ranges`` as ONNX Runtime's TensorRT calibration table at ``dest`` (atomically)."""
    from onnxruntime.quantization import write_calibration_table
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    symmetric = {name: TensorData(lowest=np.float32(-r), highest=np.float32(r)) for name, r in ranges.items()}
    with tempfile.TemporaryDirectory(prefix="spotdet-trtcal-") as tmp:
        write_calibration_table(TensorsData(CalibrationMethod.MinMax, symmetric), dir=tmp)
        with atomic_path(dest) as part:
            shutil.copyfile(Path(tmp) / TABLE_FILE, part)
    return dest


def read_table(path: Path) -> dict[str, float]:
    """The ranges in a table written by ``write_table`` (as TensorRT's provider will read them)."""
    from onnxruntime.quantization.CalTableFlatBuffers.TrtTable import TrtTable

    try:
        table = TrtTable.GetRootAsTrtTable(bytearray(Path(path).read_bytes()), 0)
        pairs = [table.Dict(i) for i in range(table.DictLength())]
        return {kv.Key().decode(): float(kv.Value()) for kv in pairs}
    except (OSError, ValueError, IndexError, AttributeError, struct.error) as exc:
        raise CalibrationError(f"{path} is not a TensorRT calibration table ({type(exc).__name__}: {exc})") from None


def write_trt_calibration(model_path: Path, card: ModelCard, request: OptimizeRequest, variant_path: Path) -> Path:
    """Calibrate the model file ``model_path`` on ``request.calib`` and write the table for ``variant_path``."""
    files = calibration_images(request.calib, request.calib_count)  # type: ignore[arg-type]
    return write_table(calibration_ranges(model_path, card, files, request.calib_method),
                       calibration_table_for(variant_path))


def _requires(card: ModelCard, request: OptimizeRequest) -> None:
    if request.device != "tensorrt":
        raise PrecisionUnsupportedError(
            "--precision int8 is TensorRT's own INT8 (an fp32 file calibrated for TensorRT): add --device tensorrt. "
            "For INT8 on a CPU or on CUDA, build int8-static (or int8-dynamic)")
    if request.calib is None:
        raise PrecisionUnsupportedError("--precision int8 needs calibration images: --calib DIR, a folder of images "
                                        "like the ones you will run on")
    calibrate_method(request.calib_method)


def _build(graph: onnx.ModelProto, card: ModelCard, request: OptimizeRequest, progress: bool = False) -> Built:
    """The graph stays fp32 (TensorRT quantizes while it builds the engine); the table is written beside the
    variant once the variant's file exists (``optimize.api``)."""
    remove_initializer_inputs(graph)
    notes = [f"the file stays fp32: TensorRT builds INT8 from the calibration table beside it "
             f"({request.calib_method} on up to {request.calib_count} images from {request.calib}); run it with "
             "device='tensorrt' (elsewhere it runs at fp32)"]
    card_notes = [f"TensorRT INT8: fp32 graph + calibration table ({request.calib_method}, "
                  f"{request.calib.name if request.calib else '?'})"]
    return Built(graph, notes=notes, card_notes=card_notes)


BUILDER = Builder(TRT_INT8, build=_build, requires=_requires)
