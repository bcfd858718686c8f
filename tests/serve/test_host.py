"""The model host: scale to zero (idle unload, reload on demand), warm windows in the service's time zone."""

import time
from datetime import datetime, timezone

import httpx
import pytest
from support.serve import class_names, jpeg_bytes, metric, post_image, start_server  # noqa: F401 (fixtures)

from spotdet.serve.config import ServeConfig
from spotdet.serve.host import ModelHost
from spotdet.serve.metrics import ServiceMetrics


def test_idle_unload_then_reload_on_demand(start_server, jpeg_bytes):
    server = start_server("--model", "fastestdet", "--idle-unload", "1")
    assert post_image(server.url, jpeg_bytes["chelsea"]).status_code == 200
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/models").json()["state"] != "cold":
        assert time.monotonic() < deadline, "model was not unloaded after 1 s idle"
        time.sleep(0.2)
    models = httpx.get(f"{server.url}/models").json()
    assert models["device"] is None and models["unload_count"] == 1
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_model_loaded") == 0 and metric(text, "spotdet_model_unloads_total") == 1
    assert httpx.get(f"{server.url}/readyz").status_code == 200  # cold is still ready: it loads on demand
    r = post_image(server.url, jpeg_bytes["chelsea"])
    assert r.status_code == 200 and "cat" in class_names(r.json())
    models = httpx.get(f"{server.url}/models").json()
    assert models["load_count"] == 2 and models["last_cold_start_s"] > 0
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "spotdet_model_cold_start_seconds_count") == 2
    assert metric(text, "spotdet_model_loaded") == 1


def test_warm_window_loads_and_keeps_the_model(start_server, jpeg_bytes):
    # A window covering the whole week: the lazy server loads without any request and never unloads.
    server = start_server("--model", "fastestdet", "--lazy", "--idle-unload", "0.5",
                          "--warm-window", "mon-sun 00:00-24:00")
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/models").json()["state"] != "warm":
        assert time.monotonic() < deadline, "warm window did not load the model"
        time.sleep(0.2)
    time.sleep(1.5)
    models = httpx.get(f"{server.url}/models").json()
    assert models["state"] == "warm" and models["unload_count"] == 0 and models["in_warm_window"] is True


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_window_policy_with_an_injected_clock():
    clock = FakeClock(datetime(2026, 11, 23, 8, 59))  # a Monday, one minute before the window
    config = ServeConfig(model="fastestdet", warm_windows=["mon-fri 09:00-18:00"], idle_unload_s=0.05,
                         clock=clock)
    host = ModelHost(config, ServiceMetrics())
    assert host.state == "cold" and host.tick() is None and not host.in_warm_window()
    clock.now = datetime(2026, 11, 23, 9, 0)
    assert host.tick() == "load (warm window)" and host.state == "warm"
    time.sleep(0.1)
    assert host.tick() is None and host.state == "warm"  # idle, but inside the window
    clock.now = datetime(2026, 11, 23, 18, 0)  # window over
    assert host.tick() == "unload" and host.state == "cold"
    clock.now = datetime(2026, 11, 28, 10, 0)  # Saturday: stays cold
    assert host.tick() is None and host.state == "cold"
    host.detector()  # a request on Saturday loads it on demand...
    host.acquire()
    time.sleep(0.1)
    assert host.tick() is None  # ...and a request in flight is never unloaded under it
    host.release()
    time.sleep(0.1)
    assert host.tick() == "unload"


@pytest.mark.parametrize("utc, zone, inside", [
    # Monday 23 November 2026 (Paris is UTC+1, New York UTC-5, Tokyo UTC+9 in November).
    ("2026-11-23 08:30", "Europe/Paris", True),        # 09:30 in Paris, though 08:30 in UTC
    ("2026-11-23 08:30", "UTC", False),
    ("2026-11-23 17:30", "Europe/Paris", False),       # 18:30 in Paris: the window is over
    ("2026-11-23 17:30", "UTC", True),
    ("2026-11-23 14:30", "America/New_York", True),    # 09:30 in New York
    ("2026-11-23 02:00", "America/New_York", False),   # Sunday 21:00 in New York
    ("2026-11-23 00:30", "Asia/Tokyo", True),          # 09:30 Monday in Tokyo
])
def test_warm_windows_are_read_in_the_given_time_zone(utc, zone, inside):
    instant = datetime.fromisoformat(utc).replace(tzinfo=timezone.utc)
    config = ServeConfig(model="fastestdet", warm_windows=["mon-fri 09:00-18:00"], timezone=zone,
                         clock=lambda: instant)
    host = ModelHost(config, ServiceMetrics())
    assert host.in_warm_window() is inside
    assert host.tick() == ("load (warm window)" if inside else None)
    assert host.state == ("warm" if inside else "cold")
    assert host.status()["in_warm_window"] is inside


def test_status_is_what_models_answers():
    from spotdet.options import DetectOptions

    config = ServeConfig(model="fastestdet", options=DetectOptions(conf=0.4, classes=("cat",)))
    host = ModelHost(config, ServiceMetrics())
    status = host.status()
    assert status["model"] == "fastestdet" and status["state"] == "cold" and status["device"] is None
    assert status["options"]["conf"] == 0.4 and status["options"]["classes"] == ["cat"]
    host.detector()
    assert host.status()["state"] == "warm" and host.status()["load_count"] == 1


def test_an_unknown_default_class_fails_at_start_even_when_lazy():
    from spotdet.errors import UsageError
    from spotdet.options import DetectOptions

    with pytest.raises(UsageError, match="unknown class 'unicorn'"):
        ModelHost(ServeConfig(model="fastestdet", preload=False, options=DetectOptions(classes=("unicorn",))),
                  ServiceMetrics())
