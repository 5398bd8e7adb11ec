"""The live view (GET / and /live) in a real headless browser: Debian's chromium driven by chromedriver
through selenium (tools/setup installs all three).

The browser test starts `keyway serve` (simulated clock), issues a key through the API, opens the page,
picks the user, clicks Tap on main-entrance and waits — bounded — for the page to show "granted" and the
lock's state to become unlocked; then it advances the clock through the API (not through the page) so
only the SSE stream can tell the page, and waits for the lock to show locked again.

The structure test needs no browser: the page is self-contained and wires the documented endpoints.
"""
import re
import shutil

import pytest

WAIT_S = 15  # every wait on the DOM is bounded by this


def test_page_is_self_contained_html(start_keyway):
    srv = start_keyway()
    for path in ("/", "/live"):
        r = srv.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html"), r.headers
        html = r.text
        assert html.lstrip().lower().startswith("<!doctype html>")
        for needle in ('id="user"', 'id="doors"', "/v1/events/stream", "/v1/locks", "/v1/controllers", "/v1/site", "/v1/taps"):
            assert needle in html, needle
        # no external assets: no src/href to another origin, no stylesheet/script links
        assert not re.search(r'\b(?:src|href)\s*=\s*["\']?(?:https?:)?//', html, re.I), "external asset referenced"
        assert "<link" not in html.lower() and "<script src" not in html.lower()
        # the SSE listeners cover every event type the server emits (named SSE events need a listener each)
        assert "com.keyway.lock.locked" in html and "com.keyway.access.granted" in html
        assert "__EVENT_TYPES__" not in html
    assert srv.get("/").content == srv.get("/live").content
    r = srv.post("/")
    assert r.status_code == 405 and "GET" in r.headers.get("allow", ""), (r.status_code, r.headers)


def _driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: run tools/setup")
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("chromium / chromium-driver are not installed: run tools/setup")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(chromedriver))


def test_tap_in_a_real_browser(start_keyway):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    srv = start_keyway()
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "locked"

    driver = _driver()
    try:
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.05)
        driver.get(srv.url("/"))
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-status") == "live")
        state = lambda d: d.find_element(By.CSS_SELECTOR, "#lock-main-entrance .state").get_attribute("data-state")
        assert state(driver) == "locked"
        rows = driver.find_elements(By.CSS_SELECTOR, "#doors tbody tr")
        assert len(rows) == len(srv.ok("GET", "/v1/locks")), "one row per lock"
        # the back door has a controller: its door sensor is shown
        assert driver.find_element(By.CSS_SELECTOR, "#lock-back-door .door").text.startswith("closed")

        Select(driver.find_element(By.ID, "user")).select_by_value("u-ada")
        driver.find_element(By.CSS_SELECTOR, '#lock-main-entrance button.tap').click()
        result = lambda d: d.find_element(By.ID, "result-main-entrance")
        wait.until(lambda d: result(d).get_attribute("data-result") in ("granted", "denied", "error"))
        assert result(driver).text.startswith("granted"), result(driver).text
        assert "granted" in driver.find_element(By.ID, "last-result").text
        wait.until(lambda d: state(d) == "unlocked")
        led = driver.find_element(By.CSS_SELECTOR, "#lock-main-entrance .led").get_attribute("data-led")
        assert led == "green", led
        assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "unlocked"

        # Relock through the API: the page learns it only from the event stream.
        events_before = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-events"))
        srv.ok("POST", "/v1/clock/advance", {"seconds": 60})
        assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "locked"
        wait.until(lambda d: state(d) == "locked")
        events_after = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-events"))
        assert events_after > events_before, "the page relocked without an SSE event"
        log = driver.find_element(By.ID, "log").text
        assert "lock.locked" in log and "access.granted" in log, log

        # A denial shows its reason: u-grace holds no key → the API's 409 is shown as an error.
        Select(driver.find_element(By.ID, "user")).select_by_value("u-grace")
        driver.find_element(By.CSS_SELECTOR, '#lock-main-entrance button.tap').click()
        wait.until(lambda d: result(d).get_attribute("data-result") == "error")
        assert "no key" in result(driver).text or "409" in result(driver).text, result(driver).text
    finally:
        driver.quit()
