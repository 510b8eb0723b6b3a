"""The MLflow UI, in real headless Chromium, shows the smoke suite's claim runs and metrics."""

import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest

from ablations.claims import CLAIMS
from conftest import CHROMEDRIVER, mlflow_server

SHOTS = "ALEXNET_SCREENSHOTS"  # a folder to keep the screenshot in (docs/img: the MLflow page's picture)


@pytest.fixture
def mlflow_ui(smoke_suite):
    workdir, _ = smoke_suite
    with mlflow_server(f"sqlite:///{workdir}/mlflow.db", workdir) as (url, _):
        yield url, workdir


@pytest.fixture
def browser():  # the browser marker's guard has checked for chromedriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.mark.browser
@pytest.mark.mlflow_server
def test_ui_lists_claim_runs_and_shows_their_metrics(mlflow_ui, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, workdir = mlflow_ui
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    exp_id = mlflow.get_experiment_by_name("alexnet-claims").experiment_id
    search = urllib.parse.quote_plus("tags.kind = 'claim'")
    browser.get(f"{url}/#/experiments/{exp_id}/runs?searchFilter={search}")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: "suite smoke" in d.find_element(By.TAG_NAME, "body").text)
    for expander in browser.find_elements(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']"):
        expander.click()  # claim runs are nested under the suite run
    # each claim run is named with its verdict: "relu — inconclusive (smoke proxy)", "shapes — reproduced"
    names = [c.id for c in CLAIMS if not c.optional]
    verdicts = ("reproduced", "contradicted", "inconclusive")
    wait.until(lambda d: all(any(d.find_elements(By.PARTIAL_LINK_TEXT, f"{n} — {v}") for v in verdicts)
                             for n in names))
    browser.save_screenshot(str(tmp_path / "runs.png"))
    assert (tmp_path / "runs.png").stat().st_size > 20_000  # a page, not a blank
    if os.environ.get(SHOTS):  # the docs' picture of the claim runs: ALEXNET_SCREENSHOTS=docs/img
        shutil.copy(tmp_path / "runs.png", Path(os.environ[SHOTS]) / "mlflow-claim-runs.png")

    browser.find_elements(By.PARTIAL_LINK_TEXT, "relu — ")[0].click()
    wait.until(lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in ("cohens_d", "suite smoke")))
    text = browser.find_element(By.TAG_NAME, "body").text
    # seed aggregates and error bars per arm (MLflow computes none), the Holm-adjusted p and the power figures
    for shown in ("Metrics", "mean_a", "mean_b", "p", "verdict", "Parent run", "suite smoke", "test_acc.relu.mean",
                  "test_acc.sigmoid.ci_high", "p_holm", "seeds_needed", "power"):
        assert shown in text
    assert any(v in text for v in verdicts)
    # the run's description is the claim's section of claims.md, rendered: statement, verdict and why
    assert "The lecture says: ReLU instead of sigmoid" in text
    assert "relu: inconclusive (smoke proxy) — relu vs sigmoid lacks" in text
