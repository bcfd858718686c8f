"""``spotdet bench`` and ``spotdet recommend`` as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.bench import FIXTURE
from support.paths import MODEL_DIR
from spotdet.bench.report import load_report


def run(*args: str, cache, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    env.update(SPOTDET_CACHE_DIR=str(cache), SPOTDET_MODEL_DIR=str(MODEL_DIR), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "spotdet", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_bench_writes_table_json_chart_and_cache_then_recommend_uses_it(tmp_path):
    cache = tmp_path / "cache"
    out, chart = tmp_path / "b.json", tmp_path / "b.png"
    p = run("bench", "fastestdet", "--imgsz", "320,352", "--max-seconds", "1", "--instance", "aws-c7i.large",
            "--out", str(out), "--chart", str(chart), cache=cache)
    assert p.returncode == 0, p.stderr
    assert "skipped: fastestdet has a fixed" in p.stdout and "352x352" in p.stdout
    report = load_report(out)
    assert [r.status for r in report.rows] == ["skipped", "ok"]
    assert report.rows[1].usd_per_1000 > 0 and "aws-c7i.large" in report.price_source
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert list((cache / "bench").glob("*.json"))
    p = run("recommend", "--min-fps", "1", "--json", cache=cache)  # reuses the cached row, no new bench
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["best"]["model"] == "fastestdet"
    assert "measuring" not in p.stderr


def test_recommend_runs_the_bench_when_nothing_is_cached(tmp_path):
    p = run("recommend", "--model", "fastestdet", "--price-per-hour", "1", cache=tmp_path / "cache")
    assert p.returncode == 0, p.stderr
    assert "no bench results cached" in p.stderr and "recommended: fastestdet" in p.stdout


def test_recommend_on_results_file_no_fit(tmp_path):
    top = max(r.images_per_s for r in load_report(FIXTURE).rows if r.ok)
    p = run("recommend", "--results", str(FIXTURE), "--min-fps", str(top * 10), cache=tmp_path)
    assert p.returncode == 1
    assert "nothing fits; closest was" in p.stderr and "Traceback" not in p.stderr


def test_bench_usage_errors(tmp_path):
    for args, needle in [(["bench", "no-such-model"], "unknown model"), (["bench", "fastestdet", "--batch", "x"],
                                                                          "--batch"),
                         (["bench", "fastestdet", "--data", str(tmp_path)], "instances.json"),
                         (["recommend", "--results", str(tmp_path / "none.json")], "no such bench result")]:
        p = run(*args, cache=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        assert needle in p.stderr and "Traceback" not in p.stderr


def test_recommend_vram_and_backend_filters(tmp_path):
    p = run("recommend", "--results", str(FIXTURE), "--vram-gb", "16", cache=tmp_path)  # a CPU bench
    assert p.returncode == 1 and "GPU memory not measured" in p.stderr and "Traceback" not in p.stderr
    p = run("recommend", "--results", str(FIXTURE), "--backend", "onnxruntime", "--json", cache=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["best"]["backend"] == "onnxruntime"
    for backend, needle in [("openvino", "no measured bench rows on backend openvino"),
                            ("tpu", "backend must be one of")]:
        p = run("recommend", "--results", str(FIXTURE), "--backend", backend, cache=tmp_path)
        assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr
