"""The web console in a real headless Chromium against a real ``spotdet serve`` process: real photos in, the
boxes the page drew (and their labels) out; the dashboard counting what was sent; errors and the API key.

Set ``SPOTDET_SCREENSHOTS=docs`` to also write docs/console-try.png and docs/console-dashboard.png.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from support.browser import browser, browser_missing, screenshot, screenshot_dir, wait_for  # noqa: F401
from support.serve import jpeg_bytes, start_server, yolox_server  # noqa: F401 (fixtures)

if browser_missing():  # before importing Selenium: without the browser there is nothing to drive
    pytest.skip(browser_missing(), allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402


def css(driver, selector: str):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def stat(driver, name: str) -> str:
    return css(driver, f'[data-stat="{name}"]')[0].text


def write_photos(tmp_path, jpeg_bytes, names=("chelsea",)) -> list[str]:
    paths = []
    for name in names:
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(jpeg_bytes[name])
        paths.append(str(path))
    return paths


def pick_files(driver, paths: list[str]) -> None:
    """What a user picking files does: the file input gets them, the page sends them at once."""
    css(driver, "#files")[0].send_keys("\n".join(paths))


def drawn_results(driver, count: int) -> list:
    def done():
        cards = css(driver, "article.result[data-drawn='true']")
        return cards if len(cards) == count else None

    return wait_for(done, 60, f"{count} drawn result(s)", lambda: _page_error(driver))


def _page_error(driver) -> str:
    boxes = css(driver, "#try-error") + css(driver, "#banner")
    return " | ".join(b.text for b in boxes if b.text) or "no error shown in the page"


def labels(card) -> list[str]:
    return [li.get_attribute("data-class") for li in card.find_elements(By.CSS_SELECTOR, "li[data-class]")]


def canvas_pixel(driver, card_index: int, x: float, y: float) -> list[int]:
    return driver.execute_script(
        "const c = document.querySelectorAll('article.result canvas')[arguments[0]];"
        "return Array.from(c.getContext('2d').getImageData(arguments[1], arguments[2], 1, 1).data);",
        card_index, int(x), int(y))


def class_colour(driver, class_id: int) -> list[int]:
    """The colour the page gives a class, as the canvas renders it (drawn on a scratch canvas)."""
    return driver.execute_script(
        "const c = document.createElement('canvas'); c.width = c.height = 1; const g = c.getContext('2d');"
        "g.fillStyle = classColor(arguments[0]); g.fillRect(0, 0, 1, 1);"
        "return Array.from(g.getImageData(0, 0, 1, 1).data);", class_id)


def open_console(driver, url: str, tab: str = "try") -> None:
    """A fresh load of the page (not just a new #tab on the page already open)."""
    driver.get("about:blank")
    driver.get(f"{url}/#{tab}")


def stats(url: str, key: str | None = None) -> dict:
    r = httpx.get(f"{url}/stats", headers={"X-API-Key": key} if key else {}, timeout=30)
    r.raise_for_status()
    return r.json()


def test_try_it_draws_the_cat_and_the_dashboard_counts_it(browser, yolox_server, jpeg_bytes, tmp_path):
    before = stats(yolox_server.url)["totals"]["requests"]
    open_console(browser, yolox_server.url)
    wait_for(lambda: stat(browser, "header-state") == "warm", 15, "the header's model state")
    assert not css(browser, "#key-form")[0].is_displayed()  # no key needed: no key form
    pick_files(browser, write_photos(tmp_path, jpeg_bytes))
    card, = drawn_results(browser, 1)
    assert "cat" in labels(card)
    # The boxes are drawn in the page from the JSON: the cat's box edge has the cat's colour on the canvas.
    canvas = card.find_element(By.CSS_SELECTOR, "canvas")
    assert (canvas.get_attribute("width"), canvas.get_attribute("height")) == ("451", "300")
    cat = card.find_element(By.CSS_SELECTOR, "ul.detections li[data-class='cat']")
    x1, y1, x2, y2 = (float(v) for v in cat.get_attribute("data-box").split(","))
    edge = canvas_pixel(browser, 0, min(max(x1, 0) + 0.5, 450), (y1 + y2) / 2)
    want = class_colour(browser, int(cat.get_attribute("data-class-id")))
    assert max(abs(a - b) for a, b in zip(edge[:3], want[:3])) <= 40, (edge, want)
    # Per-stage timings and the request's cost, as the service answered them.
    shown = {row.get_attribute("data-timing") for row in card.find_elements(By.CSS_SELECTOR, "[data-timing]")}
    assert shown == {"decode_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "queue_ms", "total_ms"}
    assert "cost $" in css(browser, "#request-summary")[0].text
    assert css(browser, "#download")[0].is_enabled()

    css(browser, "nav a[data-tab='dashboard']")[0].click()
    wait_for(lambda: int(stat(browser, "requests")) >= before + 1, 15, "the dashboard to count the request")
    assert stat(browser, "state") == "warm"
    assert stat(browser, "model") == "yolox-nano" and stat(browser, "precision") == "fp32"
    assert stat(browser, "backend") == "onnxruntime"
    assert stat(browser, "cold-starts") == "1"
    assert stat(browser, "cost-busy").startswith("$")  # the server has a price: busy cost is shown in dollars


def test_several_images_go_as_one_batch(browser, yolox_server, jpeg_bytes, tmp_path):
    open_console(browser, yolox_server.url, "try")
    pick_files(browser, write_photos(tmp_path, jpeg_bytes, ("chelsea", "astronaut", "coffee")))
    cards = drawn_results(browser, 3)
    assert ["cat" in labels(cards[0]), "person" in labels(cards[1]), "cup" in labels(cards[2])] == [True] * 3
    assert "POST /predict/batch" in css(browser, "#request-summary")[0].text
    screenshot(browser, "console-try")


def test_options_reach_the_service(browser, yolox_server, jpeg_bytes, tmp_path):
    """classes=person, conf=0.5 and tile, as a user sets them: no cat, confident persons, several passes."""
    open_console(browser, yolox_server.url, "try")
    css(browser, "#classes")[0].send_keys("person")
    css(browser, "#conf")[0].send_keys("0.5")
    css(browser, "#tile")[0].click()
    pick_files(browser, write_photos(tmp_path, jpeg_bytes, ("chelsea", "astronaut")))
    cards = drawn_results(browser, 2)
    assert "cat" not in labels(cards[0]) and set(labels(cards[1])) == {"person"}
    scores = [float(li.get_attribute("data-score")) for li in cards[1].find_elements(By.CSS_SELECTOR, "li[data-class]")]
    assert min(scores) >= 0.5
    assert "passes" in cards[1].text  # tiled: the network ran more than once on the 512x512 photo


def test_a_corrupt_file_shows_the_servers_message(browser, yolox_server, tmp_path):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 20)
    answer = httpx.post(f"{yolox_server.url}/predict", files={"image": ("broken.jpg", corrupt.read_bytes())})
    assert answer.status_code == 400
    message = answer.json()["error"]
    open_console(browser, yolox_server.url, "try")
    pick_files(browser, [str(corrupt)])
    box = wait_for(lambda: next((b for b in css(browser, "#try-error") if b.is_displayed() and b.text), None), 30,
                   "the error box")
    assert message in box.text and "400" in box.text
    assert not css(browser, "article.result")


def test_the_dashboard_under_load(browser, yolox_server, jpeg_bytes):
    """Four clients for a few seconds: the dashboard shows requests per second, batches and its charts."""
    open_console(browser, yolox_server.url, "dashboard")
    wait_for(lambda: stat(browser, "state") == "warm", 15, "the model state")
    stop = time.monotonic() + (20.0 if screenshot_dir() else 6.0)  # longer for the docs' picture
    sent = []

    def client():
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                r = http.post(f"{yolox_server.url}/predict", files={"image": ("c.jpg", jpeg_bytes["coffee"])})
                sent.append(r.status_code)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: float(stat(browser, "rps")) > 0, 15, "requests/s above zero")
        wait_for(lambda: stat(browser, "p50") not in ("", "–"), 15, "a latency percentile")
    finally:
        for t in threads:
            t.join()
    assert sent and set(sent) == {200}
    points = browser.execute_script("return state.series.filter(p => p.rps > 0).length")
    assert points >= 2  # the charts have something to draw
    assert int(stat(browser, "batches")) >= 1 and float(stat(browser, "mean-batch")) >= 1
    screenshot(browser, "console-dashboard")


# Runs in the page before its own script (injected by the browser, so the policy does not apply to it): notes
# everything the page's Content-Security-Policy refuses.
WATCH_POLICY = ("window.refused = []; document.addEventListener('securitypolicyviolation', (e) => "
                "window.refused.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));")


def test_the_console_works_under_its_content_security_policy(browser, yolox_server, jpeg_bytes, tmp_path):
    """The server sends the console a policy that allows only its own files (no inline script or style): a
    detection, its coloured class swatches and the dashboard all work without the browser refusing anything."""
    assert "default-src 'self'" in httpx.get(f"{yolox_server.url}/").headers["content-security-policy"]
    watch = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_POLICY})
    try:
        open_console(browser, yolox_server.url)
        pick_files(browser, write_photos(tmp_path, jpeg_bytes))
        card, = drawn_results(browser, 1)
        cat = card.find_element(By.CSS_SELECTOR, "ul.detections li[data-class='cat']")
        swatch = browser.execute_script("return getComputedStyle(arguments[0]).backgroundColor",
                                        cat.find_element(By.CSS_SELECTOR, ".swatch"))
        want = browser.execute_script(
            "const s = document.createElement('span'); s.style.background = classColor(arguments[0]);"
            "document.body.append(s); const c = getComputedStyle(s).backgroundColor; s.remove(); return c;",
            int(cat.get_attribute("data-class-id")))
        assert swatch == want and swatch != "rgba(0, 0, 0, 0)", (swatch, want)
        css(browser, "nav a[data-tab='dashboard']")[0].click()
        wait_for(lambda: stat(browser, "requests") not in ("", "–"), 15, "the dashboard's numbers")
        assert browser.execute_script("return window.refused") == []
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": watch["identifier"]})


def test_with_an_api_key(browser, start_server, jpeg_bytes, tmp_path):
    server = start_server("--model", "yolox-nano", "--api-key", "s3cret-key")
    open_console(browser, server.url)  # the page itself is open
    form = wait_for(lambda: next((f for f in css(browser, "#key-form") if f.is_displayed()), None), 15,
                    "the key form")
    assert "API key" in css(browser, "#banner")[0].text
    # Without the key the server refuses, and the page says why.
    pick_files(browser, write_photos(tmp_path, jpeg_bytes))
    wait_for(lambda: "401" in css(browser, "#try-error")[0].text, 15, "the 401 in the page")
    # A wrong key is refused too.
    key_input = css(browser, "#api-key")[0]
    key_input.send_keys("wrong")
    form.submit()
    wait_for(lambda: "refused" in css(browser, "#banner")[0].text, 15, "the wrong key refused")
    key_input.clear()
    key_input.send_keys("s3cret-key")
    form.submit()
    wait_for(lambda: stat(browser, "header-state") == "warm", 15, "the header's state with the key")
    css(browser, "#run")[0].click()  # the same file again, now with the key
    card, = drawn_results(browser, 1)
    assert "cat" in labels(card)
    assert stats(server.url, "s3cret-key")["totals"]["requests_by_status"]["2xx"] == 1
    # The key lives in the page's memory only: nothing in the browser's storage, gone after a reload.
    assert browser.execute_script("return localStorage.length + sessionStorage.length") == 0
    browser.refresh()
    wait_for(lambda: css(browser, "#key-form")[0].is_displayed(), 15, "the key form again after a reload")
