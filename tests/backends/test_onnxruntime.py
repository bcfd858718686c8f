import onnx
import onnxruntime as ort
import pytest

from spotdet import Detector
from support.paths import MODEL_DIR

MODEL = "yolox-nano"
from spotdet.backends.onnx_tools import runtime_bytes
from spotdet.backends.onnxruntime import OrtBackend, choose_providers
from spotdet.errors import ProviderUnavailableError, UsageError

GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("available, device, expected", [
    (GPU, "auto", GPU),
    (GPU[1:], "auto", GPU[1:]),
    (["CPUExecutionProvider"], "auto", ["CPUExecutionProvider"]),
    (GPU, "cuda", GPU[1:]),
    (GPU, "cpu", ["CPUExecutionProvider"]),
    (GPU, "tensorrt", GPU),
])
def test_provider_chains(available, device, expected):
    assert choose_providers(device, available, tensorrt="libnvinfer 10.3.0") == expected


def test_tensorrt_provider_without_tensorrt_library_is_not_offered():
    """onnxruntime-gpu lists the TensorRT provider on any CUDA machine; without libnvinfer it must not be chosen
    (ONNX Runtime would print an error banner and retry on CUDA without spotdet's CUDA options)."""
    assert choose_providers("auto", GPU, tensorrt=None) == GPU[1:]
    assert choose_providers("cuda", GPU, tensorrt=None) == GPU[1:]
    with pytest.raises(ProviderUnavailableError, match="TensorRT itself"):
        choose_providers("tensorrt", GPU, tensorrt=None)


def test_gpu_request_without_gpu_is_a_clear_error():
    with pytest.raises(ProviderUnavailableError) as info:
        choose_providers("cuda", ["CPUExecutionProvider"])
    assert "onnxruntime-gpu" in str(info.value) and "device='cpu'" in str(info.value)
    with pytest.raises(UsageError, match="device must be one of"):
        choose_providers("tpu", ["CPUExecutionProvider"])


def test_auto_on_this_machine_uses_what_onnxruntime_offers():
    backend = OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="auto", threads=1)
    assert backend.provider == choose_providers("auto")[0]
    assert backend.provider in ort.get_available_providers()


def test_initializers_are_removed_from_graph_inputs():
    model = onnx.load_from_string(runtime_bytes(MODEL_DIR / "picodet_s_416_coco.onnx"))
    assert [i.name for i in model.graph.input] == ["image"]
    backend = OrtBackend(MODEL_DIR / "picodet_s_416_coco.onnx", device="cpu")
    assert [i.name for i in backend.session.get_inputs()] == ["image"]


def test_invalid_device():
    with pytest.raises(UsageError) as excinfo:
        Detector(MODEL, device="gpu0")
    assert not isinstance(excinfo.value, ProviderUnavailableError)
    message = str(excinfo.value)
    assert "'gpu0'" in message
    for device in ("auto", "cpu", "cuda", "tensorrt"):
        assert device in message


def test_cpu_device_works(photos):
    """Positive control for the device tests: device='cpu' loads and runs on CPU."""
    det = Detector(MODEL, device="cpu", backend="onnxruntime")
    assert det.provider == "CPUExecutionProvider"
    assert "cat" in [d["class_name"] for d in det(photos["chelsea"])[0].detections()]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="CUDA is available here, so device='cuda' is expected to work")
def test_cuda_device_unavailable():
    with pytest.raises(ProviderUnavailableError) as excinfo:
        Detector(MODEL, device="cuda")
    assert isinstance(excinfo.value, UsageError)
    message = str(excinfo.value)
    assert "CUDAExecutionProvider" in message
    assert "onnxruntime-gpu" in message  # how to get it
    assert "device='cpu'" in message  # and what to do instead


# -- provider options (no GPU here: the provider list is faked, the model and the CPU session underneath are real) --
import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import spotdet.backends.onnxruntime as ortb  # noqa: E402
import spotdet.backends.tensorrt as trt  # noqa: E402


class SessionOnFakeGpu:
    """A real CPU session that reports the providers it was asked for (stands in for the absent GPU)."""

    def __init__(self, session, names):
        self._session, self._names = session, names

    def get_providers(self):
        return self._names

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """A machine whose ONNX Runtime offers TensorRT and CUDA; returns the provider specs each session got."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU))
    monkeypatch.setattr(trt, "gpu_name", lambda device_id=0: f"Fake GPU {device_id}")
    monkeypatch.setattr(ortb, "tensorrt_runtime", lambda: "libnvinfer 10.3.0")
    monkeypatch.setenv("SPOTDET_CACHE_DIR", str(tmp_path / "cache"))
    real, seen = ortb.ort_session, []

    def session(model, providers=None, threads=None, log_level=3):
        seen.append(list(providers))
        names = [p if isinstance(p, str) else p[0] for p in providers]
        return SessionOnFakeGpu(real(model, ["CPUExecutionProvider"], threads, log_level), names)

    monkeypatch.setattr(ortb, "ort_session", session)
    return seen


def options_of(specs, provider):
    return next(opts for spec in specs if not isinstance(spec, str) for name, opts in [spec] if name == provider)


def symbolic_size_model(path):
    """A real (tiny) graph with symbolic batch, height and width."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4, "h8", "w8"])
    weight = numpy_helper.from_array(np.full((4, 3, 8, 8), 0.01, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["out"], strides=[8, 8])], "tiny", [x], [y],
                              [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_cuda_gets_its_options(fake_gpu):
    backend = OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="cuda")
    (specs,) = fake_gpu
    assert [s if isinstance(s, str) else s[0] for s in specs] == GPU[1:]
    assert options_of(specs, "CUDAExecutionProvider") == {
        "device_id": "0", "arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "EXHAUSTIVE",
        "do_copy_in_default_stream": "True"}
    assert backend.provider == "CUDAExecutionProvider" and backend.io_binding and backend.trt is None


def test_gpu_index_and_memory_limit_reach_every_gpu_provider(fake_gpu, monkeypatch):
    OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="tensorrt", gpu=1, gpu_mem_limit=2 << 30)
    monkeypatch.setenv(ortb.GPU_ENV, "2")  # what --gpu 2 exports
    OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="tensorrt")
    first, second = fake_gpu
    assert options_of(first, "TensorrtExecutionProvider")["device_id"] == "1"
    assert options_of(first, "CUDAExecutionProvider")["device_id"] == "1"
    assert options_of(first, "CUDAExecutionProvider")["gpu_mem_limit"] == str(2 << 30)
    assert options_of(second, "TensorrtExecutionProvider")["device_id"] == "2"
    assert "gpu_mem_limit" not in options_of(second, "CUDAExecutionProvider")
    monkeypatch.setenv(ortb.GPU_ENV, "first")
    with pytest.raises(UsageError, match="SPOTDET_GPU"):
        OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="cuda")


@pytest.mark.parametrize("precision, fp16, int8", [(None, "False", "False"), ("fp16", "True", "False")])
def test_tensorrt_precision_from_the_file_or_the_request(fake_gpu, precision, fp16, int8):
    backend = OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="tensorrt", precision=precision)
    opts = options_of(fake_gpu[0], "TensorrtExecutionProvider")
    assert (opts["trt_fp16_enable"], opts["trt_int8_enable"]) == (fp16, int8)
    assert backend.precision == (precision or "fp32")
    assert opts["trt_engine_cache_path"] == str(backend.trt.folder) and backend.trt.folder.is_dir()
    assert backend.trt.key.gpu == "Fake GPU 0"


def test_a_listed_gpu_provider_that_does_not_start_is_named_with_the_likely_cause(fake_gpu, monkeypatch, caplog):
    """onnxruntime-gpu without the CUDA/cuDNN libraries it loads: ONNX Runtime starts on the CPU instead."""
    real = ortb.ort_session

    def cpu_only(model, providers=None, threads=None, log_level=3):
        return real(model, ["CPUExecutionProvider"], threads, log_level)

    monkeypatch.setattr(ortb, "ort_session", cpu_only)
    with pytest.raises(ProviderUnavailableError, match="lists CUDAExecutionProvider but could not start it"):
        OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="cuda")
    backend = OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="auto")
    assert backend.provider == "CPUExecutionProvider"
    assert "could not start it" in caplog.text and "running on the CPU" in caplog.text


def test_a_dynamic_int8_file_on_a_gpu_says_to_use_its_float_version(fake_gpu, caplog):
    """Measured on an H100: the zoo's int8-dynamic files run ~10x slower than the float models on CUDA."""
    OrtBackend(MODEL_DIR / "yolov8n_int8.onnx", device="cuda")
    assert "no GPU kernel for its ConvInteger" in caplog.text and "--precision fp32" in caplog.text
    caplog.clear()
    OrtBackend(MODEL_DIR / "yolov8n_int8.onnx", device="cpu")
    OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="cuda")
    assert "ConvInteger" not in caplog.text


def test_a_calibration_table_beside_an_fp32_file_makes_it_int8_on_tensorrt(fake_gpu, tmp_path):
    import shutil

    from spotdet.optimize.trt_calibration import write_table

    path = tmp_path / "yolox_nano-int8.onnx"
    shutil.copyfile(MODEL_DIR / "yolox_nano.onnx", path)
    table = write_table({"images": 255.0}, trt.calibration_table_for(path))
    backend = OrtBackend(path, device="tensorrt")
    opts = options_of(fake_gpu[0], "TensorrtExecutionProvider")
    assert backend.precision == "int8" and opts["trt_int8_enable"] == "True"
    assert opts["trt_int8_calibration_table_name"] == str(table.resolve())
    assert backend.trt.key.calibration_sha256 == trt.sha256_bytes(table.read_bytes())


def test_variable_size_model_gets_heuristic_search_and_a_profile(fake_gpu, tmp_path):
    OrtBackend(symbolic_size_model(tmp_path / "tiny.onnx"), device="tensorrt", side=(64, 320, 640))
    specs = fake_gpu[0]
    assert options_of(specs, "CUDAExecutionProvider")["cudnn_conv_algo_search"] == "HEURISTIC"
    opts = options_of(specs, "TensorrtExecutionProvider")
    assert opts["trt_profile_min_shapes"] == "images:1x3x64x64"
    assert opts["trt_profile_max_shapes"] == "images:32x3x640x640"


def test_cpu_gets_no_gpu_options(fake_gpu):
    backend = OrtBackend(MODEL_DIR / "yolox_nano.onnx", device="cpu")
    assert fake_gpu == [["CPUExecutionProvider"]] and not backend.io_binding


def test_bad_memory_limit():
    with pytest.raises(UsageError, match="gpu_mem_limit"):
        ortb.cuda_options(mem_limit_bytes=0)


# -- I/O binding (runs on the CPU provider too: same path, device "cpu") --------------------------------------------
@pytest.mark.parametrize("model, batch", [("yolox_nano.onnx", 1), ("picodet_s_416_coco.onnx", 1)])
def test_io_binding_gives_the_outputs_of_run(photos, model, batch):
    from spotdet.models.card import get_card
    from spotdet.vision.preprocess import preprocess

    name = {"yolox_nano.onnx": "yolox-nano", "picodet_s_416_coco.onnx": "picodet-s-416"}[model]
    card = get_card(name)
    tensor = preprocess(photos["chelsea"], tuple(card.input_size), card.preprocess)[0]
    plain = OrtBackend(MODEL_DIR / model, device="cpu", threads=1, io_binding=False)
    bound = OrtBackend(MODEL_DIR / model, device="cpu", threads=1, io_binding=True)
    expected, got = plain.run(tensor), bound.run(tensor)
    assert len(got) == len(expected) == len(plain.output_names)
    for a, b in zip(got, expected):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_detector_finds_the_cat_through_io_binding(photos):
    det = Detector(MODEL, device="cpu", backend="onnxruntime")
    det.backend.io_binding = True
    assert "cat" in [d["class_name"] for d in det(photos["chelsea"])[0].detections()]


# -- on a real GPU only -------------------------------------------------------------------------------------------
def wide_dynamic_model(path):
    """Symbolic batch and size, Ultralytics output layout, and a 256-channel full-resolution activation: at
    1024x1024 one image needs 1 GiB for it, so a 512 MiB arena cannot hold it and 576x576 fits."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 84, "n"])
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, (256, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.02, (84, 256, 8, 8)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([0, 84, -1], np.int64), "shape"),
             numpy_helper.from_array(np.array([[[64.0]] * 4 + [[1.0]] * 80], np.float32), "scale")]
    nodes = [helper.make_node("Conv", ["images", "w1"], ["wide"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["wide", "w2"], ["conv"], strides=[8, 8]),
             helper.make_node("Sigmoid", ["conv"], ["sig"]),
             helper.make_node("Reshape", ["sig", "shape"], ["flat"]),
             helper.make_node("Mul", ["flat", "scale"], ["output0"])]
    graph = helper.make_graph(nodes, "wide", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


@pytest.mark.gpu
def test_real_gpu_allocation_failure_splits_the_batch_then_shrinks_the_input(tmp_path):
    from spotdet.models.card import ModelCard, PreprocessSpec

    path = wide_dynamic_model(tmp_path / "wide.onnx")
    card = ModelCard(name="wide", family="ultralytics", file=str(path), input_size=(1024, 1024),
                     names=tuple(f"c{i}" for i in range(80)),
                     preprocess=PreprocessSpec("letterbox", "center", 114, "rgb", (0, 0, 0), (255, 255, 255)),
                     decoder={"stride": 32})
    det = Detector(card, device="cpu", conf=0.5)
    det.backend = OrtBackend(path, device="cuda", gpu_mem_limit=512 << 20)  # Detector takes no memory limit
    rng = np.random.default_rng(1)
    prepared = [det.prepare(rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)) for _ in range(4)]
    results = det.infer(prepared, det.options)
    assert len(results) == 4
    for r in results:
        assert r.notes[0] == "out of memory at batch 4: split into 2+2"
        assert any(n.startswith("out of memory at 1024x1024: retried at") for n in r.notes)
        assert r.batch_size == 1 and r.input_size[0] < 1024 and r.orig_shape == (1024, 1024)


@pytest.mark.parametrize("message, oom", [
    # the CUDA arena at its gpu_mem_limit (onnxruntime-gpu 1.31 on an H100)
    ("Non-zero status code returned while running Conv node. Status Message: bfc_arena.cc:360 "
     "BFCArena::AllocateRawInternal Available memory of 531337728 is smaller than requested bytes of 4294967296",
     True),
    ("CUDA failure 2: out of memory ; GPU=0", True),
    ("Non-zero status code returned while running Conv node: invalid input shape", False),
])
def test_allocation_failures_are_recognised_by_their_text(message, oom):
    from spotdet.backends.base import is_out_of_memory

    assert is_out_of_memory(RuntimeError(message)) is oom


def test_int8_runs_with_exact_sums_only_where_the_cpu_has_no_vnni(monkeypatch):
    """Without VNNI, ONNX Runtime's default u8 x s8 kernels saturate (docs/hardware.md): the precise mode is on
    there, and off where VNNI already sums exactly (it costs ~10% there)."""
    from spotdet.backends.onnxruntime import EXACT_INT8_ENV, PRECISE_INT8_KEY, session_options
    from spotdet.hardware import FEATURES_ENV

    monkeypatch.setenv(FEATURES_ENV, "avx2,fma")
    assert session_options().get_session_config_entry(PRECISE_INT8_KEY) == "1"
    monkeypatch.setenv(FEATURES_ENV, "avx2,avx512f,avx512_vnni")
    with pytest.raises(RuntimeError, match="does not have configuration"):  # never set
        session_options().get_session_config_entry(PRECISE_INT8_KEY)
    monkeypatch.setenv(EXACT_INT8_ENV, "on")  # asked for anyway
    assert session_options().get_session_config_entry(PRECISE_INT8_KEY) == "1"
    monkeypatch.setenv(FEATURES_ENV, "avx2,fma")
    monkeypatch.setenv(EXACT_INT8_ENV, "off")
    with pytest.raises(RuntimeError, match="does not have configuration"):
        session_options().get_session_config_entry(PRECISE_INT8_KEY)
    monkeypatch.setenv(EXACT_INT8_ENV, "sometimes")
    with pytest.raises(UsageError, match="auto, on or off"):
        session_options()
