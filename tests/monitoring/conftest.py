"""Fixtures for the monitoring tests: an in-process GCS emulator, a stub KFP API server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


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
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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
