"""`make report` and `make status` as a user calls them: the latest report's path, served on
127.0.0.1; a clear message and exit 0 on an empty home."""

import os
import subprocess
import time

import requests

from tests_support import ROOT, free_port, stop_server


def make_env(home) -> dict[str, str]:
    env = {**os.environ, "CIVICSENSE_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("CIVICSENSE_REPORTS_URI", None)
    return env


def test_make_report_prints_the_latest_and_serves_the_folder(tmp_path):
    reports = tmp_path / "home" / "reports"
    reports.mkdir(parents=True)
    (reports / "drift-20261201T000000000000Z.html").write_text("<html>older</html>")
    (reports / "drift-20261202T000000000000Z.html").write_text("<html>latest</html>")
    port = free_port()
    log = tmp_path / "report.log"
    with log.open("w") as out:
        process = subprocess.Popen(["make", "-s", "report", f"PORT={port}"], cwd=ROOT,
                                   env=make_env(tmp_path / "home"), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and body is None:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/drift-20261202T000000000000Z.html",
                                    timeout=1).text
            except requests.ConnectionError:
                time.sleep(0.3)
    finally:
        stop_server(process)
    assert body == "<html>latest</html>"
    assert f"latest report: {reports}/drift-20261202T000000000000Z.html" in log.read_text()


def test_make_report_without_reports_says_what_to_run(tmp_path):
    done = subprocess.run(["make", "-s", "report"], cwd=ROOT, env=make_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "run `make monitor` first" in done.stdout


def test_make_status_on_an_empty_home(tmp_path):
    done = subprocess.run(["make", "-s", "status"], cwd=ROOT, env=make_env(tmp_path / "empty"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no model registered yet" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
