"""Attack suite (issue 12), loopback only, bounded counts and times, against a real server: the
container entry point with KServe's flags, two model processes, the session's registered
champion. Property-based fuzzing of V1 and V2 bodies (hypothesis) counts cases, 4xx, 5xx and
hangs; `-s` prints the counts (README → Reliability → Model server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests_support import MODEL_NAME, ROOT, free_port, start_server, stop_server

ENTRY = ROOT / "kserve" / "model_server.py"
V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
BUDGET, READ_TIMEOUT, KEEP_ALIVE = 0.5, 2, 2
MAX_BATCH = 64
COUNTS: Counter = Counter()


@pytest.fixture(scope="module")
def attacked(trained_home, tmp_path_factory):
    """(url, process, log path) of the entry point on the champion: 2 model processes, a
    0.5 s budget, 2 s read deadline, 2 s keep-alive, 64 texts of ≤ 2,000 chars."""
    log = tmp_path_factory.mktemp("attack") / "server.log"
    port = free_port()
    env = {**os.environ, "CIVICSENSE_MAX_BATCH": str(MAX_BATCH),
           "CIVICSENSE_MAX_REQUEST_CHARS": str(MAX_BATCH * 2000),
           "CIVICSENSE_REQUEST_TIMEOUT_SECONDS": str(BUDGET),
           "CIVICSENSE_SERVE_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
           "CIVICSENSE_SERVE_CHUNK_CHARS": "4000", "CIVICSENSE_LOG_PREDICTIONS": "false"}
    process, url = start_server(
        [sys.executable, str(ENTRY), f"--model_dir=models:/{MODEL_NAME}@champion",
         f"--http_port={port}", "--workers=2", f"--timeout-keep-alive={KEEP_ALIVE}"],
        port, env, log, timeout=240)
    try:
        yield url, process, log
    finally:
        stop_server(process)
        print(f"\nattack suite counts: {dict(sorted(COUNTS.items()))}")


def children(process: subprocess.Popen) -> list[int]:
    """The model processes: the fork server's children."""
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout
    rows = [tuple(map(int, line.split())) for line in out.splitlines()[1:]]
    forkservers = [pid for pid, ppid in rows if ppid == process.pid]
    return [pid for pid, ppid in rows if ppid in forkservers]


def test_the_server_logs_loading_and_ready_lines(attacked):
    _, _, log = attacked
    text = log.read_text()
    assert f"loading model models:/{MODEL_NAME}@champion" in text
    assert "ready in " in text and "2 model processes" in text


def test_repository_routes_are_off(attacked):
    url, _, _ = attacked
    for action in ("unload", "load"):
        response = requests.post(f"{url}/v2/repository/models/{MODEL_NAME}/{action}", timeout=5)
        assert response.status_code == 404 and "disabled" in response.json()["error"]
        COUNTS["repository 404"] += 1
    assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
    ok = requests.post(url + V1, json={"instances": ["still serving?"]}, timeout=10)
    assert ok.status_code == 200


def test_worst_valid_request_is_bounded_and_neighbours_are_served(attacked):
    """64 texts of 2,000 emoji (the worst valid request here) against the 0.5 s budget: a 503
    with Retry-After once the budget is spent, while small requests beside it get answers."""
    url, _, _ = attacked
    worst = json.dumps({"instances": ["😀" * 2000] * MAX_BATCH})
    result: dict = {}

    def send_worst():
        start = time.monotonic()
        response = requests.post(url + V1, data=worst, timeout=30,
                                 headers={"content-type": "application/json"})
        result.update(status=response.status_code, seconds=time.monotonic() - start,
                      retry=response.headers.get("retry-after"), body=response.json())

    thread = threading.Thread(target=send_worst)
    thread.start()
    beside = []
    with requests.Session() as session:
        while thread.is_alive() and len(beside) < 50:
            response = session.post(url + V1, json={"instances": ["good news"]}, timeout=10)
            beside.append(response.status_code)
    thread.join(60)
    assert result["status"] == 503 and result["retry"] == "1", result
    assert "time budget" in result["body"]["error"]
    assert result["seconds"] < 10, result  # the budget, one chunk and the round trip
    assert beside and set(beside) == {200}
    COUNTS["budget 503"] += 1


BINARY_BODIES = {
    "length not a number": (b'{"inputs": []}', "abc"),
    "length beyond the body": (b'{"inputs": []}', "99999999999999999999"),
    "negative length": (b'{"inputs": []}', "-5"),
    "json not an object": (b'[1, 2]', "6"),
    "json a string": (b'"text"', "6"),
    "inputs not a list": (b'{"inputs": 3}', "13"),
    "binary size a string": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",'
                             b' "parameters": {"binary_data_size": "x"}}]}', None),
    "binary size past the end": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": '
                                 b'"BYTES", "parameters": {"binary_data_size": 99}}]}\x05\x00',
                                 None),
    "truncated BYTES element": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": '
                                b'"BYTES", "parameters": {"binary_data_size": 6}}]}'
                                b'\x09\x00\x00\x00ab', None),
    "bad datatype": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "NOPE", '
                     b'"parameters": {"binary_data_size": 4}}]}abcd', None),
    "id not a string": (b'{"id": 5, "inputs": [{"name": "text", "shape": [1], "datatype": '
                        b'"BYTES", "data": ["fine"]}]}', None),
}


@pytest.mark.parametrize("case", list(BINARY_BODIES))
def test_every_malformed_binary_body_is_a_4xx(attacked, case):
    url, _, _ = attacked
    body, length = BINARY_BODIES[case]
    if length is None:  # the JSON part is everything up to its closing brace
        length = str(body.rindex(b"}") + 1)
    response = requests.post(url + V2, data=body, timeout=10, headers={
        "inference-header-content-length": length,
        "content-type": "application/octet-stream"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert "error" in response.json()
    COUNTS["binary 4xx"] += 1


def test_each_client_error_is_one_log_line(attacked):
    url, _, log = attacked
    marker = f"marker{time.monotonic_ns()}"
    body = {"inputs": [{"name": marker, "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    for _ in range(5):
        assert requests.post(url + V2, json=body, timeout=10).status_code == 400
    time.sleep(0.5)
    lines = log.read_text().splitlines()
    assert sum(marker in line for line in lines) == 5
    assert "Traceback" not in log.read_text()


def _closed_within(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return data, float("inf")
    return data, time.monotonic() - start


def test_slow_partial_and_idle_connections_are_closed(attacked):
    url, process, _ = attacked
    port = int(url.rsplit(":", 1)[1])
    kinds = {"silent": b"", "slow headers": b"POST " + V1.encode() + b" HTTP/1.1\r\nHost: x\r\n",
             "partial body": b"POST " + V1.encode() + b" HTTP/1.1\r\nHost: x\r\ncontent-type: "
             b"application/json\r\ncontent-length: 1000\r\n\r\n{\"instances\": [\"a"}
    sockets = []
    for kind, data in kinds.items():
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", port))
            if data:
                sock.sendall(data)
            sockets.append((kind, sock))
    for kind, sock in sockets:
        data, waited = _closed_within(sock, 15)
        sock.close()
        assert waited < 10, kind
        if kind != "silent":
            assert data.startswith(b"HTTP/1.1 408"), (kind, data)
        COUNTS[f"closed {kind}"] += 1
    assert process.poll() is None
    assert requests.post(url + V1, json={"instances": ["ok"]}, timeout=10).status_code == 200


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
TEXTS = st.lists(st.text(max_size=200) | JSON_LEAF, min_size=0, max_size=8)
V1_BODY = JSON | st.fixed_dictionaries({"instances": TEXTS | JSON})
TENSOR = st.fixed_dictionaries(
    {"name": st.sampled_from(["text", "txt", ""]) | JSON,
     "datatype": st.sampled_from(["BYTES", "FP32", "INT64"]) | JSON,
     "shape": st.lists(st.integers(-2, 10), max_size=3) | JSON,
     "data": TEXTS | JSON},
    optional={"parameters": JSON | st.fixed_dictionaries({"binary_data_size": JSON})})
V2_BODY = JSON | st.fixed_dictionaries({"inputs": st.lists(TENSOR, max_size=2) | JSON},
                                       optional={"id": JSON, "parameters": JSON,
                                                 "outputs": JSON})
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _send(url: str, path: str, data: bytes, headers: dict) -> None:
    COUNTS["fuzz cases"] += 1
    try:
        response = requests.post(url + path, data=data, headers=headers, timeout=15)
    except requests.Timeout:
        COUNTS["fuzz hangs"] += 1
        raise
    kind = f"fuzz {response.status_code // 100}xx"
    COUNTS[kind] += 1
    assert response.status_code < 500, (response.status_code, response.text, data[:300])
    assert isinstance(response.json(), dict)
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}


@FUZZ
@given(body=V1_BODY)
def test_fuzz_v1_bodies(attacked, body):
    url, _, _ = attacked
    _send(url, V1, json.dumps(body).encode(), {"content-type": "application/json"})


@FUZZ
@given(body=V2_BODY)
def test_fuzz_v2_json_bodies(attacked, body):
    url, _, _ = attacked
    _send(url, V2, json.dumps(body).encode(), {"content-type": "application/json"})


@FUZZ
@given(body=V2_BODY, tail=st.binary(max_size=40),
       length=st.integers(-5, 400).map(str)
       | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=6))
def test_fuzz_v2_binary_bodies(attacked, body, tail, length):
    url, _, _ = attacked
    _send(url, V2, json.dumps(body).encode() + tail,
          {"inference-header-content-length": length,
           "content-type": "application/octet-stream"})


def test_fuzz_counts_have_no_5xx_and_no_hang(attacked):
    assert COUNTS["fuzz cases"] >= 450
    assert COUNTS["fuzz 5xx"] == 0 and COUNTS["fuzz hangs"] == 0


def test_dead_model_processes_fail_fast_and_are_replaced(attacked):
    """Last (it kills the pool): both model processes SIGKILLed → not ready and not live at
    once, predicts get a 503 in well under a second, and the pool is back in seconds."""
    url, process, _ = attacked
    pids = children(process)
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, 9)
    time.sleep(0.3)
    assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 503
    assert requests.get(f"{url}/v2/health/live", timeout=5).status_code == 503
    assert requests.get(f"{url}/v2/models/{MODEL_NAME}/ready", timeout=5).status_code == 503
    start = time.monotonic()
    response = requests.post(url + V1, json={"instances": ["anyone?"]}, timeout=10)
    assert response.status_code == 503 and time.monotonic() - start < 5
    start = time.monotonic()
    while requests.get(f"{url}/v2/health/ready", timeout=5).status_code != 200:
        assert time.monotonic() - start < 120, "the pool was not replaced"
        time.sleep(0.2)
    COUNTS["pool back after s"] = round(time.monotonic() - start, 1)
    ok = requests.post(url + V1, json={"instances": ["back?"]}, timeout=10)
    assert ok.status_code == 200
