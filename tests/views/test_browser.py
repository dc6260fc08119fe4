"""The report and the explorer in a real headless Chromium: pictures load, a slider or the pad
changes the decoded image, two clicks interpolate, and the console stays free of errors.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them) and Selenium (the test
extra); without them these tests skip and say so. Set AEGEN_SCREENSHOTS=DIR to keep screenshots.
"""

import os
import threading
from pathlib import Path

import pytest

pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[test]'")
pytest.importorskip("flask", reason="the explorer needs Flask: pip install 'aegen[explore]'")

from browser import CHROMEDRIVER, CHROMIUM, MISSING, start_chromium, wait_for  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from aegen.views.explore import make_server  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("AEGEN_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


@pytest.fixture
def explorer_url(request):
    """Serve a run's explorer on a free port for the length of one test."""
    servers = []

    def serve(run_dir: Path) -> str:
        server = make_server(run_dir, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


# The decoded <img>'s pixels as a string, read through a canvas (the blob URL is same-origin).
PIXELS = """
const image = document.getElementById('decoded');
const canvas = document.createElement('canvas');
canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
const context = canvas.getContext('2d');
context.drawImage(image, 0, 0);
return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data).join(',');
"""


def decoded_updates(driver) -> int:
    return int(driver.find_element(By.ID, "decoded").get_attribute("data-updates"))


def load_explorer(driver, url: str) -> str:
    driver.get_log("browser")  # forget earlier pages' messages
    driver.get(url)
    wait_for(lambda: decoded_updates(driver) >= 1)
    return driver.execute_script(PIXELS)


def changed_image(driver, before_updates: int, before_pixels: str) -> str:
    wait_for(lambda: decoded_updates(driver) > before_updates)
    pixels = wait_for(lambda: (p := driver.execute_script(PIXELS)) != before_pixels and p)
    return pixels


def test_explorer_sliders_of_the_3d_ae_change_the_image(browser, trained_runs, explorer_url):
    pixels = load_explorer(browser, explorer_url(trained_runs["ae"].run_dir))
    sliders = browser.find_elements(By.CSS_SELECTOR, "input[type=range]")
    assert (
        len(sliders) == 3
        and "ae on mnist-5k, 3-d code" in browser.find_element(By.ID, "summary").text
    )
    updates = decoded_updates(browser)
    sliders[0].click()
    sliders[0].send_keys(Keys.END)  # move z1 to the end of its range, as a keyboard user would
    changed_image(browser, updates, pixels)
    value, high, step = (float(sliders[0].get_attribute(a)) for a in ("value", "max", "step"))
    assert high - step <= value <= high  # at the end of the range (up to the slider's step)
    screenshot(browser, "explore-ae.png")
    assert console_errors(browser) == []


def test_explorer_interpolates_between_two_clicked_images(browser, trained_runs, explorer_url):
    pixels = load_explorer(browser, explorer_url(trained_runs["vae"].run_dir))
    assert len(browser.find_elements(By.CSS_SELECTOR, "input[type=range]")) == 6  # PC1..PC6
    gallery = browser.find_elements(By.CSS_SELECTOR, "#gallery img")
    updates = decoded_updates(browser)
    gallery[0].click()  # jumps to the first image's code
    changed_image(browser, updates, pixels)
    gallery[1].click()
    strip = browser.find_element(By.ID, "interpolation")
    wait_for(
        lambda: (
            strip.is_displayed()
            and browser.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", strip
            )
            == 2 + 10 * 30
        )
    )
    assert "interpolation from image 0 to image 1" in browser.find_element(By.ID, "status").text
    screenshot(browser, "explore-vae.png")
    assert console_errors(browser) == []


def test_explorer_pad_of_a_2d_code(browser, tmp_path, explorer_url):
    from aegen.training.run import train

    run = train(
        "vae", epochs=1, model_options={"latent_dim": 2}, out=tmp_path / "vae2", progress=False
    )
    pixels = load_explorer(browser, explorer_url(run.run_dir))
    pad = browser.find_element(By.ID, "pad")
    assert browser.find_elements(By.CSS_SELECTOR, "input[type=range]") == []
    updates = decoded_updates(browser)
    ActionChains(browser).move_to_element_with_offset(pad, 120, -120).click().perform()
    changed_image(browser, updates, pixels)
    assert console_errors(browser) == []


def test_report_opens_with_every_picture(browser, trained_runs, tmp_path):
    from aegen.views.report import write_report

    path = write_report(
        [trained_runs["ae"].run_dir, trained_runs["vae"].run_dir], tmp_path / "report.html"
    )
    browser.get_log("browser")
    browser.get(path.resolve().as_uri())
    wait_for(lambda: browser.execute_script("return document.readyState") == "complete")
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"
    )
    embedded = path.read_text().count('src="data:image/png;base64,')
    # each run's four pictures and at least one sampler's samples, every one decoded
    assert embedded >= 10 and len(sizes) == embedded
    assert all(width > 0 for width in sizes)
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.run")) == 2
    assert "aegen report" in browser.title
    screenshot(browser, "report.png")
    assert console_errors(browser) == []
