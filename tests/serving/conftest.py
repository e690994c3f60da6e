"""One real model server per test module: `civicsense serve` on a free port, serving the
champion that the session's real pipeline run (trained_home) registered."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], *args: str, log: Path) -> tuple[subprocess.Popen, str]:
    """Start `civicsense serve` in its own process group; return it once /v2/health/ready."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen([str(BIN / "civicsense"), "serve", "--port", str(port), *args],
                                   env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    stop_server(process)
    raise RuntimeError(f"server not ready in 120 s:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(trained_home, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of a server with small limits, so the limit checks are cheap."""
    env = {**os.environ, "CIVICSENSE_MAX_BATCH": "64", "CIVICSENSE_MAX_TEXT_CHARS": "500"}
    log = tmp_path_factory.mktemp("serve") / "server.log"
    process, url = start_server(env, log=log)
    try:
        yield url, process
    finally:
        stop_server(process)
