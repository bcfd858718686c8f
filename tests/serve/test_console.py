"""The console's server side: ``GET /stats`` from the service's real metrics, the page and its files, the key.

The browser end of it is in test_console_browser.py.
"""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import pytest
from support.serve import jpeg_bytes, served  # noqa: F401 (fixture)

from spotdet.serve.config import ServeConfig
from spotdet.serve.console import WEB_DIR, Console, _batch_sizes, quantile
from spotdet.serve.service import DetectionService

INF = math.inf


def test_quantile_interpolates_inside_the_bucket_like_prometheus():
    buckets = ((0.1, 5.0), (0.2, 10.0), (INF, 10.0))
    assert quantile(0.5, buckets) == pytest.approx(0.1)  # rank 5: the top of the first bucket
    assert quantile(0.75, buckets) == pytest.approx(0.15)  # rank 7.5: half-way through the second
    assert quantile(0.2, buckets) == pytest.approx(0.04)  # the first bucket starts at 0
    assert quantile(0.99, ((0.1, 1.0), (INF, 4.0))) == pytest.approx(0.1)  # in +Inf: the highest finite bound
    assert quantile(0.5, ((0.1, 0.0), (INF, 0.0))) is None and quantile(0.5, ()) is None


def test_batch_sizes_per_range_and_nothing_above_max_batch():
    cumulative = ((1.0, 3.0), (2.0, 5.0), (4.0, 9.0), (8.0, 9.0), (16.0, 9.0), (32.0, 9.0), (INF, 9.0))
    assert _batch_sizes(cumulative, max_batch=8) == [
        {"sizes": "1", "count": 3.0}, {"sizes": "2", "count": 2.0}, {"sizes": "3-4", "count": 4.0},
        {"sizes": "5-8", "count": 0.0}]
    assert [b["sizes"] for b in _batch_sizes(cumulative, max_batch=64)][-3:] == ["9-16", "17-32", ">32"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rates_percentiles_and_costs_from_the_real_metrics():
    """Known counts in the service's own prometheus objects, a known clock: the exact rates and costs out."""
    service = DetectionService(ServeConfig(model="yolox-nano", preload=False, price_per_hour=3.6))
    clock = FakeClock()
    console = Console(service, clock)
    m = service.metrics
    first = console.stats()
    assert first["totals"]["requests"] == 0 and first["now"]["rps"] is None  # one sample: no rate yet
    assert first["model"]["state"] == "cold" and first["cold_starts"]["count"] == 0

    clock.now += 4.0
    m.requests.labels("/predict", "200").inc(8)
    m.requests.labels("/predict/batch", "200").inc(2)
    m.requests.labels("/predict", "400").inc(1)
    m.requests.labels("/stats", "200").inc(50)  # the dashboard's own polls are not detection requests
    for _ in range(10):
        m.latency.labels("/predict").observe(0.03)  # all in (0.025, 0.05]
    m.latency.labels("/stats").observe(9.0)  # nor is their latency
    m.images.inc(16)
    m.busy.inc(2.0)
    m.cost.inc(3.6 * 2.0 / 3600)
    m.batch_size.observe(1)
    m.batch_size.observe(3)
    m.add_uptime(10.0, 3.6)  # what the running service counts: the machine held 10 s
    stats = console.stats()

    now = stats["now"]
    assert now["rps"] == pytest.approx(11 / 4) and now["images_per_s"] == pytest.approx(16 / 4)
    assert now["busy_pct"] == pytest.approx(50.0)
    assert now["p50_ms"] == pytest.approx(37.5) and now["p95_ms"] == pytest.approx(48.75)
    totals = stats["totals"]
    assert totals["requests"] == 11 and totals["requests_by_status"] == {"2xx": 10, "4xx": 1, "5xx": 0}
    assert totals["images"] == 16 and totals["batches"] == 2 and totals["mean_batch_size"] == 2
    assert stats["uptime_s"] == pytest.approx(4.0)
    assert stats["cost"]["busy_usd"] == pytest.approx(0.002)
    assert stats["cost"]["reserved_usd"] == pytest.approx(3.6 * 10 / 3600)  # price x held time
    assert stats["cost"]["held_s"] == pytest.approx(10.0) and stats["cost"]["idle_share"] == pytest.approx(0.8)
    assert {b["sizes"]: b["count"] for b in stats["batch_sizes"]} == {"1": 1, "2": 0, "3-4": 1, "5-8": 0}
    assert [p["t"] for p in stats["series"]] == [first["time"], stats["time"]]

    # A page that already holds the points asks only for the newer ones.
    clock.now += 1.0
    newer = console.stats(since=stats["time"])
    assert [p["t"] for p in newer["series"]] == [newer["time"]]
    assert newer["now"]["rps"] == pytest.approx(11 / 5)  # 5 s window: back to the first sample


def test_no_price_no_reserved_cost():
    service = DetectionService(ServeConfig(model="yolox-nano", preload=False))
    stats = Console(service, FakeClock()).stats()
    assert stats["cost"]["reserved_usd"] is None and stats["price"]["per_hour_usd"] == 0


def test_stats_over_http_count_a_real_request(jpeg_bytes):
    config = ServeConfig(model="yolox-nano", price_per_hour=3.6)
    with served(config) as (client, service):
        assert client.post("/predict", files={"image": ("c.jpg", jpeg_bytes["chelsea"])}).status_code == 200
        stats = client.get("/stats").json()
    assert stats["model"]["model"] == "yolox-nano" and stats["model"]["state"] == "warm"
    assert stats["totals"]["requests"] == 1 and stats["totals"]["images"] == 1
    assert stats["cold_starts"]["count"] == 1 and stats["cold_starts"]["last_s"] > 0
    assert stats["cost"]["busy_usd"] > 0 and stats["cost"]["reserved_usd"] > 0
    assert stats["totals"]["p50_ms"] > 0


def test_the_page_and_its_files_are_open_and_stats_needs_the_key():
    config = ServeConfig(model="yolox-nano", preload=False, api_key="k3y")
    with served(config, follow_redirects=False) as (client, service):
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for asset in assets(page.text):
            assert client.get(asset).status_code == 200, asset
        assert client.get("/console").headers["location"] == "."  # the prefix itself: back to the page
        assert client.get("/console/nope.js").status_code == 404
        refused = client.get("/stats")
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
        assert client.get("/stats", headers={"X-API-Key": "k3y"}).status_code == 200


class _Inline(HTMLParser):
    """What a Content-Security-Policy without 'unsafe-inline' refuses: inline scripts, <style> elements, style
    attributes and on* handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if (tag == "script" and not names.get("src")) or tag == "style":
            self.found.append(f"<{tag}>")
        self.found += [f"<{tag} {name}=...>" for name in names if name == "style" or name.startswith("on")]


def test_the_page_has_nothing_inline_for_its_policy_to_refuse():
    """The console is served with a policy that allows only its own files (middleware.CONSOLE_POLICY): its
    HTML has no inline script or style, and its script colours things through the CSSOM (node.style),
    never a style attribute (a refused one leaves the class swatches uncoloured)."""
    parser = _Inline()
    parser.feed((WEB_DIR / "index.html").read_text())
    assert parser.found == []
    script = (WEB_DIR / "console.js").read_text()
    assert not re.search(r"""\bstyle\s*:|setAttribute\(\s*["']style|innerHTML|\beval\(|new Function""", script)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("#", "data:")):
                self.links.append(value)


def assets(html: str) -> list[str]:
    """The files the page loads (its scripts and stylesheets), as absolute paths."""
    parser = _Links()
    parser.feed(html)
    return ["/" + link for link in parser.links if link.startswith("console/")]


def test_the_page_works_offline():
    """Every file the page loads is shipped beside it; nothing points at another host."""
    html = (WEB_DIR / "index.html").read_text()
    parser = _Links()
    parser.feed(html)
    assert {"console/console.js", "console/console.css"} <= set(parser.links)
    for link in parser.links:
        assert "//" not in link, link
        if link.startswith("console/"):
            assert (WEB_DIR / link.removeprefix("console/")).is_file(), link
    for path in WEB_DIR.iterdir():
        assert not re.search(r"https?://|//cdn", path.read_text()), path.name
