"""Shared fixtures: the data mirror, isolated state directories, and one real pipeline run."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from civicsense.settings import MIRROR_DATA, Settings
from tests_support import require_mirror_dir, send_json

FIXTURES = Path(__file__).parent / "fixtures"
STANCE_DATA = MIRROR_DATA.parent / "tweeteval-stance"
E2E_SAMPLE = 4000


@pytest.fixture
def mirror() -> Path:
    return require_mirror_dir()


@pytest.fixture
def civicsense_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a fresh state directory, exported so subprocesses and Feast agree."""
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Settings()


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory,
                 pytestconfig: pytest.Config) -> Iterator[tuple[Settings, dict]]:
    """One real local pipeline run (`civicsense run` in a pseudo-terminal, as a user runs it) on
    a mirror sample: a state directory whose MLflow registry holds civicsense-sentiment@champion,
    and the run's summary. Announced on the terminal: it takes minutes. What the run left on its
    terminal is kept beside the home, in <home>-terminal.out, for the tests of the console."""
    require_mirror_dir()
    from terminal_support import run_in_terminal

    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def announce(line: str) -> None:
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():  # fixtures' output is captured otherwise
            reporter.ensure_newline()
            reporter.write_line(f"e2e setup: {line}")

    home = tmp_path_factory.mktemp("trained-home")
    saved = {k: os.environ.get(k) for k in ("CIVICSENSE_HOME", "CIVICSENSE_DATA",
                                            "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ["CIVICSENSE_HOME"] = str(home)
    os.environ["CIVICSENSE_DATA"] = str(MIRROR_DATA)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    try:
        settings = Settings(data=str(MIRROR_DATA))
        summary_path = home.parent / f"{home.name}-summary.json"
        announce(f"training the session's model: `civicsense run --sample-size {E2E_SAMPLE}` "
                 f"in {home} (a few minutes; each step is printed as it ends)")
        code, raw = run_in_terminal(
            [sys.executable, "-m", "civicsense.cli", "run", "--sample-size", str(E2E_SAMPLE),
             "--summary-json", str(summary_path)], dict(os.environ),
            on_line=lambda line: announce(line) if line.startswith(("[", "pipeline")) else None)
        (home.parent / f"{home.name}-terminal.out").write_text(raw)
        assert code == 0, f"civicsense run failed ({code}):\n{raw[-3000:]}"
        summary = json.loads(summary_path.read_text())
        # What the in-process runner used to leave behind, which the tests rely on.
        os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
        yield Settings(data=str(MIRROR_DATA)), summary
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _mlflow_uris_do_not_leak() -> Iterator[None]:
    """mlflow.set_tracking_uri / set_registry_uri (configure_mlflow calls both) change process
    globals and export env vars that child processes inherit: put both back after each test,
    so one test's registry never becomes the next test's."""
    saved = {key: os.environ.get(key) for key in MLFLOW_URI_VARIABLES}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if tracking is not None:
        tracking._tracking_uri = saved["MLFLOW_TRACKING_URI"]
    registry = sys.modules.get("mlflow.tracking._model_registry.utils")
    if registry is not None:
        registry._registry_uri = saved["MLFLOW_REGISTRY_URI"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark by what a test needs, so `make test-fast` can leave the slow kinds out: anything
    that uses the session's real pipeline run is `e2e`; the extension's Chromium tests are
    `browser`; tests/container are `container`; a real Label Studio is `labelstudio`."""
    for item in items:
        parts = item.path.parts
        if "trained_home" in item.fixturenames or "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
        if ("extension" in parts and "browser" in item.fixturenames) or "ui" in parts:
            item.add_marker(pytest.mark.browser)
        if "container" in parts:
            item.add_marker(pytest.mark.container)
        if "label_studio" in item.fixturenames:
            item.add_marker(pytest.mark.labelstudio)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One real Label Studio 1.23 for the session (`make label-studio-venv`), on 127.0.0.1 with
    SQLite in a fresh data dir and one user whose API token is `.token` (legacy `Token` auth).
    Without the venv the test fails under CI=true (CI must build it) and skips elsewhere."""
    from labeling_support import label_studio_missing_reason, start_label_studio, stop_label_studio

    missing = label_studio_missing_reason()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{missing}: CI must run `make label-studio-venv` first")
        pytest.skip(missing)
    server = start_label_studio(tmp_path_factory.mktemp("label-studio"))
    try:
        yield server
    finally:
        stop_label_studio(server.process)


@pytest.fixture
def gcs(monkeypatch):
    """gcp-storage-emulator in process with a `civicsense-monitoring` bucket."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="civicsense-monitoring")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST",
                       f"http://127.0.0.1:{server._api._httpd.server_port}")
    yield "gs://civicsense-monitoring"
    server.stop()


@pytest.fixture
def kfp_api():
    """A stand-in for the Kubeflow Pipelines REST API (v2beta1) that records what the real
    kfp.Client sends: healthz, experiment lookup, recurring-run creation."""
    calls: list[tuple[str, str, dict | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def _send(self, payload: dict) -> None:
            send_json(self, payload)

        def do_GET(self):  # noqa: N802
            calls.append(("GET", self.path, None))
            if self.path.startswith("/apis/v2beta1/experiments"):
                self._send({"experiments": [{"experiment_id": "exp-1",
                                             "display_name": "civicsense"}], "total_size": 1})
            else:
                self._send({})

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            calls.append(("POST", self.path, body))
            self._send({**body, "recurring_run_id": "rr-1"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", calls
    server.shutdown()
