"""TensorRT options, engine-cache keys and shape profiles, computed without a GPU.

No TensorRT here: the GPU name and TensorRT version are passed in (or NVML is replaced by a stand-in for the
absent hardware); the models and the dynamic-batch variant are real.
"""

from __future__ import annotations

import json
from dataclasses import replace

import onnx
import pytest

from spotdet.backends import tensorrt as trt
from spotdet.backends.onnx_tools import dims, real_inputs, runtime_bytes
from spotdet.backends.tensorrt import EngineKey, ShapeProfile, shape_profile, trt_plan
from spotdet.errors import UnsupportedModelError, UsageError
from support.bench import make_dynamic_batch_yolox
from support.paths import MODEL_DIR

H100 = "NVIDIA H100 80GB HBM3"


def inputs_of(path):
    return [(i.name, dims(i)) for i in real_inputs(onnx.load(str(path)))]


@pytest.fixture(scope="module")
def dynb_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dynb")
    make_dynamic_batch_yolox(folder)
    return folder / "yolox_nano_dynb.onnx"


def plan(tmp_path, precision="fp32", path=MODEL_DIR / "yolox_nano.onnx", **kw):
    kw = {"gpu": H100, "trt_version": "tensorrt 10.3.0", "root": tmp_path / "engines", **kw}
    return trt_plan(runtime_bytes(path), precision, inputs_of(path), **kw)


@pytest.mark.parametrize("precision, fp16, int8", [("fp32", "False", "False"), ("fp16", "True", "False"),
                                                   ("int8-static", "True", "True")])
def test_precision_flags(tmp_path, precision, fp16, int8):
    opts = plan(tmp_path, precision).options
    assert (opts["trt_fp16_enable"], opts["trt_int8_enable"]) == (fp16, int8)
    assert opts["trt_engine_cache_enable"] == opts["trt_timing_cache_enable"] == "True"
    assert "trt_int8_calibration_table_name" not in opts  # QDQ files carry their scales; TensorRT refuses a table


def test_engine_cache_lives_under_the_spotdet_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SPOTDET_CACHE_DIR", str(tmp_path / "home"))
    p = plan(tmp_path, root=None)
    assert p.folder.parent == tmp_path / "home" / "tensorrt" and p.folder.is_dir()
    assert p.options["trt_engine_cache_path"] == str(p.folder)
    assert json.loads((p.folder / "key.json").read_text())["gpu"] == H100


def test_int8_uses_the_calibration_table_and_refuses_without_one(tmp_path):
    with pytest.raises(UsageError, match="--precision int8 --calib DIR --device tensorrt"):
        plan(tmp_path, "int8", table=tmp_path / "missing.flatbuffers")
    table = tmp_path / "t.flatbuffers"
    table.write_bytes(b"table one")
    first = plan(tmp_path, "int8", table=table)
    assert first.options["trt_int8_enable"] == "True"
    assert first.options["trt_int8_calibration_table_name"] == str(table.resolve())
    assert first.options["trt_int8_use_native_calibration_table"] == "False"
    table.write_bytes(b"table two")  # re-calibrated: the old engine must not be reused
    assert plan(tmp_path, "int8", table=table).key.digest != first.key.digest


def test_precisions_tensorrt_cannot_build_run_unflagged_and_unknown_ones_are_refused(tmp_path):
    assert plan(tmp_path, "int8-dynamic").options["trt_int8_enable"] == "False"
    with pytest.raises(UsageError, match="no TensorRT build"):
        plan(tmp_path, "int3")


def test_key_is_stable_and_changes_with_each_thing_the_engine_depends_on(tmp_path):
    base = plan(tmp_path).key
    assert plan(tmp_path).key == base and plan(tmp_path).key.digest == base.digest  # same inputs, same folder
    assert base.model_sha256 == trt.sha256_bytes(runtime_bytes(MODEL_DIR / "yolox_nano.onnx"))
    others = [plan(tmp_path, path=MODEL_DIR / "picodet_s_320_coco.onnx").key,  # another model (sha256)
              plan(tmp_path, "fp16").key,  # precision
              plan(tmp_path, gpu="NVIDIA L4").key,  # GPU
              plan(tmp_path, trt_version="tensorrt 10.4.0").key]  # TensorRT version
    digests = {base.digest, *(k.digest for k in others)}
    assert len(digests) == 5
    assert len({plan(tmp_path, gpu=g).folder for g in (H100, "NVIDIA L4")}) == 2


def test_key_changes_with_the_shape_profile(tmp_path, dynb_path):
    wide = plan(tmp_path, path=dynb_path).key
    narrow = plan(tmp_path, path=dynb_path, batch=(1, 4, 8)).key
    assert wide.profile != narrow.profile and wide.digest != narrow.digest
    assert EngineKey(**{**wide.__dict__}).digest == wide.digest


def test_profile_from_a_real_dynamic_batch_variant(tmp_path, dynb_path):
    (name, shape), = inputs_of(dynb_path)
    assert not isinstance(shape[0], int) and shape[1:] == [3, 416, 416]
    p = plan(tmp_path, path=dynb_path)
    assert p.options["trt_profile_min_shapes"] == f"{name}:1x3x416x416"
    assert p.options["trt_profile_opt_shapes"] == f"{name}:8x3x416x416"
    assert p.options["trt_profile_max_shapes"] == f"{name}:32x3x416x416"
    assert "static" not in p.key.profile


def test_a_static_model_needs_no_profile(tmp_path):
    p = plan(tmp_path)
    assert p.key.profile == "static" and not any(k.startswith("trt_profile") for k in p.options)


def test_profile_for_symbolic_height_and_width():
    profile = shape_profile([("images", ["batch", 3, "h", "w"])], batch=(1, 2, 4), side=(64, 320, 640))
    assert profile == ShapeProfile({"images": (1, 3, 64, 64)}, {"images": (2, 3, 320, 320)},
                                   {"images": (4, 3, 640, 640)})
    assert profile.options()["trt_profile_max_shapes"] == "images:4x3x640x640"


@pytest.mark.parametrize("inputs, batch, error", [
    ([("x", ["n", "c", 8, 8])], (1, 8, 32), UnsupportedModelError),  # symbolic channels
    ([("x", ["n", 16])], (1, 8, 32), UnsupportedModelError),  # not NCHW
    ([("x", ["n", 3, 8, 8])], (4, 2, 8), UsageError),  # opt below min
])
def test_profiles_spotdet_cannot_guess_are_refused(inputs, batch, error):
    with pytest.raises(error):
        shape_profile(inputs, batch=batch)


class FakeNvml:
    """Stands in for NVML (no GPU here): two GPUs by name."""

    names = ["NVIDIA L4", "NVIDIA A10G"]
    count = 2

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_gpu_name_from_nvml_by_index(monkeypatch):
    import spotdet.cost.utilization.nvml as nvml

    monkeypatch.setattr(nvml, "Nvml", FakeNvml)
    assert trt.gpu_name(1) == "NVIDIA A10G"
    assert trt.gpu_name(5) == trt.UNKNOWN_GPU


def test_gpu_name_without_nvml_is_unknown_with_a_warning(monkeypatch, caplog):
    import spotdet.cost.utilization.nvml as nvml

    def unavailable():
        raise nvml.NvmlUnavailable("NVML unavailable (no NVIDIA driver)")

    monkeypatch.setattr(nvml, "Nvml", unavailable)
    assert trt.gpu_name(0) == trt.UNKNOWN_GPU
    assert "without the GPU name" in caplog.text


def test_tensorrt_version_falls_back_to_onnxruntime_here():
    import onnxruntime as ort

    version = trt.tensorrt_version()
    assert version.startswith(("tensorrt ", "libnvinfer ", f"onnxruntime {ort.__version__}"))
    assert version == trt.tensorrt_version()  # stable: it is part of the key


def test_calibration_table_sits_beside_the_variant(tmp_path):
    assert trt.calibration_table_for(tmp_path / "m-int8.onnx") == tmp_path / "m-int8.trt-calibration.flatbuffers"
    key = replace(plan(tmp_path).key, precision="int8")
    assert key.folder(tmp_path).name.startswith("int8-")
