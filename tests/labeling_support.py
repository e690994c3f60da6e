"""Helpers of the labeling tests: a real payload log and feedback log written with the
project's own writers, and a real Label Studio (its own venv) started on 127.0.0.1 with SQLite."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from civicsense.labeling.label_studio import LabelStudioClient
from civicsense.monitoring.feedback_log import make_feedback, write_feedback
from civicsense.monitoring.inference_log import make_records, write_records
from civicsense.settings import PROJECT_ROOT, Settings
from tests_support import free_port, stop_server

LABEL_STUDIO = PROJECT_ROOT / ".venv-labelstudio" / "bin" / "label-studio"
NOW = datetime.now(UTC).replace(microsecond=0)


def serve(settings: Settings, texts: Sequence[str], probabilities: Sequence[Sequence[float]],
          when: datetime | None = None, version: str = "7") -> None:
    """Write payload-log records as the server does (one batch, `when` or an hour ago)."""
    labels = [("negative", "neutral", "positive")[max(range(3), key=row.__getitem__)]
              for row in probabilities]
    records = make_records(texts, labels, probabilities, version,
                           when=when or NOW - timedelta(hours=1))
    write_records(records, settings.inference_log, settings, writer="test")


def feedback(settings: Settings, text: str, label: str, client: str, n: int = 1,
             when: datetime | None = None, predicted: str = "positive") -> None:
    """`n` feedback records of one client on one post, a second apart."""
    start = when or NOW - timedelta(minutes=30)
    records = [make_feedback(text, label, predicted, "7", client,
                             when=start + timedelta(seconds=i)) for i in range(n)]
    write_feedback(records, settings.feedback_log, settings, writer="test")


@dataclass
class LabelStudioServer:
    """A running Label Studio: its URL, a user's legacy API token, the process and its log."""

    url: str
    token: str
    process: subprocess.Popen
    log: Path

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.url, self.token)


def label_studio_missing_reason() -> str | None:
    """Why the real Label Studio tests cannot run here, or None."""
    if not LABEL_STUDIO.exists():
        return (f"no Label Studio venv at {LABEL_STUDIO.parent.parent} (make "
                "label-studio-venv)")
    return None


def start_label_studio(data_dir: Path, timeout: float = 300.0) -> LabelStudioServer:
    """Label Studio on 127.0.0.1 (SQLite in `data_dir`), in its own process group, with one
    user whose legacy API token is known; returns once /health answers UP."""
    port, token = free_port(), secrets.token_hex(20)
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
           "LABEL_STUDIO_USERNAME": "annotator@example.com",
           "LABEL_STUDIO_PASSWORD": secrets.token_urlsafe(16), "LABEL_STUDIO_USER_TOKEN": token,
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
           "FRONTEND_SENTRY_DSN": "", "DJANGO_DB": "sqlite"}
    log = data_dir / "label-studio.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p",
             str(port), "--enable-legacy-api-token"], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=data_dir)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Label Studio exited {process.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).json().get("status") == "UP":
                return LabelStudioServer(url, token, process, log)
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    stop_label_studio(process)
    raise RuntimeError(f"Label Studio not healthy in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_label_studio(process: subprocess.Popen) -> None:
    """Stop Label Studio's process group (TERM, then KILL)."""
    stop_server(process)
