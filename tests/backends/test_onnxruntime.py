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
    assert choose_providers(device, available) == expected


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
