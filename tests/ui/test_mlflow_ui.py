"""`make ui` in Debian's Chromium: the MLflow UI on a real local store (SQLite, a registered
model with a champion and a challenger), bound to 127.0.0.1; the registered model page renders
and lists its aliases."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from civicsense.settings import Settings
from tests_support import ROOT, free_port, register_champion_and_challenger, stop_server

CHROMIUM = Path(os.environ.get("CIVICSENSE_CHROMIUM", "/usr/bin/chromium"))


def require_chromium() -> Path:
    """Debian's Chromium, or skip (locally) / fail (in CI, which installs it)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must provide Chromium at {CHROMIUM}")
    pytest.skip(f"{CHROMIUM} is missing: `apt-get install chromium`")


def registered_store(home: Path) -> Settings:
    """A real MLflow store under home: civicsense-sentiment v1 (champion) and v2 (challenger)."""
    # Explicit URI: the session's MLFLOW_TRACKING_URI (the e2e run's store) must not be used.
    settings = Settings(home=home, mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    register_champion_and_challenger(settings)
    return settings


@pytest.fixture
def mlflow_ui(tmp_path):
    """`make ui PORT=…` on a fresh store, in its own process group (its workers outlive a TERM
    to the parent), until /health answers."""
    if shutil.which("make") is None:
        pytest.skip("make is missing")
    settings = registered_store(tmp_path / "home")
    port = free_port()
    env = {**os.environ, "CIVICSENSE_HOME": str(settings.home_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        process = subprocess.Popen(["make", "-s", "ui", f"PORT={port}"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"make ui exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"MLflow UI not up in 180 s:\n{log.read_text()[-3000:]}")
        yield url, settings, log
    finally:
        stop_server(process)


def test_make_ui_binds_loopback_only(mlflow_ui):
    url, _, log = mlflow_ui
    assert "http://127.0.0.1:" in log.read_text()
    port = url.rsplit(":", 1)[1]
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = {line.split()[1] for line in listening if line.split()[3] == "0A"}  # LISTEN
    assert f"0100007F:{int(port):04X}" in local
    assert f"00000000:{int(port):04X}" not in local


def page_text(url: str, chromium: Path, screenshot: Path) -> str:
    """The page's text once `champion` shows, read in Debian's Chromium."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url, timeout=120_000)
            page.get_by_text("champion").first.wait_for(timeout=120_000)
            page.screenshot(path=str(screenshot))
            return page.inner_text("body")
        finally:
            browser.close()


def test_registered_model_page_lists_champion_in_chromium(mlflow_ui, tmp_path):
    chromium = require_chromium()
    url, settings, _ = mlflow_ui
    # Its own thread: the extension suite's session-long sync Playwright holds this one's loop.
    with ThreadPoolExecutor(1) as pool:
        text = pool.submit(page_text, f"{url}/#/models/{settings.model_name}", chromium,
                           tmp_path / "mlflow-ui.png").result()
    assert settings.model_name in text
    assert "champion" in text and "challenger" in text
    assert "Version 1" in text or "version 1" in text.lower()
