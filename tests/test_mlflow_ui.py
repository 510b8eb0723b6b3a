"""The MLflow UI, in real headless Chromium, shows the smoke suite's claim runs and metrics."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import mlflow
import pytest

from ablations.claims import CLAIMS

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(smoke_suite):
    workdir, _ = smoke_suite
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{workdir}/mlflow.db", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/health", timeout=2).read() == b"OK":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not answer /health within 90 s")
    yield url, workdir
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def browser():
    if not os.path.exists(CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromedriver missing: .ci/run installs Debian's chromium and chromium-driver")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def test_ui_lists_claim_runs_and_shows_their_metrics(mlflow_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, workdir = mlflow_server
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    exp_id = mlflow.get_experiment_by_name("alexnet-claims").experiment_id
    search = urllib.parse.quote_plus("tags.kind = 'claim'")
    browser.get(f"{url}/#/experiments/{exp_id}/runs?searchFilter={search}")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: "suite smoke" in d.find_element(By.TAG_NAME, "body").text)
    for expander in browser.find_elements(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']"):
        expander.click()  # claim runs are nested under the suite run
    names = [c.id for c in CLAIMS if not c.optional]
    wait.until(lambda d: all(d.find_elements(By.LINK_TEXT, n) for n in names))
    browser.save_screenshot(str(tmp_path / "runs.png"))

    browser.find_elements(By.LINK_TEXT, "relu")[0].click()
    wait.until(lambda d: "cohens_d" in d.find_element(By.TAG_NAME, "body").text)
    text = browser.find_element(By.TAG_NAME, "body").text
    for shown in ("Metrics", "mean_a", "mean_b", "p", "verdict", "Parent run", "suite smoke"):
        assert shown in text
    assert any(v in text for v in ("reproduced", "contradicted", "inconclusive"))
