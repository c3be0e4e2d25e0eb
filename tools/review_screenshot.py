"""Make docs/review.png: the review page on scikit-image's astronaut (public domain), in headless Chromium.

Needs /usr/bin/chromium and /usr/bin/chromedriver (.ci/install-browser) and selenium.
Run: PYTHONPATH=src python tools/review_screenshot.py [docs/review.png]
"""
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from skimage import data
from werkzeug.serving import make_server

from faceveil.cli import main
from faceveil.pipeline import AnonymizerConfig
from faceveil.review import ReviewSet, create_app

target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/review.png")
with tempfile.TemporaryDirectory() as tmp:
    src, out = Path(tmp, "photos"), Path(tmp, "out")
    src.mkdir()
    a = data.astronaut()
    Image.fromarray(a).save(src / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(a[:, ::-1])).save(src / "astronaut-missed.png")
    Image.fromarray(np.ascontiguousarray(a[::2, ::2])).save(src / "astronaut-small.png")
    main(["anonymize", str(src), "-o", str(out), "-q"])
    # Pretend the detector missed this one: its output is the original.
    (out / "astronaut-missed.png").write_bytes((src / "astronaut-missed.png").read_bytes())
    rs = ReviewSet(out, src, AnonymizerConfig(), cache_dir=Path(tmp, "cache"))
    srv = make_server("127.0.0.1", 0, create_app(rs, "demo"), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update "
                "--disable-sync --no-first-run --window-size=1100,700 --hide-scrollbars").split():
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(f"http://127.0.0.1:{srv.server_port}/?token=demo")
        time.sleep(1.5)
        driver.find_elements(By.CSS_SELECTOR, "#grid .card")[0].click()
        time.sleep(1.5)
        img = driver.find_element(By.CSS_SELECTOR, "#stage-out img")
        s = img.rect["width"] / a.shape[1]
        x1, y1, x2, y2 = 512 - 282, 44, 512 - 168, 192  # the mirrored face, image pixels
        r = img.rect  # viewport coordinates (the page is not scrolled)
        drag = ActionBuilder(driver)
        drag.pointer_action.move_to_location(round(r["x"] + x1 * s), round(r["y"] + y1 * s)).pointer_down()
        drag.pointer_action.move_to_location(round(r["x"] + x2 * s), round(r["y"] + y2 * s)).pointer_up()
        drag.perform()
        time.sleep(0.5)
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
        srv.shutdown()
shot = Image.open(io.BytesIO(png)).convert("RGB")
shot = shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT)  # keeps the file small for the README
target.parent.mkdir(parents=True, exist_ok=True)
shot.save(target, optimize=True)
print(f"{target}: {shot.size[0]}x{shot.size[1]}, {target.stat().st_size // 1024} KB")
