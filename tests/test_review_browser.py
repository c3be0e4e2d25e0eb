"""End to end in a real headless Chromium: the flagged image comes first, a drawn box gets anonymized.

Needs Debian's `chromium` and `chromium-driver` (.ci/install-browser) and the `selenium`
package; skips with the reason when they are absent. Selenium Manager is never used: the
driver path is given explicitly, so nothing is downloaded.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900"]
TOKEN = "browser-test-token"


def _browser():
    pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER}: install them with .ci/install-browser "
                    "(apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in BROWSER_ARGS:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


def _wait(cond, timeout: float = 20.0, what: str = "condition"):
    end = time.monotonic() + timeout
    from selenium.common.exceptions import StaleElementReferenceException

    while time.monotonic() < end:
        try:
            value = cond()
        except StaleElementReferenceException:  # the page re-rendered the element under us: look again
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def server(tmp_path, astronaut):
    from werkzeug.serving import make_server

    from faceveil.cli import main
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(5)
    for name in ("a-noise.png", "b-noise.png"):
        Image.fromarray(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)).save(src / name)
    Image.fromarray(astronaut).save(src / "z-leak.png")
    # Threshold 0.95: the main detector misses the astronaut (score 0.93), so her face is left
    # un-anonymized and only the reviewer's box can hide it on Apply.
    assert main(["anonymize", str(src), "-o", str(out), "-q", "-t", "0.95"]) == 0
    assert (np.asarray(Image.open(out / "z-leak.png")) == astronaut).all()
    # Checked in the background, as `faceveil review` does: the page fills in while it polls.
    rs = ReviewSet(out, src, AnonymizerConfig(detector_params={"threshold": 0.95}), ReviewSettings(),
                   tmp_path / "cache", background=True)
    rs.start_checking()
    srv = make_server("127.0.0.1", 0, create_app(rs, TOKEN), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/", src, out
    srv.shutdown()
    thread.join(5)


@pytest.mark.slow
def test_draw_a_box_on_a_missed_face_and_apply(server, tmp_path, astronaut):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, src, out = server
    driver = _browser()
    try:
        driver.get(base + "?token=" + TOKEN)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#grid .card") and
              not driver.find_elements(By.ID, "checking"), what="the checked grid")
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
        assert [c.get_attribute("data-path") for c in cards] == ["z-leak.png", "a-noise.png", "b-noise.png"]
        assert "flagged" in cards[0].get_attribute("class")
        assert driver.find_element(By.ID, "flagged-remaining").text == "1"
        assert "token" not in driver.current_url  # removed from the address bar

        cards[0].click()
        img = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#stage-out img"), what="the large view")[0]
        _wait(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img),
              what="the image")
        # Drag over the face (image pixels 168..282 x 44..192), converted to screen pixels.
        face = [168, 44, 282, 192]
        r = img.rect  # viewport coordinates: the page is not scrolled
        scale = r["width"] / astronaut.shape[1]

        def drag_over_face():
            drag = ActionBuilder(driver)  # absolute moves: Selenium's element offsets use the in-view centre
            drag.pointer_action.move_to_location(round(r["x"] + face[0] * scale), round(r["y"] + face[1] * scale))
            drag.pointer_action.pointer_down()
            drag.pointer_action.move_to_location(round(r["x"] + 225 * scale), round(r["y"] + 118 * scale))
            drag.pointer_action.move_to_location(round(r["x"] + face[2] * scale), round(r["y"] + face[3] * scale))
            drag.pointer_action.pointer_up()
            drag.perform()
            _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#stage-out .box.manual.pending"), what="the box")

        pending = "#stage-out .box.manual.pending"
        drag_over_face()
        driver.find_element(By.TAG_NAME, "body").send_keys("u")  # undo removes the unapplied box
        _wait(lambda: not driver.find_elements(By.CSS_SELECTOR, pending), what="undo")
        drag_over_face()
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
        _wait(lambda: "applied" in driver.find_element(By.ID, "status").text, what="Apply")
        driver.save_screenshot(str(tmp_path / "review-browser.png"))

        after = np.asarray(Image.open(out / "z-leak.png").convert("RGB"))
        saved = json.loads((out / ".faceveil" / "review.json").read_text())["items"]["z-leak.png"]
        (mx1, my1, mx2, my2), = saved["manual"]
        # The box landed where it was drawn (within the rounding of screen pixels) ...
        assert np.allclose([mx1, my1, mx2, my2], face, atol=2 / scale + 1), saved["manual"]
        changed = (after != astronaut).any(axis=2)
        cy, cx = (my1 + my2) / 2, (mx1 + mx2) / 2
        inner = changed[int(cy - 30):int(cy + 30), int(cx - 25):int(cx + 25)]
        assert inner.mean() > 0.9, "the face under the drawn box must be re-anonymized"
        # ... and nothing outside the box's region (mask scale 1.3) changed.
        half_w, half_h = (mx2 - mx1) * 0.65 + 1, (my2 - my1) * 0.65 + 1
        outside = np.ones_like(changed)
        outside[max(int(cy - half_h), 0):int(cy + half_h) + 1, max(int(cx - half_w), 0):int(cx + half_w) + 1] = False
        assert not changed[outside].any()
        assert driver.find_element(By.ID, "flagged-remaining").text == "0"

        driver.find_element(By.TAG_NAME, "body").send_keys("a")  # approve with one key
        _wait(lambda: json.loads((out / ".faceveil" / "review.json").read_text())["items"]["z-leak.png"].get("approved"),
              what="approve")
        assert (tmp_path / "review-browser.png").stat().st_size > 10_000
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()


@pytest.mark.slow
def test_video_track_strips_and_a_box_over_a_frame_range(tmp_path, astronaut):
    """A video: strips per track, a frame picked from a strip, a box drawn there and applied over a range."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from werkzeug.serving import make_server

    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app
    from test_review_video import make_video_set

    src, out = make_video_set(tmp_path, astronaut)
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache")
    srv = make_server("127.0.0.1", 0, create_app(rs, TOKEN), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    driver = _browser()
    try:
        driver.get(f"http://127.0.0.1:{srv.server_port}/?token={TOKEN}")
        card = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, '#grid .card[data-path="clip.mp4"]'),
                     what="the video card")[0]
        assert "tracks" in card.text
        card.click()
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#strips .strip figure"), what="track strips")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#strips .strip")) >= 1

        def pick_first_frame():  # found afresh each try: the strips may be re-rendered while loading
            fig = driver.find_elements(By.CSS_SELECTOR, "#strips .strip figure")[0]
            number = int(fig.get_attribute("data-frame"))
            fig.click()
            return str(number)

        frame = int(_wait(pick_first_frame, what="a click on the strip's first frame"))
        _wait(lambda: driver.find_element(By.ID, "frame-num").get_attribute("value") == str(frame), what="frame")
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#stage-out .box.main"), what="the run's boxes")
        driver.execute_script("document.getElementById('range-from').value = 2;"
                              "document.getElementById('range-to').value = 5;")
        r = _wait(lambda: driver.execute_script(
            "const i = document.querySelector('#stage-out img');"
            "if (!i || !i.complete || !i.naturalWidth) return null;"
            "const b = i.getBoundingClientRect(); return {x: b.x, y: b.y, width: b.width, height: b.height};"),
            what="the frame")
        scale = r["width"] / 256
        drag = ActionBuilder(driver)
        drag.pointer_action.move_to_location(round(r["x"] + 10 * scale), round(r["y"] + 150 * scale))
        drag.pointer_action.pointer_down()
        drag.pointer_action.move_to_location(round(r["x"] + 60 * scale), round(r["y"] + 185 * scale))
        drag.pointer_action.pointer_up()
        drag.perform()
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
        _wait(lambda: "applied" in driver.find_element(By.ID, "status").text, timeout=60, what="Apply")
        driver.save_screenshot(str(tmp_path / "review-video.png"))
        (m,) = json.loads((out / ".faceveil" / "review.json").read_text())["items"]["clip.mp4"]["manual"]
        assert (m["from"], m["to"]) == (2, 5)
        assert np.allclose(m["box"], [10, 150, 60, 185], atol=2 / scale + 1), m
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
        srv.shutdown()


@pytest.mark.slow
def test_a_name_that_is_not_utf8_gets_its_card_and_opens(tmp_path):
    """One output named caf\\xe9.png (a Latin-1 byte): before, encodeURIComponent threw on its path and the page drew
    no card at all (3 items, 0 cards). Now every card is drawn and that one opens with its images."""
    import os

    from selenium.webdriver.common.by import By
    from werkzeug.serving import make_server

    from faceveil.cli import main
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(5)
    for name in (os.fsdecode(b"caf\xe9.png"), "x1.png", "x2.png"):
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(src / name)
    assert main(["anonymize", str(src), "-o", str(out), "-q", "-d", "centerface"]) == 0
    rs = ReviewSet(out, src, AnonymizerConfig(detector="centerface"), ReviewSettings(second=("none",)),
                   tmp_path / "cache")
    srv = make_server("127.0.0.1", 0, create_app(rs, TOKEN), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    driver = _browser()
    try:
        driver.get(f"http://127.0.0.1:{srv.server_port}/?token={TOKEN}")
        cards = _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#grid .card")) == 3 and
                      driver.find_elements(By.CSS_SELECTOR, "#grid .card"), timeout=10, what="3 cards")
        card = next(c for c in cards if c.get_attribute("data-path") == "caf\\xe9.png")
        card.click()
        for stage in ("#stage-out img", "#stage-orig img"):
            img = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, stage), what=stage)[0]
            assert _wait(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                       img), what="the image") == 160
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
        srv.shutdown()
