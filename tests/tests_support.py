"""Helpers importable from any test module (pytest puts tests/ on sys.path)."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from civicsense.settings import MIRROR_DATA, Settings  # noqa: F401  (re-exported for tests)

ROOT = Path(__file__).resolve().parents[1]  # the repository
FIXTURES = ROOT / "tests" / "fixtures"  # our own small files
MODEL_NAME = Settings.model_fields["model_name"].default  # what the tests' servers publish


def require_mirror_dir() -> Path:
    """The SemEval mirror, or skip with the reason."""
    if not MIRROR_DATA.is_dir():
        pytest.skip(f"data mirror absent: {MIRROR_DATA} (CI provides ../shared/data)")
    return MIRROR_DATA


# Three posts of our own in TweetEval's layout. Written at test time, not committed, because
# files named like the benchmark's (`train_text.txt`) look like a copy of the real data.
TWEETEVAL_SAMPLE = {
    "mapping.txt": "0\tnegative\n1\tneutral\n2\tpositive\n",
    "train_text.txt": "I hate this reform\nthe bill was read today\nso happy for everyone @user\n",
    "train_labels.txt": "0\n1\n2\n",
}


def write_tweeteval_sample(folder: Path) -> Path:
    """Write TWEETEVAL_SAMPLE into `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in TWEETEVAL_SAMPLE.items():
        (folder / name).write_text(content)
    return folder


def run_coroutine(coroutine):
    """asyncio.run in a thread of its own: once the extension tests have run, Playwright's sync
    API keeps an event loop running in the main thread for the rest of the session."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


CIVICSENSE = Path(sys.executable).parent / "civicsense"


def send_json(handler, payload: dict, status: int = 200) -> None:
    """Answer a stand-in server's request (a BaseHTTPRequestHandler) with a JSON body."""
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: Sequence[str], port: int, env: dict[str, str], log: Path,
                 timeout: float = 180, cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start a model server (`civicsense serve …`, the container entry point) in its own
    process group; return it and its URL once /v2/health/ready answers 200."""
    with log.open("w") as out:
        process = subprocess.Popen(list(command), env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    stop_server(process)
    pytest.fail(f"server not ready in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group; SIGKILL if it is not gone in 20 s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


def register_champion_and_challenger(settings: Settings):
    """A real MLflow store for `settings`: <model> v1 `champion` (val macro recall 0.61, F1
    0.60) and v2 `challenger` (0.64, 0.63), tagged data versions sha256:1 and sha256:2. Its
    client."""
    from mlflow import MlflowClient  # not at import: most test modules never touch MLflow

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    experiment = client.create_experiment("civicsense", artifact_location=settings.artifact_root)
    client.create_registered_model(settings.model_name)
    for number, recall in ((1, 0.61), (2, 0.64)):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "val_macro_recall", recall)
        client.log_metric(run.info.run_id, "val_macro_f1", recall - 0.01)
        client.create_model_version(settings.model_name, f"{run.info.artifact_uri}/model",
                                    run.info.run_id, tags={"data_version": f"sha256:{number}"})
    client.set_registered_model_alias(settings.model_name, "champion", "1")
    client.set_registered_model_alias(settings.model_name, "challenger", "2")
    return client


# `python -c STAND_IN_SERVER <port>`: the whole of serve() (KServe's ModelServer and its
# uvicorn, as `civicsense serve` runs them) with a stand-in model that needs no training.
STAND_IN_SERVER = """
import sys
import numpy as np
from civicsense.serving import predictor
from civicsense.serving.loading import LoadedModel
from civicsense.serving.server import serve
from civicsense.settings import Settings

class StandIn:
    def score(self, texts):
        rows = np.tile(np.array([0.1, 0.2, 0.7], dtype=np.float32), (len(texts), 1))
        return rows, np.zeros((len(texts), 1))

def load(self):
    self.loaded, self.ready = LoadedModel(StandIn(), "unused", "7", "abc"), True
    return True

predictor.SentimentKServeModel.load = load
serve(Settings(), model_uri="unused", port=int(sys.argv[1]))
"""
