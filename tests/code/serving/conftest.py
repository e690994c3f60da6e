"""One real model server per test module: `civicsense serve` on a free port, serving the
champion that the session's real pipeline run (trained_home) registered."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests_support import CIVICSENSE, free_port, start_server, stop_server


@pytest.fixture(scope="module")
def server(trained_home, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of a server with small limits, so the limit checks are cheap."""
    env = {**os.environ, "CIVICSENSE_MAX_BATCH": "64", "CIVICSENSE_MAX_TEXT_CHARS": "500"}
    log = tmp_path_factory.mktemp("serve") / "server.log"
    port = free_port()
    process, url = start_server([str(CIVICSENSE), "serve", "--port", str(port)], port, env, log,
                                timeout=120)
    try:
        yield url, process
    finally:
        stop_server(process)
