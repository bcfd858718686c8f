"""backend="auto" decided by a timed probe on this machine: both runtimes measured side by side on the real
model, the decision cached per hardware fingerprint + model + threads, honoured by later loads, clearable."""

from __future__ import annotations

import json

import pytest

from spotdet import Detector
from spotdet.backends import probe
from spotdet.hardware import FEATURES_ENV

pytest.importorskip("openvino")


@pytest.fixture
def probing(monkeypatch):
    monkeypatch.setenv(probe.PROBE_ENV, "1")


def test_the_first_auto_load_measures_both_runtimes_and_keeps_the_winner(probing):
    det = Detector("fastestdet", threads=1)
    (entry,) = probe.load_cache().values()
    assert set(entry["ms"]) == {"onnxruntime", "openvino"} and all(v > 0 for v in entry["ms"].values())
    assert entry["chosen"] == probe.choose(entry["ms"]) == det.backend.name
    assert entry["model"] == "fastestdet.onnx" and entry["threads"] == 1 and len(entry["hardware"]) == 12
    assert "CPUs)" in entry["machine"]
    # the second load reads the cache: no second measurement
    again, loaded = probe.decide(det.model_path, threads=1)
    assert again.cached and loaded is None and again.ms == entry["ms"]


def test_a_cached_decision_is_what_auto_loads(probing):
    from spotdet.models.ref import resolve_model
    from spotdet.models.verify import file_sha256

    path = resolve_model("fastestdet").path
    fp = probe.fingerprint()
    for chosen in ("onnxruntime", "openvino"):
        key = probe.cache_key(file_sha256(path), None, fp["id"])
        probe._store(key, probe.ProbeResult(chosen, {"onnxruntime": 1.0, "openvino": 1.0}, path.name,
                                            file_sha256(path), None, fp["id"], "test"))
        assert Detector("fastestdet").backend.name == chosen
    assert Detector("fastestdet", backend="openvino").backend.name == "openvino"  # asked for: no probe


def test_other_hardware_is_another_key(probing, monkeypatch):
    monkeypatch.setenv(FEATURES_ENV, "avx2,fma,avx512f")
    Detector("fastestdet", threads=1)
    monkeypatch.setenv(FEATURES_ENV, "avx2,fma")  # the fingerprint changes with the CPU's features
    Detector("fastestdet", threads=1)
    assert len(probe.load_cache()) == 2
    assert probe.clear_cache() == 2 and probe.load_cache() == {}


def test_quantized_files_and_disabled_probe_do_not_probe(monkeypatch):
    Detector("yolov8n-int8")  # stays on ONNX Runtime, nothing to decide
    Detector("fastestdet")  # SPOTDET_BACKEND_PROBE=0 (conftest): the fixed rule
    assert probe.load_cache() == {} and not probe.cache_path().exists()


@pytest.mark.parametrize("ms, chosen", [
    ({"onnxruntime": 10.0, "openvino": 9.0}, "openvino"),
    ({"onnxruntime": 10.0, "openvino": 9.6}, "onnxruntime"),  # under 5% faster: not worth a second runtime
    ({"onnxruntime": 10.0, "openvino": 12.0}, "onnxruntime")])
def test_openvino_is_kept_only_where_it_pays(ms, chosen):
    assert probe.choose(ms) == chosen


def test_an_unreadable_cache_counts_as_empty(probing):
    probe.cache_path().parent.mkdir(parents=True, exist_ok=True)
    probe.cache_path().write_text("{not json")
    assert probe.load_cache() == {}
    Detector("fastestdet", threads=1)
    assert len(json.loads(probe.cache_path().read_text())) == 1


def test_processes_loading_together_measure_once_and_agree(probing, tmp_path):
    """Four processes (as a batch job's workers) load the same model at once: one probe, one answer."""
    import os
    import subprocess
    import sys

    code = ("from spotdet import Detector\nprint(Detector('fastestdet', threads=1).backend.name)\n")
    env = {**os.environ, probe.PROBE_ENV: "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    names = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert len(names) == 1 and len(probe.load_cache()) == 1
    assert names == {next(iter(probe.load_cache().values()))["chosen"]}
