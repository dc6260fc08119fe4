"""Draw the README's screenshots of `aegen report` and `aegen explore` in headless Chromium.

.venv/bin/python docs/screenshots.py runs/ae-mnist-5k runs/vae-mnist-5k
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from browser import start_chromium, wait_for  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from aegen.views.explore import make_server  # noqa: E402
from aegen.views.report import write_report  # noqa: E402


def explorer_screenshot(driver, run_dir: Path, out: Path) -> None:
    """Move the first slider and interpolate between two held-out images, then take the picture."""
    server = make_server(run_dir, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        driver.get(f"http://127.0.0.1:{server.port}/")
        decoded = driver.find_element(By.ID, "decoded")
        wait_for(lambda: int(decoded.get_attribute("data-updates")) >= 1)
        gallery = driver.find_elements(By.CSS_SELECTOR, "#gallery img")
        gallery[0].click()
        gallery[3].click()
        wait_for(lambda: driver.find_element(By.ID, "interpolation").is_displayed())
        slider = driver.find_elements(By.CSS_SELECTOR, "input[type=range]")[0]
        slider.click()
        for _ in range(60):
            slider.send_keys(Keys.ARROW_RIGHT)
        driver.implicitly_wait(1)
        driver.save_screenshot(str(out))
    finally:
        server.shutdown()
        server.server_close()


def main(runs: list[str]) -> None:
    import tempfile

    out = DOCS / "images"
    with tempfile.TemporaryDirectory() as scratch:
        driver = start_chromium(Path(scratch) / "profile")
        try:
            report = write_report([Path(r) for r in runs], Path(scratch) / "report.html")
            driver.set_window_size(1300, 1500)
            driver.get(report.as_uri())
            driver.save_screenshot(str(out / "report.png"))
            driver.set_window_size(1300, 560)
            explorer_screenshot(driver, Path(runs[0]), out / "explore.png")
        finally:
            driver.quit()
    print(f"written: {out / 'report.png'}, {out / 'explore.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
