"""Screenshots of the web console and of MLflow's runs view, for docs/web.md.

Starts a console (and ``mlflow ui``) on loopback in a throw-away directory, runs a
finished study (simulator, real time, short) and starts a longer one, then shoots
with headless Chromium (selenium + Debian's chromium-driver):

    .venv/bin/python tools/web_screenshots.py --out docs/img      # ~3 minutes

Files: web-new-study.png (with a validation error next to its field),
web-running-study.png, web-finished-study.png, web-trial-log.png, web-studies.png,
mlflow-runs-view.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SHORT = ["benchmark.concurrency=[2,4]", "benchmark.max_requests_per_run=6"]
# The verdict line needs the confirmation stage; its smallest form keeps the shot quick.
CONFIRM_SHORT = ["search.confirm.top_k=1", "search.confirm.repeats=2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer")


def start(cmd: list[str], workdir: Path, log: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    return subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdout=open(workdir / log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def study(base: str, overrides: list[str], until: str) -> dict:
    """Launch a study and wait until ``until`` (finished | a trial running)."""
    sid = httpx.post(f"{base}/api/studies", json={"overrides": overrides}, timeout=60).json()["id"]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        st = httpx.get(f"{base}/api/studies/{sid}", timeout=30).json()
        if until == "finished" and st["status"] != "running":
            return st
        if until == "trial" and st.get("current") and st["current"]["phase"] != "deploying":
            return st
        time.sleep(1)
    raise SystemExit(f"study {sid} did not reach {until}")


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def shoot(
    driver, url: str, path: Path, settle_s: float = 3.0, before=None, ready: str | None = None
) -> None:
    driver.get(url)
    if ready:
        from selenium.webdriver.support.ui import WebDriverWait

        # MLflow's single-page app renders its table late on a loaded machine.
        WebDriverWait(driver, 180).until(lambda d: ready in d.page_source)
    time.sleep(settle_s)
    if before:
        before(driver)
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def bad_flag(driver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The page's script binds the form once its first validation answered (as the
    # browser test waits): a click before that adds no row.
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: d.find_element(By.ID, "form-status").text.strip() == "valid")
    driver.find_element(By.ID, "add-flag").click()
    row = driver.find_elements(By.CSS_SELECTOR, ".space-row")[-1]
    row.find_element(By.CSS_SELECTOR, "input.flag").send_keys("mem-fraction-statik")
    row.find_element(By.CSS_SELECTOR, "input.values").send_keys("0.7,0.8")
    driver.find_element(By.ID, "f-concurrency").send_keys("8, 32, 64")
    time.sleep(3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="web-shots-"))
    port, mport = free_port(), free_port()
    base, mlflow_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}"
    procs = [
        start(
            [sys.executable, "-m", "autotune.web", "--port", str(port), "--mlflow-url", mlflow_url],
            workdir,
            "console.log",
        )
    ]
    driver = None
    try:
        wait_http(base + "/api/studies")
        done = study(base, ["params.mem=0.7,0.8,0.9", *SHORT, *CONFIRM_SHORT], "finished")
        running = study(
            base, ["params.mem=0.7,0.75,0.8,0.85", *SHORT, "deploy.startup_s=20"], "trial"
        )
        driver = browser(1400, 1500)
        shoot(driver, base + "/new", out / "web-new-study.png", before=bad_flag)
        shoot(driver, base + "/", out / "web-studies.png")
        shoot(driver, f"{base}/studies/{running['id']}", out / "web-running-study.png")
        shoot(driver, f"{base}/studies/{done['id']}", out / "web-finished-study.png")
        trial = running["current"]["run_id"]
        shoot(driver, f"{base}/trials/{trial}", out / "web-trial-log.png", settle_s=6)
        httpx.post(f"{base}/api/studies/{running['id']}/stop", json={}, timeout=30)
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "ui",
                    "--port",
                    str(mport),
                    "--backend-store-uri",
                    f"sqlite:///{workdir / 'mlflow.db'}",
                ],
                workdir,
                "mlflow.log",
            )
        )
        wait_http(mlflow_url, 180)
        from autotune.tracking.links import runs_view_url as experiment_url

        exp_link = experiment_url(mlflow_url, done["experiment_id"])
        shoot(driver, exp_link, out / "mlflow-runs-view.png", settle_s=5, ready="Run Name")
    finally:
        if driver is not None:
            driver.quit()
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        for launch in (workdir / ".autotune-web" / "launches").glob("*.json"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(json.loads(launch.read_text())["pid"], signal.SIGINT)


if __name__ == "__main__":
    main()
