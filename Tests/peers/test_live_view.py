"""The live view (GET / and /live): a site map, controls and an event feed, in a real headless browser —
Debian's chromium driven by chromedriver through selenium (tools/setup installs all three).

Each browser test starts `keyway serve` (simulated clock), opens the page and drives it through the page
itself (clicks, a drag, form fields); it asserts on the DOM (data attributes, text), never on pixels, and
cross-checks the server through the API. Every wait is on a DOM condition, bounded by WAIT_S.

Screenshots of the map in its main states are saved under .test-artifacts/live-view/ (git-ignored) for
people to look at.

The structure test needs no browser: the page is self-contained and wires the documented endpoints.
"""
import re
import shutil

import pytest

from conftest import ROOT

WAIT_S = 20  # every wait on the DOM is bounded by this
ARTIFACTS = ROOT / ".test-artifacts" / "live-view"


def test_page_is_self_contained_html(start_keyway):
    srv = start_keyway()
    for path in ("/", "/live"):
        r = srv.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html"), r.headers
        html = r.text
        assert html.lstrip().lower().startswith("<!doctype html>")
        for needle in ('id="user"', 'id="doors"', 'id="map"', 'id="feed"', 'id="login"', "/v1/events/stream", "/v1/locks",
                       "/v1/controllers", "/v1/site", "/v1/taps", "/v1/iqs", "/position", "/online", "/power", "/sensor",
                       "/exit", "/v1/clock/advance", "/v1/clock/set", "/v1/login", "/v1/events?"):
            assert needle in html, needle
        # no external assets: no src/href to another origin, no stylesheet/script links
        assert not re.search(r'\b(?:src|href)\s*=\s*["\']?(?:https?:)?//', html, re.I), "external asset referenced"
        assert "<link" not in html.lower() and "<script src" not in html.lower()
        # only the SVG namespace URI, which is an identifier, not a fetch
        assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
        # the SSE listeners cover every event type the server emits (named SSE events need a listener each)
        assert "com.keyway.lock.locked" in html and "com.keyway.access.granted" in html
        assert "__EVENT_TYPES__" not in html
        # every route the page calls is a documented one (no private routes)
        doc = (ROOT / "docs" / "openapi.yaml").read_text()
        for route in set(re.findall(r'"(/v1/[a-z/]+)', html)):
            base = route.rstrip("/")
            assert any(p.startswith(base) for p in re.findall(r"^  (/[^:]+):", doc, re.M)), route
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
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(chromedriver))


class Page:
    """The live view in a browser, with the DOM queries the tests share."""

    def __init__(self, driver):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
        self.d = driver
        self.By = By
        self.wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.05)

    def find(self, css):
        return self.d.find_element(self.By.CSS_SELECTOR, css)

    def attr(self, css, name):
        return self.find(css).get_attribute(name)

    def until(self, cond, what):
        return self.wait.until(lambda d: cond(), message=what)

    def open(self, url):
        self.d.get(url)
        self.until(lambda: self.attr("body", "data-ready") in ("true", "login"), "page ready")

    def live(self):
        self.until(lambda: self.attr("body", "data-ready") == "true", "page ready")
        self.until(lambda: self.attr("#status", "data-status") == "live", "event stream live")

    def lock(self, lock_id):
        return f"#map-lock-{lock_id}"

    def state(self, lock_id):
        return self.attr(self.lock(lock_id), "data-state")

    def reach(self, lock_id):
        return self.attr(self.lock(lock_id), "data-reach")

    def click(self, css):
        self.find(css).click()

    def select(self, css, value):
        from selenium.webdriver.support.ui import Select
        Select(self.find(css)).select_by_value(value)

    def feed_rows(self):
        out = []
        for tr in self.d.find_elements(self.By.CSS_SELECTOR, "#feed tbody tr.event"):
            cells = [td.text for td in tr.find_elements(self.By.TAG_NAME, "td")]
            out.append({"position": int(tr.get_attribute("data-position")), "type": tr.get_attribute("data-type"),
                        "device": tr.get_attribute("data-device"), "lock": tr.get_attribute("data-lock"),
                        "stage": tr.get_attribute("data-stage"), "hidden": tr.get_attribute("hidden") is not None,
                        "time": cells[0], "user": cells[3], "method": cells[4], "result": cells[5], "reason": cells[6],
                        "stage_text": cells[7]})
        return out

    def feed_row(self, **match):
        for r in self.feed_rows():
            if all(r[k] == v for k, v in match.items()):
                return r
        return None

    def tap_as_user(self, lock_id, user):
        self.select("#tap-lock", lock_id)
        self.select("#tap-kind", "user")
        self.select("#user", user)
        taps = int(self.attr("body", "data-taps"))
        self.click("#tap-button")
        self.until(lambda: int(self.attr("body", "data-taps")) > taps, "tap answered")
        assert self.attr("#tap-result", "data-result") in ("granted", "denied", "error", "phone_refused")
        return self.attr("#tap-result", "data-result"), self.find("#tap-result").text

    def screenshot(self, name):
        """The whole page — map, panels, feed and table — in one image: the window is made as tall as
        the page for the shot (the map's size depends on the width only)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        size = self.d.get_window_size()
        height = self.d.execute_script("return document.documentElement.scrollHeight")
        self.d.set_window_size(size["width"], min(height + 160, 4000))
        self.d.execute_script("window.scrollTo(0, 0)")
        self.d.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        self.d.set_window_size(size["width"], size["height"])


@pytest.fixture
def browser():
    driver = _driver()
    yield driver
    driver.quit()


def test_map_tap_colour_feed_and_clock_relock(start_keyway, browser):
    """The bundled site on the map (both reach circles, the basement out of reach); a tap from the page
    turns the lock green and shows in the feed with user, method, result and stage; a clock advance
    from the page relocks it; the table view agrees."""
    srv = start_keyway()
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance", "storage-basement"]}, status=201)
    page = Page(browser)
    page.open(srv.url("/"))
    page.live()

    # Both IQs with their reach circles, at their range, online.
    for iq in srv.ok("GET", "/v1/iqs"):
        circle = f"#reach-{iq['id']}"
        assert float(page.attr(circle, "r")) == pytest.approx(iq["range_m"] * 20), iq
        assert page.attr(circle, "data-online") == "true"
        assert "z 2.7 m" in page.find(f"#map-iq-{iq['id']} .iq-detail").text
    # Every lock is drawn once, by kind; the basement is plainly out of reach, the others in reach.
    locks = srv.ok("GET", "/v1/locks")
    assert len(browser.find_elements(page.By.CSS_SELECTOR, "#map g.lock")) == len(locks)
    for lock in locks:
        assert page.attr(page.lock(lock["id"]), "data-kind") == lock["kind"]
        assert page.reach(lock["id"]) == ("in" if lock["in_iq_reach"] else "out"), lock["id"]
    assert page.reach("storage-basement") == "out"
    assert page.find(page.lock("storage-basement") + " .reach-text").text == "OUT OF REACH"
    assert page.find("#lock-storage-basement .reach").get_attribute("data-reach") == "out"
    # Battery and doors: a low battery is flagged, each controlled door is drawn closed and powered.
    assert page.attr(page.lock("room-valencia") + " .battery", "data-low") == "true"
    for ctl in ("ctl-back-door", "ctl-side-door"):
        assert page.attr(f"#map-door-{ctl}", "data-open") == "false"
        assert page.attr(f"#map-door-{ctl}", "data-powered") == "true"
    assert page.state("main-entrance") == "locked"
    assert len(browser.find_elements(page.By.CSS_SELECTOR, "#doors tbody tr")) == len(locks), "the table stays"

    # A tap as u-ada from the page.
    result, text = page.tap_as_user("main-entrance", "u-ada")
    assert result == "granted", text
    assert "u-ada" in text and "mobile" in text
    page.until(lambda: page.state("main-entrance") == "unlocked", "main-entrance unlocked on the map")
    assert page.attr(page.lock("main-entrance"), "data-led") == "green"
    fill = browser.execute_script("return getComputedStyle(document.querySelector('#map-lock-main-entrance .glyph')).fill")
    assert fill == "rgb(22, 163, 74)", fill  # the unlocked colour
    assert page.attr("#lock-main-entrance .state", "data-state") == "unlocked"
    page.until(lambda: page.feed_row(type="access.granted", device="main-entrance") is not None, "granted tap in the feed")
    row = page.feed_row(type="access.granted", device="main-entrance")
    assert (row["user"], row["method"], row["result"]) == ("u-ada", "mobile", "granted"), row
    assert row["stage"] in ("held", "collected", "delivered") and row["stage_text"] == row["stage"], row
    assert row["time"].startswith("2026-11-23 17:00:00"), row
    # The basement works offline: granted, and its event stays held until an IQ collects it.
    result, text = page.tap_as_user("storage-basement", "u-ada")
    assert result == "granted" and "offline lock" in text, text
    page.until(lambda: page.feed_row(type="access.granted", device="storage-basement") is not None, "basement tap in the feed")
    page.until(lambda: page.state("main-entrance") == "unlocked", "still unlocked")
    page.screenshot("01-site-map-granted-tap")

    # Feed: filter by lock and by type; a click highlights the event's lock on the map.
    page.select("#feed-lock", "storage-basement")
    page.until(lambda: all(r["hidden"] == (r["device"] != "storage-basement") for r in page.feed_rows()), "lock filter")
    page.select("#feed-lock", "")
    page.select("#feed-type", "lock.unlocked")
    page.until(lambda: all(r["hidden"] == (r["type"] != "lock.unlocked") for r in page.feed_rows()), "type filter")
    page.select("#feed-type", "")
    row = page.feed_row(type="access.granted", device="main-entrance")
    page.click(f"#event-{row['position']}")
    page.until(lambda: "highlight" in page.attr(page.lock("main-entrance"), "class"), "lock highlighted")
    assert page.attr("#map", "data-highlighted") == "main-entrance"
    assert "highlight" not in page.attr(page.lock("storage-basement"), "class")

    # Clock advance from the page: the open time passes, the door relocks, the feed shows it.
    page.find("#advance-seconds").clear()
    page.find("#advance-seconds").send_keys("60")
    page.click("#clock-advance")
    page.until(lambda: page.state("main-entrance") == "locked", "main-entrance relocked on the map")
    assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "locked"
    assert page.attr("#clock", "data-now").startswith("2026-11-23T17:01:00"), page.attr("#clock", "data-now")
    page.until(lambda: page.feed_row(type="lock.locked", device="main-entrance") is not None, "relock in the feed")
    # Set the clock from the page.
    page.find("#clock-set-time").send_keys("2026-11-23T18:30:00Z")
    page.click("#clock-set")
    page.until(lambda: page.attr("#clock", "data-now").startswith("2026-11-23T18:30:00"), "clock set")
    assert srv.ok("GET", "/v1/clock")["now"].startswith("2026-11-23T18:30:00")
    page.screenshot("02-after-clock-advance")

    # A PIN tap and a tag tap from the page (Ada's PIN and fob).
    page.select("#tap-lock", "main-entrance")
    page.select("#tap-kind", "pin")
    page.find("#tap-pin").send_keys("4821")
    page.click("#tap-button")
    page.until(lambda: page.feed_row(type="access.granted", method="pin") is not None, "PIN tap in the feed")
    page.select("#tap-kind", "tag")
    page.find("#tap-tag").send_keys("04:A2:3B:1C:5D:80")
    page.select("#tap-lock", "room-dolores")
    page.click("#tap-button")
    page.until(lambda: page.feed_row(type="access.granted", method="tag", device="room-dolores") is not None, "tag tap in the feed")
    # An unknown fob is denied: red LED on the map, and the feed says why.
    page.find("#tap-tag").clear()
    page.find("#tap-tag").send_keys("DE:AD:BE:EF")
    taps = int(page.attr("body", "data-taps"))
    page.click("#tap-button")
    page.until(lambda: int(page.attr("body", "data-taps")) > taps, "denied tap answered")
    assert page.attr("#tap-result", "data-result") == "denied", page.find("#tap-result").text
    page.until(lambda: page.feed_row(type="access.denied", device="room-dolores") is not None, "denial in the feed")
    row = page.feed_row(type="access.denied", device="room-dolores")
    assert row["result"] == "denied" and row["method"] == "tag" and row["reason"], row
    page.until(lambda: page.attr(page.lock("room-dolores"), "data-led") == "red", "red LED on the map")


def test_drag_an_iq_takes_locks_out_of_reach(start_keyway, browser):
    """Dragging the lobby IQ 8 m east takes the main entrance out of every IQ's reach at once; a tap there
    is then judged offline: granted on the lock's own keys, its event held, and an IQ sync from the page
    collects the events of the locks in reach but not that one."""
    from selenium.webdriver.common.action_chains import ActionChains

    srv = start_keyway()
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance", "room-twin-peaks"]}, status=201)
    page = Page(browser)
    page.open(srv.url("/"))
    page.live()
    assert page.reach("main-entrance") == "in"

    lobby, lounge = page.find("#map-iq-iq-lobby .iq-handle"), page.find("#map-iq-iq-lounge .iq-handle")
    px_per_m = (lounge.rect["x"] - lobby.rect["x"]) / 12.0  # the IQs stand 12 m apart on the same y
    assert px_per_m > 5, px_per_m
    ActionChains(browser).click_and_hold(lobby).move_by_offset(round(4 * px_per_m), 0) \
        .move_by_offset(round(4 * px_per_m), 0).release().perform()

    page.until(lambda: page.reach("main-entrance") == "out", "main-entrance out of reach after the drag")
    iq = next(q for q in srv.ok("GET", "/v1/iqs") if q["id"] == "iq-lobby")
    assert iq["position"]["x"] == pytest.approx(14, abs=0.3), iq
    assert iq["position"]["y"] == pytest.approx(8, abs=0.3), iq
    assert iq["position"]["z"] == pytest.approx(2.7), "the drag keeps the IQ's height"
    assert "main-entrance" not in iq["locks_in_reach"]
    assert srv.ok("GET", "/v1/locks/main-entrance")["in_iq_reach"] is False
    assert page.find(page.lock("main-entrance") + " .reach-text").text == "OUT OF REACH"
    assert page.find("#lock-main-entrance .reach").get_attribute("data-reach") == "out"
    # The circle moved with it: its centre is now 8 m east of where it was.
    assert float(page.attr("#reach-iq-lobby", "cx")) == pytest.approx(iq["position"]["x"] * 20)
    page.screenshot("03-iq-dragged-main-entrance-out-of-reach")

    result, text = page.tap_as_user("main-entrance", "u-ada")
    assert result == "granted" and "offline lock" in text, text
    result, text = page.tap_as_user("room-twin-peaks", "u-ada")
    assert result == "granted" and "offline lock" not in text, text
    page.click("#iq-sync-iq-lobby")
    page.click("#iq-sync-iq-lounge")
    page.until(lambda: (page.feed_row(type="access.granted", device="room-twin-peaks") or {}).get("stage") == "collected",
               "twin peaks' event collected by an IQ")
    row = page.feed_row(type="access.granted", device="main-entrance")
    assert row["stage"] == "held", row  # no IQ reaches it: the lock keeps its trail
    page.screenshot("04-offline-lock-event-held")

    # Moving it back with the position form brings the entrance back in reach.
    page.find("#iq-x-iq-lobby").clear()
    page.find("#iq-x-iq-lobby").send_keys("6")
    page.click("#iq-move-iq-lobby")
    page.until(lambda: page.reach("main-entrance") == "in", "main-entrance back in reach")


def test_iq_offline_controller_power_door_sensor_and_exit(start_keyway, browser):
    srv = start_keyway()
    page = Page(browser)
    page.open(srv.url("/"))
    page.live()

    page.click("#iq-online-iq-lobby")
    page.until(lambda: page.attr("#map-iq-iq-lobby", "data-online") == "false", "lobby IQ offline on the map")
    assert page.attr("#reach-iq-lobby", "data-online") == "false"
    assert "OFFLINE" in page.find("#map-iq-iq-lobby .iq-detail").text
    assert next(q for q in srv.ok("GET", "/v1/iqs") if q["id"] == "iq-lobby")["online"] is False
    # Locks only the lobby IQ reaches are now behind an offline IQ; those the lounge also reaches are not.
    page.until(lambda: page.reach("main-entrance") == "offline", "main-entrance behind an offline IQ")
    assert page.find(page.lock("main-entrance") + " .reach-text").text == "IQ OFFLINE"
    assert page.reach("back-door") == "in"
    page.until(lambda: page.feed_row(type="iq.offline", device="iq-lobby") is not None, "iq.offline in the feed")
    page.screenshot("05-iq-offline")

    # Door sensor and exit button on the back door, then the controller's power.
    page.click("#door-sensor-ctl-back-door")
    page.until(lambda: page.attr("#map-door-ctl-back-door", "data-open") == "true", "back door open on the map")
    page.until(lambda: page.feed_row(type="door.forced") is not None or page.feed_row(type="door.opened") is not None,
               "door event in the feed")
    page.click("#door-sensor-ctl-back-door")
    page.until(lambda: page.attr("#map-door-ctl-back-door", "data-open") == "false", "back door closed")
    page.click("#door-exit-ctl-back-door")
    page.until(lambda: page.attr("#last-result", "data-result") == "granted", "exit granted")
    page.until(lambda: page.state("back-door") == "unlocked", "exit unlocks the back door")
    page.click("#ctl-power-ctl-side-door")
    page.until(lambda: page.attr("#map-door-ctl-side-door", "data-powered") == "false", "side door controller unpowered")
    assert page.find("#map-door-ctl-side-door .power-text").text == "POWER OFF"
    assert next(c for c in srv.ok("GET", "/v1/controllers") if c["id"] == "ctl-side-door")["powered"] is False
    page.screenshot("06-door-open-exit-power-off")
    page.click("#ctl-power-ctl-side-door")
    page.until(lambda: page.attr("#map-door-ctl-side-door", "data-powered") == "true", "power restored")
    page.click("#iq-online-iq-lobby")
    page.until(lambda: page.attr("#map-iq-iq-lobby", "data-online") == "true", "lobby IQ back online")
    page.until(lambda: page.reach("main-entrance") == "in", "main-entrance in reach again")


def test_login_with_a_token_sets_an_httponly_cookie(start_keyway, browser):
    """With --api-token the page shows a login form; the token goes once in a POST body, the browser gets
    an HttpOnly, SameSite=Strict cookie (not the token), and the page then works, taps included. The
    token is never in a URL, in the page, in a script-readable cookie or in the server's output."""
    import secrets
    token = secrets.token_urlsafe(24)
    srv = start_keyway(api_token=token)
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    page = Page(browser)
    page.open(srv.url("/"))
    page.until(lambda: page.find("#login").is_displayed(), "login form shown")
    assert not page.find("#app").is_displayed()
    page.screenshot("00-login")

    page.find("#token").send_keys("not-the-token")
    page.click("#login-submit")
    page.until(lambda: page.find("#login-error").is_displayed(), "wrong token refused")
    assert browser.get_cookies() == []

    page.find("#token").clear()
    page.find("#token").send_keys(token)
    page.click("#login-submit")
    page.live()
    cookies = browser.get_cookies()
    assert len(cookies) == 1, cookies
    c = cookies[0]
    assert c["name"] == "keyway_session" and c["httpOnly"] is True and c["sameSite"] == "Strict", c
    assert token not in c["value"]
    assert browser.execute_script("return document.cookie") == "", "the session cookie is readable by script"
    assert token not in browser.current_url and token not in browser.page_source
    assert page.find("#token").get_attribute("value") == ""

    result, text = page.tap_as_user("main-entrance", "u-ada")
    assert result == "granted", text
    page.until(lambda: page.state("main-entrance") == "unlocked", "unlocked after a tap with the cookie")
    assert token not in srv.output(), "the token appears in serve's output"


def test_stage_changes_reach_the_feed(start_keyway, browser):
    """An event held by a lock turns collected in the feed once an IQ sync (through the API) collects it."""
    srv = start_keyway()
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["room-dolores"]}, status=201)
    page = Page(browser)
    page.open(srv.url("/"))
    page.live()
    tap = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "user": "u-ada"})
    assert tap["result"] == "granted"
    page.until(lambda: page.feed_row(type="access.granted", device="room-dolores") is not None, "tap in the feed")
    assert page.feed_row(type="access.granted", device="room-dolores")["stage"] == "held"
    srv.ok("POST", "/v1/iqs/iq-lobby/sync")
    page.until(lambda: page.feed_row(type="access.granted", device="room-dolores")["stage"] == "collected", "stage collected")


def test_pending_access_list_versions_show_until_each_iq_syncs(start_keyway, browser):
    """A directory change makes a new access-list version at once; the map and the table show every lock
    still holding the old one, in orange with both versions, until its IQ syncs it (here from the page's
    own Sync button); a lock out of every IQ's reach stays behind."""
    srv = start_keyway()
    page = Page(browser)
    page.open(srv.url("/"))
    page.live()
    locks = srv.ok("GET", "/v1/locks")
    assert all(l["access_list_version"] == l["access_list_newest"] for l in locks), locks
    for l in locks:
        assert page.attr(page.lock(l["id"]), "data-list") == "current", l["id"]
        assert page.find(f"#lock-{l['id']} .list").get_attribute("data-pending") == "false"
    assert page.attr("#list-status", "data-behind") == "0"

    newest = srv.ok("POST", "/v1/users", {"id": "u-kim", "groups": ["members"], "tags": ["04:AA:BB:CC"]}, status=201)["access_list_version"]
    held = locks[0]["access_list_version"]
    page.until(lambda: page.attr("#list-status", "data-behind") == str(len(locks)), "every lock behind the new version")
    assert page.attr(page.lock("main-entrance"), "data-list") == "pending"
    assert page.attr(page.lock("main-entrance"), "data-list-held") == str(held)
    assert page.attr(page.lock("main-entrance"), "data-list-newest") == str(newest)
    assert page.find(page.lock("main-entrance") + " .list-text").text == f"list v{held}→v{newest}"
    assert page.find("#lock-main-entrance .list").text == f"v{held} — newest v{newest}, pending IQ sync"
    colour = browser.execute_script("return getComputedStyle(document.querySelector('#map-lock-main-entrance .list-badge')).display")
    assert colour != "none", "the badge is visible while the list is behind"
    page.screenshot("07-access-lists-pending")

    # iq-lobby syncs from the page: its locks catch up, the lounge's and the basement's stay behind.
    lobby = next(q for q in srv.ok("GET", "/v1/iqs") if q["id"] == "iq-lobby")
    page.click("#iq-sync-iq-lobby")
    page.until(lambda: page.attr(page.lock("main-entrance"), "data-list") == "current", "main-entrance got the list")
    after = {l["id"]: l for l in srv.ok("GET", "/v1/locks")}
    for lid, l in after.items():
        want = "current" if l["access_list_version"] == newest else "pending"
        page.until(lambda: page.attr(page.lock(lid), "data-list") == want, f"{lid} {want}")
        assert (lid in lobby["locks_in_reach"]) == (want == "current"), (lid, l)
    assert page.attr(page.lock("storage-basement"), "data-list") == "pending", "out of reach: keeps its old list"
    behind = sum(1 for l in after.values() if l["access_list_version"] < newest)
    assert 0 < behind < len(locks)
    page.until(lambda: page.attr("#list-status", "data-behind") == str(behind), "header counts the locks behind")
    assert page.find("#lock-main-entrance .list").text == f"v{newest}"
    page.screenshot("08-access-lists-after-lobby-sync")


def test_lockdown_from_the_page_shows_on_the_map(start_keyway, browser):
    """The page's lockdown control (POST /v1/lockdown): locks an online IQ links hold it at once and turn
    red with LOCKDOWN; a lock whose IQ is offline shows LOCKDOWN… until the IQ is back; a tap is
    refused with locked_down; lifting it for the chosen lock, then everywhere, clears the map."""
    srv = start_keyway()
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance", "room-valencia"]}, status=201)
    srv.ok("POST", "/v1/iqs/iq-lounge/online", {"online": False})
    page = Page(browser)
    page.open(srv.url("/"))
    page.live()
    assert page.attr("#lockdown-status", "data-active") == "false"
    assert page.attr(page.lock("main-entrance"), "data-lockdown") == "false"

    page.click("#lockdown-all")
    page.until(lambda: page.attr(page.lock("main-entrance"), "data-lockdown") == "true", "main-entrance in lockdown")
    assert page.find(page.lock("main-entrance") + " .lockdown-text").text == "LOCKDOWN"
    fill = browser.execute_script("return getComputedStyle(document.querySelector('#map-lock-main-entrance .glyph')).fill")
    assert fill == "rgb(185, 28, 28)", fill
    locks = {l["id"]: l for l in srv.ok("GET", "/v1/locks")}
    for lid, l in locks.items():
        want = "true" if l["locked_down"] else "pending_on"
        assert l["lockdown_wanted"] is True, l
        page.until(lambda: page.attr(page.lock(lid), "data-lockdown") == want, f"{lid}: {want}")
    assert page.attr(page.lock("room-valencia"), "data-lockdown") == "pending_on", "iq-lounge is offline"
    assert page.find(page.lock("room-valencia") + " .lockdown-text").text == "LOCKDOWN…"
    assert "pending (no online IQ)" in page.find("#lockdown-result").text and "room-valencia" in page.find("#lockdown-result").text
    held = sum(1 for l in locks.values() if l["locked_down"])
    page.until(lambda: page.attr("#lockdown-status", "data-count") == str(held), "header counts locks in lockdown")
    assert page.attr("#lockdown-status", "data-active") == "true"
    assert "LOCKDOWN" in page.find("#lock-main-entrance .state").text
    result, text = page.tap_as_user("main-entrance", "u-ada")
    assert result == "denied" and "locked_down" in text, text
    page.screenshot("09-lockdown")

    srv.ok("POST", "/v1/iqs/iq-lounge/online", {"online": True})   # the lounge's locks get it at the sync that follows
    page.until(lambda: page.attr(page.lock("room-valencia"), "data-lockdown") == "true", "room-valencia in lockdown")

    page.select("#tap-lock", "main-entrance")
    page.click("#lockdown-lift-lock")
    page.until(lambda: page.attr(page.lock("main-entrance"), "data-lockdown") == "false", "lifted at main-entrance")
    assert page.attr(page.lock("room-valencia"), "data-lockdown") == "true", "only the chosen lock"
    assert srv.ok("GET", "/v1/locks/main-entrance")["locked_down"] is False
    page.click("#lockdown-lift-all")
    page.until(lambda: page.attr("#lockdown-status", "data-active") == "false", "no lockdown")
    assert page.attr(page.lock("room-valencia"), "data-lockdown") == "false"
