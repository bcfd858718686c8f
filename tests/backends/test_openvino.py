"""The OpenVINO backend on the real zoo files: fp32 agrees with ONNX Runtime, bf16 still finds the cat and
keeps its stem convolutions in f32, a batch for a batch-1 file runs image by image over the streams.

Needs the ``openvino`` extra (CI installs it); without it this module is skipped, and
tests/backends/test_selection.py checks the "not installed" message instead.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("openvino")

from spotdet import Detector  # noqa: E402
from spotdet.backends.onnxruntime import OrtBackend  # noqa: E402
from spotdet.backends.openvino import (  # noqa: E402
    BF16_F32_STEM,
    OpenVinoBackend,
    cache_dir,
    conv_precisions,
    stem_convolutions,
)
from spotdet.errors import UsageError  # noqa: E402
from spotdet.models.ref import resolve_model  # noqa: E402
from support.cpu import needs_native_bf16  # noqa: E402
from support.paths import ZOO_MODELS  # noqa: E402

FLOAT_MODELS = ["fastestdet", "yolox-nano", "picodet-s-320", "picodet-s-416"]


def _input(ref, seed=0) -> np.ndarray:
    h, w = ref.card.input_size
    scale = 1.0 if ref.card.preprocess.std[0] == 1.0 else 1.0 / 255.0  # the range each family is fed
    return (np.random.default_rng(seed).random((1, 3, h, w), dtype=np.float32) * 255.0 * scale).astype(np.float32)


@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_fp32_outputs_agree_with_onnxruntime(name):
    ref = resolve_model(name)
    x = _input(ref)
    expected = OrtBackend(ref.path, device="cpu", threads=1).run(x)
    got = OpenVinoBackend(ref.path, threads=1).run(x)
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(e).max())))


@pytest.mark.parametrize("name", [m for m in ZOO_MODELS if m not in FLOAT_MODELS])
def test_dynamic_int8_files_load_and_find_the_cat(name, photos):
    """OpenVINO runs the ConvInteger exports too (its own dynamic-quantization kernels: close, not identical)."""
    det = Detector(name, backend="openvino")
    assert det.backend.name == "openvino"
    assert "cat" in [d["class_name"] for d in det(photos["chelsea"])[0].detections()]


@needs_native_bf16
def test_bf16_detects_like_fp32(photos):
    fp32 = Detector("yolox-nano", backend="openvino")(photos["chelsea"])[0]
    bf16 = Detector("yolox-nano", precision="bf16")(photos["chelsea"])[0]
    assert bf16.model == "yolox-nano"
    assert [d["class_name"] for d in bf16.detections()][:1] == [d["class_name"] for d in fp32.detections()][:1] == ["cat"]
    np.testing.assert_allclose(bf16.boxes.xyxy[0], fp32.boxes.xyxy[0], atol=6.0)  # pixels, on a 451x300 photo


@needs_native_bf16
@pytest.mark.parametrize("name", ["yolox-nano", "picodet-s-416"])
def test_bf16_keeps_the_stem_convolutions_in_f32(name):
    """What the exec graph ran: the first convolutions in f32, the rest in bf16; without the mark (f32_stem=0)
    OpenVINO would have run those first convolutions in bf16 too, so the mark is what keeps them."""
    import openvino as ov

    ref = resolve_model(name)
    stem = stem_convolutions(ov.Core().read_model(str(ref.path)))
    assert len(stem) == BF16_F32_STEM
    mixed = conv_precisions(OpenVinoBackend(ref.path, precision="bf16", threads=1, cache=False).compiled)
    plain = conv_precisions(OpenVinoBackend(ref.path, precision="bf16", threads=1, cache=False, f32_stem=0).compiled)
    assert [mixed[n] for n in stem] == ["f32"] * len(stem)
    assert [plain[n] for n in stem] == ["bf16"] * len(stem)
    rest = {mixed[n] for n in mixed if n.endswith("/WithoutBiases") and n not in stem}
    assert rest == {"bf16"}  # every later convolution still runs in bf16: the speed stays


def test_marking_a_node_the_model_does_not_have_is_an_error():
    import openvino as ov

    from spotdet.backends.openvino import _keep_in_f32
    from spotdet.errors import UnsupportedModelError

    core = ov.Core()
    model = core.read_model(str(resolve_model("fastestdet").path))
    with pytest.raises(UnsupportedModelError, match="no layers named \\['no-such-conv'\\]"):
        _keep_in_f32(core, model, ["no-such-conv"])


def test_f32_stem_must_not_be_negative():
    with pytest.raises(UsageError, match="f32_stem must be >= 0"):
        OpenVinoBackend(resolve_model("fastestdet").path, precision="bf16", f32_stem=-1)


def test_a_batch_for_a_batch_1_file_runs_image_by_image_side_by_side():
    """The zoo files have batch 1; the backend takes a batch anyway (each image its own request on the
    throughput compile) and returns exactly what one-at-a-time runs return, in order."""
    ref = resolve_model("picodet-s-320")
    backend = OpenVinoBackend(ref.path, threads=2)
    assert backend.input_shape[0] == 1 and backend.split_batches  # the file's batch is still reported as is
    batch = np.concatenate([_input(ref, seed) for seed in range(5)])
    together = backend.run(batch)
    assert backend._streams is not None  # the batch went through the throughput compile
    for i in range(5):
        for out, alone in zip(together, backend.run(batch[i:i + 1])):
            np.testing.assert_allclose(out[i:i + 1], alone, rtol=1e-5, atol=1e-5)


def test_a_single_image_never_builds_the_throughput_compile():
    backend = OpenVinoBackend(resolve_model("fastestdet").path, threads=1)
    backend.run(np.zeros((1, 3, 352, 352), np.float32))
    assert backend._streams is None


def test_runs_from_several_threads_at_once():
    """The service runs batches on several threads against one backend: each thread gets its own request."""
    ref = resolve_model("yolox-nano")
    backend = OpenVinoBackend(ref.path, threads=1)
    inputs = [_input(ref, seed) for seed in range(4)]
    alone = [backend.run(x)[0] for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda x: backend.run(x)[0], inputs * 3))
    for k, out in enumerate(together):
        np.testing.assert_array_equal(out, alone[k % 4])


def test_compiled_models_are_cached_under_spotdet_home():
    ref = resolve_model("fastestdet")
    OpenVinoBackend(ref.path, threads=1)
    assert any(cache_dir().iterdir())  # the conftest gives every test an empty spotdet cache


RACE = """
import sys, threading, numpy as np
from spotdet.backends.openvino import OpenVinoBackend
backend = OpenVinoBackend(sys.argv[1], threads=1)
x = np.zeros((1, 3, 416, 416), np.float32)
start = threading.Barrier(40)
def work():
    start.wait()
    backend.run(x)
threads = [threading.Thread(target=work) for _ in range(40)]
[t.start() for t in threads]
[t.join() for t in threads]
print("done")
"""


def test_forty_threads_racing_into_the_first_run_do_not_deadlock(tmp_path):
    """pyopenvino deadlocked about one start in four when 40 threads made their first run at once (a serving
    thread pool under load); the backend now touches the racy static once while it is being built."""
    import os
    import subprocess
    import sys

    ref = resolve_model("yolox-nano")
    for attempt in range(3):  # fresh processes: the race is only at a process's first runs
        env = {**os.environ, "SPOTDET_CACHE_DIR": str(tmp_path / f"c{attempt}")}
        out = subprocess.run([sys.executable, "-c", RACE, str(ref.path)], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.stdout.strip() == "done", out.stderr[-2000:]


def test_detector_streams_batches_through_the_split_and_gets_the_same_boxes(val_images):
    """``Detector.stream`` hands an OpenVINO batch-1 model batches of 8 (``takes_batches``), which the backend
    splits over its streams; the detections are those of one image at a time. The service batcher still waits
    only for dynamic-batch models (``dynamic_batch`` stays False)."""
    from spotdet import Detector

    split = Detector("picodet-s-320", backend="openvino", threads=2)
    assert split.takes_batches and not split.dynamic_batch
    single = Detector("picodet-s-320", backend="openvino", threads=2)
    single.backend.split_batches = False
    assert not single.takes_batches
    paths = [str(p) for p in val_images[:10]]
    together, alone = list(split.stream(paths)), list(single.stream(paths))
    assert [r.batch_size for r in together] == [8] * 8 + [2] * 2 and {r.batch_size for r in alone} == {1}
    for a, b in zip(together, alone):
        assert a.path == b.path and len(a.boxes) == len(b.boxes)
        np.testing.assert_allclose(a.boxes.xyxy, b.boxes.xyxy, atol=1e-2)
        np.testing.assert_allclose(a.boxes.conf, b.boxes.conf, atol=1e-4)
