"""`spotdet serve --ray`: the real command on a local Ray head, replicas going 0 -> 1 -> 0, and the pieces
(autoscaling settings, cold-start accounting, config checks) without Ray."""

from __future__ import annotations

import signal
import sqlite3
import time

import httpx
import psutil
import pytest
from support.serve import class_names, jpeg_bytes, metric, post_image, start_server  # noqa: F401 (fixtures)

from spotdet.errors import UsageError
from spotdet.serve.config import ServeConfig

MODEL_REPLICA = "ServeReplica:spotdet:spotdet-model"


@pytest.fixture()
def ray_app():
    pytest.importorskip("ray.serve", reason="needs Ray Serve (pip install 'ray[serve]')")
    from spotdet.serve import ray_app

    return ray_app


def test_plain_server_counts_its_uptime_as_reserved_cost(jpeg_bytes):
    """The single-process server too: the process's uptime (from its start) is paid for, loaded or not,
    so reserved cost = price x uptime >= busy cost, and /models shows both with the idle share."""
    from support.serve import served

    config = ServeConfig(model="yolox-nano", price_per_hour=3.6, idle_unload_s=0.3)
    with served(config) as (client, service):
        r = client.post("/predict", files={"image": ("c.jpg", jpeg_bytes["chelsea"], "image/jpeg")})
        assert r.status_code == 200
        time.sleep(0.8)  # the model unloads when idle; the uptime counts on
        cost = client.get("/models").json()["cost"]
        text = client.get("/metrics").text
    assert service.host.state == "cold"
    assert cost["uptime_s"] > 0.8 and cost["busy_s"] > 0 and cost["idle_share"] > 0
    assert cost["reserved_usd"] == pytest.approx(3.6 * cost["uptime_s"] / 3600)
    uptime = metric(text, "spotdet_uptime_seconds_total")
    assert uptime >= cost["uptime_s"] and metric(text, "spotdet_reserved_cost_dollars_total") == \
        pytest.approx(3.6 * uptime / 3600)
    assert metric(text, "spotdet_reserved_cost_dollars_total") > metric(text, "spotdet_cost_dollars_total")


def _models(url: str) -> dict:
    return httpx.get(f"{url}/models", timeout=10).json()


def _wait_for(url: str, predicate, limit_s: float) -> dict:
    deadline = time.monotonic() + limit_s
    while True:
        body = _models(url)
        if predicate(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.25)


def _tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _replica_processes(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and MODEL_REPLICA in " ".join(p.cmdline()):
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_serve_ray_scales_from_zero_to_one_and_back(ray_app, start_server, jpeg_bytes, tmp_path):
    """The real command: no replica at start (--lazy), a request starts one (a measured cold start), idle
    ends its process, bad input is refused by the ingress without waking one, SIGTERM leaves nothing; the
    machine's utilization went to --monitor-db all along."""
    db = tmp_path / "util.sqlite"
    server = start_server("--ray", "--model", "yolox-nano", "--min-replicas", "0", "--max-replicas", "1",
                          "--idle-unload", "1", "--lazy", "--price-per-hour", "3.6", "--max-upload-mb", "1",
                          "--monitor-db", str(db))
    url = server.url
    before = _wait_for(url, lambda b: b.get("deployment_status") not in (None, "UNKNOWN"), 30)
    assert before["engine"] == "ray" and before["replicas"] == 0 and before["min_replicas"] == 0

    bad = httpx.post(f"{url}/predict", params={"classes": "unicorn"},
                     files={"image": ("c.jpg", jpeg_bytes["chelsea"], "image/jpeg")}, timeout=30)
    assert bad.status_code == 400 and "unknown class 'unicorn'" in bad.json()["error"]
    junk = httpx.post(f"{url}/predict", files={"image": ("x.jpg", b"not an image", "image/jpeg")}, timeout=30)
    assert junk.status_code == 400 and junk.json()["status"] == 400
    assert _models(url)["replicas_target"] == 0  # refused in the ingress: no replica was started

    r = post_image(url, jpeg_bytes["chelsea"])
    assert r.status_code == 200, r.text
    assert "cat" in class_names(r.json()) and r.json()["cost_usd"] > 0
    warm = _models(url)
    assert warm["load_count"] == 1 and warm["last_cold_start_s"] > warm["last_replica_load_s"] > 0
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert metric(text, "spotdet_model_cold_start_seconds_count") == 1
    assert metric(text, "spotdet_images_total") == 1
    replicas = _replica_processes(_tree(server.proc.pid))
    assert len(replicas) == 1  # one real replica process, a child of the Ray head this command started

    cold = _wait_for(url, lambda b: b["replicas"] == 0 and b["replicas_target"] == 0, 40)
    assert cold["replicas"] == 0 and cold["unload_count"] >= 1
    psutil.wait_procs(replicas, timeout=10)
    assert not _replica_processes(replicas)  # the process ended: its memory went back to the machine
    cost = cold["cost"]
    assert cost["uptime_s"] > cost["busy_s"] > 0 and 0 < cost["idle_share"] < 1
    assert cost["reserved_usd"] == pytest.approx(3.6 * cost["uptime_s"] / 3600)

    ray_procs = _tree(server.proc.pid)
    assert server.stop(signal.SIGTERM, timeout=40) == 0
    gone, alive = psutil.wait_procs(ray_procs, timeout=15)
    assert not alive, [p.pid for p in alive]
    with sqlite3.connect(db) as conn:
        count, first, last, util = conn.execute(
            "SELECT COUNT(*), MIN(ts), MAX(ts), MAX(util_pct) FROM samples").fetchone()
    assert count >= 5 and last - first >= 4 and util > 0  # one a second while it served, the request's load in it


def test_autoscaling_maps_idle_unload_to_the_downscale_delay(ray_app):
    config = ServeConfig(model="yolox-nano", ray=True, idle_unload_s=30, max_replicas=4, max_batch=8)
    scaling = ray_app.autoscaling(config)
    assert scaling["min_replicas"] == 0 and scaling["max_replicas"] == 4  # --idle-unload: scale to zero
    assert scaling["downscale_delay_s"] == scaling["downscale_to_zero_delay_s"] == 30
    assert scaling["initial_replicas"] == 1 and scaling["target_ongoing_requests"] == 4
    lazy = ray_app.autoscaling(ServeConfig(model="yolox-nano", ray=True, min_replicas=0, preload=False))
    assert lazy["initial_replicas"] == 0 and "downscale_delay_s" not in lazy  # Ray's default then
    assert ray_app.autoscaling(ServeConfig(model="yolox-nano", ray=True))["min_replicas"] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"min_replicas": 0}, "need --ray"),
    ({"ray": True, "min_replicas": 3, "max_replicas": 2}, "must not exceed --max-replicas"),
    ({"ray": True, "warm_windows": ["mon-fri 09:00-18:00"]}, "--warm-window is not available with --ray"),
])
def test_config_refuses_replica_settings_that_cannot_work(kwargs, message):
    with pytest.raises(UsageError, match=message):
        ServeConfig(model="yolox-nano", **kwargs)


def _outcome(ray_app, replica: str, born: float, queue_ms: float = 1.0):
    from spotdet.serve.batcher import BatchOutcome

    return ray_app.ReplicaOutcome(BatchOutcome(None, queue_ms, 1, 0.01, 1e-6), replica, born, 0.2, True)


def test_a_request_sent_before_its_replica_was_born_records_the_cold_start(ray_app):
    from spotdet.serve.metrics import ServiceMetrics

    config = ServeConfig(model="yolox-nano", ray=True, min_replicas=0)
    metrics = ServiceMetrics()
    replicas = ray_app.ReplicaSet(config, None, metrics)
    replicas.answered(_outcome(ray_app, "a", born=100.0), sent=98.0, answered=103.5)  # waited for "a" to start
    replicas.answered(_outcome(ray_app, "a", born=100.0), sent=104.0, answered=104.1)  # warm: counted once
    replicas.answered(_outcome(ray_app, "b", born=50.0), sent=104.0, answered=104.2)  # already up: no cold start
    assert replicas.load_count == 2 and replicas.last_cold_start_s == pytest.approx(5.5)
    assert metrics.total("spotdet_model_cold_start_seconds_count") == 1
    assert metrics.total("spotdet_model_cold_start_seconds_sum") == pytest.approx(5.5)


def test_replica_states_drive_the_gauges_and_unload_count(ray_app):
    from spotdet.serve.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    replicas = ray_app.ReplicaSet(ServeConfig(model="yolox-nano", ray=True), None, metrics)
    replicas.observe({"RUNNING": 2, "STARTING": 1}, "UPSCALING", "")
    assert (replicas.running, replicas.target, replicas.held) == (2, 3, 3)
    replicas.observe({"STOPPING": 2}, "DOWNSCALING", "")
    assert (replicas.running, replicas.target, replicas.held, replicas.unload_count) == (0, 0, 2, 2)
    assert metrics.registry.get_sample_value("spotdet_replicas", {"state": "running"}) == 0
