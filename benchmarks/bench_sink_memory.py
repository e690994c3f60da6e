"""The log sink's memory under the issue-12 attack: a real `civicsense sink` (default limits,
a token) on 127.0.0.1 gets (1) ten 47 MB events, (2) 100 unmatched request halves of the
largest size the body limit allows (≈ 6.3 MB each, 10× the 64 MiB budget), (3) 200 spoofed
events; prints the answers, the sink's RSS before, at peak (sampled every 50 ms) and after,
and its /stats.

    .venv/bin/python benchmarks/bench_sink_memory.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import requests

from civicsense.monitoring.sink import REQUEST_TYPE
from civicsense.settings import Settings

CIVICSENSE = Path(sys.executable).parent / "civicsense"
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: bytes, event_id: str, token: str | None = TOKEN) -> str:
    headers = {"ce-id": event_id, "ce-type": REQUEST_TYPE, "content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        return str(requests.post(f"{url}/events", data=body, headers=headers,
                                 timeout=30).status_code)
    except requests.Timeout:
        return "hang"
    except requests.ConnectionError:  # the sink closed a 413 connection mid-upload
        return "closed"


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as home:
        env = {**os.environ, "CIVICSENSE_HOME": home, "CIVICSENSE_SINK_TOKEN": TOKEN,
               "CIVICSENSE_INFERENCE_LOG_URI": f"{home}/log"}
        process = subprocess.Popen([str(CIVICSENSE), "sink", "--host", "127.0.0.1", "--port",
                                    str(port)], env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if requests.get(f"{url}/healthz", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    time.sleep(0.3)
            sink = psutil.Process(process.pid)
            before, peak, done = sink.memory_info().rss, [0], threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], sink.memory_info().rss)
                    time.sleep(0.05)

            threading.Thread(target=sample, daemon=True).start()
            limit = requests.get(f"{url}/stats", timeout=5).json()
            answers: dict[str, Counter] = {"47MB": Counter(), "unmatched": Counter(),
                                           "spoofed": Counter()}
            huge = b'{"instances": ["' + b"a" * (47 << 20) + b'"]}'
            for number in range(10):
                answers["47MB"][post(url, huge, f"huge-{number}")] += 1
            del huge
            room = (Settings().sink_body_limit - 1024) // 256 - 4  # 256 texts just under it
            largest = json.dumps({"instances": ["b" * room] * 256}).encode()
            for number in range(100):
                answers["unmatched"][post(url, largest, f"orphan-{number}")] += 1
            for number in range(200):
                answers["spoofed"][post(url, largest, f"spoof-{number}", token="guess")] += 1
            done.set()
            stats = requests.get(f"{url}/stats", timeout=5).json()
            print(json.dumps({
                "answers": {k: dict(v) for k, v in answers.items()},
                "rss_mb": {"before": round(before / 2**20), "peak": round(peak[0] / 2**20),
                           "after": round(sink.memory_info().rss / 2**20)},
                "unmatched_body_bytes": len(largest), "stats": stats,
                "stats_before": limit}, indent=2))
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
