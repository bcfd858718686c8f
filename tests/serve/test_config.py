"""ServeConfig: validation of every flag, the default detection options, the clock in the service's zone."""

import os
from datetime import datetime, timezone

import pytest
from support.batch import cli_env, one_line_error, run_spotdet

from spotdet.errors import UsageError
from spotdet.options import DEFAULT_CONF, DetectOptions
from spotdet.serve.config import API_KEY_ENV, ServeConfig


@pytest.mark.parametrize("field, value, message", [
    ("max_batch", 0, "--max-batch"), ("max_wait_ms", -1, "--max-wait-ms"), ("queue_size", 0, "--queue-size"),
    ("model_workers", 0, "--model-workers"), ("request_timeout_s", 0, "--timeout"),
    ("idle_unload_s", 0, "--idle-unload"), ("price_per_hour", -1, "--price-per-hour"),
    ("max_upload_mb", 0, "--max-upload-mb"), ("max_pixels", 0, "--max-pixels"), ("port", 70000, "--port"),
    ("timezone", "Mars/Olympus", "unknown time zone"), ("max_request_mb", 0, "--max-request-mb"),
    ("max_inflight_mb", 100, r"--max-inflight-mb \(100\) must be at least --max-request-mb \(256\)"),
    ("max_connections", 0, "--max-connections"), ("header_timeout_s", 0, "--header-timeout"),
    ("body_timeout_s", 0, "--body-timeout"),
])
def test_bad_values_are_usage_errors_naming_the_flag(field, value, message):
    with pytest.raises(UsageError, match=message):
        ServeConfig(model="fastestdet", **{field: value})


def test_detection_defaults_are_one_detect_options():
    assert ServeConfig(model="m").options == DetectOptions() and DetectOptions().conf == DEFAULT_CONF
    options = DetectOptions.create(conf=0.5, classes="person,2")
    assert ServeConfig(model="m", options=options).options.classes == ("person", 2)


def test_api_key_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert ServeConfig(model="m").api_key == "from-env"
    assert ServeConfig(model="m", api_key="given").api_key == "given"
    monkeypatch.delenv(API_KEY_ENV)
    assert ServeConfig(model="m").api_key is None


@pytest.mark.parametrize("given, env", [("", None), ("   ", None), (None, ""), (None, " \t")],
                         ids=["flag-empty", "flag-blank", "env-empty", "env-blank"])
def test_an_empty_api_key_is_refused_not_taken_as_no_auth(monkeypatch, given, env):
    """An empty key used to switch authentication off while the command line asked for a key."""
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    if env is not None:
        monkeypatch.setenv(API_KEY_ENV, env)
    with pytest.raises(UsageError, match="would disable authentication") as refused:
        ServeConfig(model="m", api_key=given)
    assert "leave out --api-key" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("args, env", [(["--api-key", ""], {}), ([], {API_KEY_ENV: " "})],
                         ids=["flag", "env"])
def test_serve_refuses_an_empty_api_key_with_a_usage_error(tmp_path, args, env):
    proc = run_spotdet({**cli_env(tmp_path), **env}, "serve", "--model", "fastestdet", "--lazy", *args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert "empty" in line and "disable authentication" in line and "leave out --api-key" in line


def test_now_is_the_clock_read_in_the_service_zone():
    instant = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    paris = ServeConfig(model="m", timezone="Europe/Paris", clock=lambda: instant).now()
    assert (paris.hour, paris.utcoffset().total_seconds()) == (14, 7200) and paris == instant  # summer time
    naive = datetime(2026, 7, 1, 9, 0)  # a naive reading is already wall-clock time in the zone
    assert ServeConfig(model="m", timezone="Asia/Tokyo", clock=lambda: naive).now() == naive
    assert ServeConfig(model="m", timezone="Asia/Tokyo").now().utcoffset().total_seconds() == 9 * 3600
    assert ServeConfig(model="m").now().tzinfo is not None  # the machine's zone


def test_service_runtime_and_plan_per_backend():
    import pytest as _pytest

    from spotdet.serve.config import ServeConfig

    assert ServeConfig("yolox-nano").runtime() == "onnxruntime"  # auto: the model-workers plan is tuned for it
    cores = os.cpu_count() or 1
    assert ServeConfig("yolox-nano", device="cpu").execution_plan() == (cores, 1)  # single-threaded runs, one a core
    assert ServeConfig("yolox-nano", precision="bf16").runtime() == "openvino"
    _pytest.importorskip("openvino")
    assert ServeConfig("yolox-nano", backend="openvino").runtime() == "openvino"
    assert ServeConfig("yolox-nano", backend="openvino").execution_plan() == (1, None)  # one run at a time
    assert ServeConfig("yolox-nano", backend="openvino", model_workers=3).execution_plan() == (3, None)


def test_a_gpu_service_runs_four_groups_at_once(monkeypatch):
    """Measured on an H100 (docs/gpu.md): 4 model workers served 1.22x what 2 did. The GPU is absent here: ONNX
    Runtime is made to list the CUDA provider, which is all the plan reads."""
    import onnxruntime as ort

    from spotdet.serve.config import GPU_MODEL_WORKERS, ServeConfig

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert ServeConfig("yolox-nano").execution_plan() == (GPU_MODEL_WORKERS, None) == (4, None)
    assert ServeConfig("yolox-nano", model_workers=2).execution_plan() == (2, None)
