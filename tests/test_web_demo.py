"""The web demo in a real browser: ``addressclip demo`` in a subprocess, driven by Debian's headless Chromium.

A query photo of the tiny demo city gets the pipeline's own top address, the city map and the similarity map; a
corrupted upload gets the pipeline's error text; the page loads nothing from outside localhost; the upload is gone
after the answer. Screenshots go to ``$ADDRESSCLIP_ARTIFACTS`` (or the test's tmp folder); their paths are printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fixtures.tiny_models import save_tiny_model

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCRIPT = str(Path(sys.executable).with_name("addressclip"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web_demo")


@pytest.fixture(scope="module")
def model_dir(workdir, tiny_demo_dir) -> Path:
    """A tiny random model whose address bank is the tiny demo city's addresses (so the map can place them)."""
    from addressclip_train.similarity_map import load_split

    addresses = sorted(set(load_split(str(tiny_demo_dir), "train")["address"]))
    return save_tiny_model(workdir / "model", addresses=tuple(addresses))


@pytest.fixture(scope="module")
def server(workdir, model_dir, tiny_demo_dir):
    """``addressclip demo`` on a free localhost port; yields (url, its gradio upload folder)."""
    port, uploads = free_port(), workdir / "gradio"
    env = dict(os.environ, GRADIO_TEMP_DIR=str(uploads), GRADIO_ANALYTICS_ENABLED="False")
    log = (workdir / "server.log").open("w")
    command = [SCRIPT, "demo", "--model", str(model_dir), "--dataset", str(tiny_demo_dir), "--port", str(port)]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"addressclip demo did not start:\n{(workdir / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield url, uploads
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `bash .ci/browser-deps.sh` (Debian chromium + chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts(workdir) -> Path:
    folder = Path(os.environ.get("ADDRESSCLIP_ARTIFACTS") or workdir / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def upload(driver, url: str, path: Path) -> float:
    """Open the page, give ``path`` to the photo input; returns the submit time."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    field = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
    start = time.perf_counter()
    field.send_keys(str(path))
    return start


def loaded_image(driver, elem_id: str) -> tuple[int, int] | None:
    """Natural size of the rendered <img> inside ``#elem_id``, or None while there is none."""
    size = driver.execute_script(
        "const i = document.querySelector(arguments[0] + ' img');"
        "return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null;",
        f"#{elem_id}",
    )
    return tuple(size) if size else None


def shot(driver, artifacts: Path, name: str) -> Path:
    path = artifacts / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_only_files_in_gradios_upload_folder_are_deleted(tmp_path, monkeypatch):
    from addressclip_train.web_demo import forget_upload

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    upload, elsewhere = tmp_path / "uploads" / "abc123" / "photo.jpg", tmp_path / "photo.jpg"
    for path in (upload, elsewhere):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    forget_upload({"path": str(elsewhere)})
    forget_upload({"path": str(upload)})
    forget_upload(None)
    assert elsewhere.exists() and not upload.parent.exists()


def test_demo_without_a_dataset_folder_is_a_one_line_error(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    proc = subprocess.run([SCRIPT, "demo", "--model", str(model), "--dataset", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "--dataset" in proc.stderr and "does not exist" in proc.stderr


@pytest.mark.slow
def test_query_photo_gets_the_pipelines_top_address_and_both_maps(
    browser, server, model_dir, tiny_demo_dir, workdir, artifacts
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from addressclip_train.cli import load_localizer
    from addressclip_train.web_demo import load_splits, write_examples

    url, uploads = server
    rows = load_splits(tiny_demo_dir)["query"]
    folder = workdir / "query"  # the split's last photo: not one of the gallery's examples (those are never deleted)
    folder.mkdir(exist_ok=True)
    query = Path(write_examples(rows.select([len(rows) - 1]), folder, count=1)[0][0])
    query = query.rename(query.with_stem("query"))
    expected = load_localizer(model_dir)(str(query), top_k=5)[0]["address"]
    start = upload(browser, url, query)
    wait = WebDriverWait(browser, 30, poll_frequency=0.02)
    shown = wait.until(lambda d: d.find_elements(By.ID, "best-address") and loaded_image(d, "city-map"))
    elapsed = time.perf_counter() - start
    print(f"submit -> rendered result (best address + city map): {elapsed * 1000:.0f} ms")
    assert browser.find_element(By.ID, "best-address").text.strip() == expected
    assert shown[0] > 0 and shown[1] > 0
    assert expected in browser.find_element(By.ID, "ranking").text
    assert wait.until(lambda d: loaded_image(d, "explain"))
    print(f"submit -> similarity map rendered: {(time.perf_counter() - start) * 1000:.0f} ms")
    shot(browser, artifacts, "web-demo-result.png")
    leftover = [p for p in uploads.rglob(query.name)]
    assert not leftover, f"the upload was kept after the answer: {leftover}"
    outside = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith(location.origin) && !n.startsWith('data:') && !n.startsWith('blob:'));"
    )
    assert not outside, f"the page loaded resources from outside localhost: {outside}"


@pytest.mark.slow
def test_corrupted_upload_shows_the_pipelines_error_text(browser, server, model_dir, workdir, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from addressclip_train.cli import load_localizer
    from modeling_addressclip import ImageLoadError

    bad = workdir / "corrupted.jpg"
    bad.write_bytes(b"\xff\xd8 not really a JPEG " * 64)
    with pytest.raises(ImageLoadError) as err:
        load_localizer(model_dir)(str(bad))
    message = str(err.value).replace(str(bad), bad.name)
    upload(browser, server[0], bad)
    shown = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "upload-error"))
    shot(browser, artifacts, "web-demo-error.png")
    assert message in shown[0].text
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text


@pytest.mark.slow
def test_example_gallery_click_localizes_that_photo(browser, server, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server[0])
    thumbs = WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#examples button img"))
    thumbs[0].click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "best-address") and loaded_image(d, "city-map"))
    WebDriverWait(browser, 30).until(lambda d: loaded_image(d, "explain"))
    shot(browser, artifacts, "web-demo-example.png")
    browser.get(server[0])  # the example photos survive an answer (gradio's cache shares their files with uploads)
    loaded = "return [...document.querySelectorAll('#examples button img')].map(i => i.complete && i.naturalWidth > 0)"
    assert WebDriverWait(browser, 30).until(lambda d: (s := d.execute_script(loaded)) and all(s))


def test_city_map_markers_stay_on_the_background_they_are_drawn_over(tiny_demo_dir):
    """An answer's markers use the background's axes limits (a re-autoscale had put them off their streets)."""
    import datasets

    from addressclip_train.web_map import CityMap

    splits = datasets.load_dataset(str(tiny_demo_dir))
    city = CityMap([splits[name] for name in ("train", "database", "query")])
    limits = (city.ax.get_xlim(), city.ax.get_ylim())
    far = sorted(city.centres, key=lambda a: city.centres[a][0])  # the westmost and eastmost addresses
    picture = city.render([{"address": far[0], "score": 0.5}, {"address": far[-1], "score": 0.2}])
    assert picture.size[0] > 0 and (city.ax.get_xlim(), city.ax.get_ylim()) == limits
    for address in (far[0], far[-1]):
        east, north = city.centres[address]
        assert limits[0][0] <= east <= limits[0][1] and limits[1][0] <= north <= limits[1][1]
