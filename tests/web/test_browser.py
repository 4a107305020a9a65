"""The console in a real headless browser (Debian's chromium + chromium-driver, selenium).

One console process and one browser for the module; studies on the simulator in
real time, kept short (one concurrency level, a few requests). Skips, saying why,
when the browser or its driver is not installed (.ci/run installs them as root).
"""

from __future__ import annotations

import shutil
import time

import httpx
import pytest
from console_process import ConsoleProcess, stop_launches

from autotune.web.launches import Launches

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver fonts-dejavu-core; .ci/run does it as root)",
    ),
]
# Short real-time simulator trials: a visible 'deploying' phase, one small level.
# Short studies: the confirmation stage (12 more real-time runs) is tested elsewhere.
SHORT = [
    "benchmark.concurrency=[2]",
    "benchmark.max_requests_per_run=4",
    "search.confirm.enabled=false",
]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("console")
    proc = ConsoleProcess(workdir)
    yield proc
    proc.stop()
    stop_launches(workdir / ".autotune-web")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(driver, timeout=60):
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def text_of(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    try:
        return found[0].text if found else ""
    except Exception:  # replaced by a live refresh between find and read
        return ""


def click(driver, element_id: str) -> bool:
    """Click an element that a live refresh may replace at any moment."""
    try:
        driver.find_element(By.ID, element_id).click()
        return True
    except (NoSuchElementException, StaleElementReferenceException):
        return False


def test_form_validates_then_launches_and_the_study_finishes(console, browser):
    browser.get(console.url + "/new")
    wait(browser).until(lambda d: text_of(d, "#form-status") == "valid")
    browser.find_element(By.ID, "add-flag").click()
    row = browser.find_elements(By.CSS_SELECTOR, ".space-row")[-1]
    row.find_element(By.CSS_SELECTOR, "input.flag").send_keys("mem-fraction-statik")
    row.find_element(By.CSS_SELECTOR, "input.values").send_keys("0.7,0.8")
    # The CLI's own error, next to the field that caused it.
    wait(browser).until(
        lambda d: "unknown flag" in row.find_element(By.CSS_SELECTOR, ".field-error").text
    )
    assert (
        "Did you mean: mem-fraction-static"
        in row.find_element(By.CSS_SELECTOR, ".field-error").text
    )
    assert not browser.find_element(By.ID, "launch").is_enabled()
    flag = row.find_element(By.CSS_SELECTOR, "input.flag")
    flag.clear()
    # The alias: the default grid already sweeps params.mem (the native name as well
    # would set the flag twice).
    flag.send_keys("mem")
    browser.find_element(By.ID, "f-extra").send_keys("\n".join([*SHORT, "deploy.startup_s=4"]))
    wait(browser).until(lambda d: text_of(d, "#form-status") == "valid")
    assert row.find_element(By.CSS_SELECTOR, ".field-error").text == ""
    command = text_of(browser, "#command")
    assert "params.mem=0.7,0.8" in command and "deploy.startup_s=4" in command
    browser.find_element(By.ID, "launch").click()
    # The launch id's page turns into the study's page once its MLflow run exists.
    wait(browser, 90).until(
        lambda d: "/studies/" in d.current_url and "/studies/l-" not in d.current_url
    )
    phases: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        phase = text_of(browser, "#trial-phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        if text_of(browser, "#study-status") in ("finished", "failed", "stopped"):
            break
        time.sleep(0.3)
    assert text_of(browser, "#study-status") == "finished", phases
    assert "deploying" in phases and len(phases) >= 2, phases  # watched it change live
    assert "2 done, 0 failed of 2" in text_of(browser, "#study-progress")
    assert "best trial-00" in text_of(browser, "#verdict")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr")) == 2
    links = [a.get_attribute("href") for a in browser.find_elements(By.PARTIAL_LINK_TEXT, "MLflow")]
    assert any(h.endswith("/runs?workflowType=machine_learning") for h in links), links
    # Logs are kept afterwards: with the sweep directory gone, the engine log comes from
    # the trial's MLflow artifacts.
    sid = browser.current_url.rsplit("/", 1)[1]
    best = httpx.get(f"{console.url}/api/studies/{sid}", timeout=30).json()["best"]["run_id"]
    log_url = f"{console.url}/api/trials/{best}/logs/engine"
    here = httpx.get(log_url, timeout=30).json()["text"]
    assert "Started server process" in here
    shutil.rmtree(console.workdir / "multirun")
    kept = httpx.get(log_url, timeout=30)
    assert kept.status_code == 200 and kept.json()["text"] == here
    assert httpx.get(f"{console.url}/api/trials/{best}/logs/trial", timeout=30).status_code == 404


def test_live_log_then_stop_a_running_study(console, browser):
    r = httpx.post(
        console.url + "/api/studies",
        json={"overrides": ["params.mem=0.7,0.75,0.8", *SHORT, "deploy.startup_s=30"]},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    deadline, st = time.monotonic() + 90, {}
    while time.monotonic() < deadline:  # until its first trial runs
        st = httpx.get(f"{console.url}/api/studies/{sid}", timeout=30).json()
        if st.get("current"):
            break
        time.sleep(1)
    assert st.get("current"), st
    # The trial's engine log, streamed while the engine is still starting.
    browser.get(f"{console.url}/trials/{st['current']['run_id']}")
    wait(browser, 60).until(lambda d: text_of(d, "#log").strip() != "")
    assert "running" in text_of(browser, "#trial-status")
    first = text_of(browser, "#log")
    assert "(no engine log" not in first
    # Stop from the study page: Ctrl-C's path; the study ends 'stopped', not 'failed'.
    browser.get(f"{console.url}/studies/{st['id']}")
    wait(browser).until(lambda d: click(d, "stop-button"))
    wait(browser, 10).until(EC.alert_is_present()).accept()
    wait(browser, 120).until(lambda d: text_of(d, "#study-status") == "stopped")
    final = httpx.get(f"{console.url}/api/studies/{sid}", timeout=30).json()
    assert final["status"] == "stopped" and final["trials_done"] < 3
    launch = Launches(console.workdir / ".autotune-web", console.workdir).get(sid)
    wait(browser, 30).until(lambda d: not launch.alive())  # the study process has exited
