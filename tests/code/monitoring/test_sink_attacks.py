"""Attack suite for the log sink (issue 12), against a real `civicsense sink` over HTTP on
127.0.0.1: spoofed events, oversized bodies, a flood of unmatched halves, every known kind of
malformed CloudEvent, and hypothesis fuzzing of headers and bodies. Bounded: fixed counts, a
10 s timeout per request (a timeout counts as a hang), loopback only."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections import Counter

import psutil
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicsense.monitoring.inference_log import read_log
from civicsense.monitoring.sink import REQUEST_TYPE, RESPONSE_TYPE
from civicsense.monitoring.sink_auth import LOGGER_SOURCES_ENV, TOKEN_PLACEHOLDER
from civicsense.settings import Settings
from tests_support import CIVICSENSE, free_port, stop_server

pytestmark = pytest.mark.integration  # real processes, seconds each: `make test`, not test-fast

TOKEN = "s3cret-sink-token"
LOGGER_SOURCE = "civicsense/civicsense-sentiment"  # namespace/InferenceService
# What KServe's logger (v0.20.0, pkg/logger/worker.go) adds to every event it sends.
LOGGER = {"ce-namespace": "civicsense", "ce-inferenceservicename": "civicsense-sentiment",
          "ce-component": "predictor", "ce-endpoint": "default"}
BODY_LIMIT, PENDING_BUDGET = 1 << 20, 4 << 20
TEXTS = ["vote yes on the reform", "this bill is a disaster"]
REQUEST = {"instances": TEXTS}
RESPONSE = {"model_version": "3+abc", "predictions": [
    {"label": "positive", "probabilities": {"negative": 0.1, "neutral": 0.2, "positive": 0.7}},
    {"label": "negative", "probabilities": {"negative": 0.8, "neutral": 0.1, "positive": 0.1}}]}
STATUSES: Counter = Counter()  # every answer of this module, for the README's counts


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    """A real sink process (token set, small limits) and its URL, its log root and psutil."""
    home = tmp_path_factory.mktemp("sink")
    port = free_port()
    env = {**os.environ, "CIVICSENSE_HOME": str(home / "home"),
           "CIVICSENSE_INFERENCE_LOG_URI": str(home / "log"), "CIVICSENSE_SINK_TOKEN": TOKEN,
           "CIVICSENSE_SINK_MAX_BODY_BYTES": str(BODY_LIMIT),
           "CIVICSENSE_SINK_PENDING_BYTES": str(PENDING_BUDGET),
           "CIVICSENSE_SINK_BODY_TIMEOUT": "2", LOGGER_SOURCES_ENV: LOGGER_SOURCE}
    with (home / "sink.log").open("w") as out:
        process = subprocess.Popen([str(CIVICSENSE), "sink", "--host", "127.0.0.1", "--port",
                                    str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, (home / "sink.log").read_text()
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "sink not up in 120 s"
            time.sleep(0.3)
    try:
        yield url, str(home / "log"), psutil.Process(process.pid)
    finally:
        stop_server(process)
        print(f"\nsink attack suite: {sum(STATUSES.values())} requests, statuses "
              f"{dict(sorted(STATUSES.items()))}")


def post(url: str, body: bytes, headers: dict | None = None, token: str | None = TOKEN,
         path: str = "/events") -> requests.Response | None:
    """POST one event (token as `Authorization: Bearer` unless None); None when it hangs past
    10 s."""
    bearer = {"authorization": f"Bearer {token}"} if token is not None else {}
    try:
        reply = requests.post(f"{url}{path}", data=body, headers=bearer | (headers or {}),
                              timeout=10)
    except requests.Timeout:
        STATUSES["hang"] += 1
        return None
    STATUSES[reply.status_code] += 1
    return reply


def event_headers(event_id: str, kind: str) -> dict:
    return {"ce-id": event_id, "ce-specversion": "1.0", "ce-source": "attack",
            "ce-type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
            "content-type": "application/json"}


def stats(url: str) -> dict:
    return requests.get(f"{url}/stats", timeout=5).json()


def wait_logged(url: str, at_least: int) -> dict:
    deadline = time.monotonic() + 30
    while (current := stats(url))["logged"] < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return current


def test_a_bearer_token_or_the_allowed_loggers_event_is_accepted(sink):
    url, root, _ = sink
    before = stats(url)["logged"]
    for kind, body in (("request", REQUEST), ("response", RESPONSE)):
        assert post(url, json.dumps(body).encode(), event_headers("t-1", kind)).status_code == 202
    for kind, body in (("request", REQUEST), ("response", RESPONSE)):
        reply = post(url, json.dumps(body).encode(), event_headers("t-2", kind) | LOGGER,
                     token=None)
        assert reply.status_code == 202 and reply.json()["accepted"]
    assert wait_logged(url, before + 4)["logged"] == before + 4
    frame = read_log(root, Settings())
    assert set(frame["request_id"]) >= {"t-1", "t-2"}


@pytest.mark.parametrize("auth", [
    {"token": None}, {"token": "wrong"}, {"token": TOKEN[:-1]}, {"token": ""},
    {"token": None, "headers": {"authorization": TOKEN}},  # no scheme
    {"token": None, "headers": {"x-token": TOKEN}},
    {"token": None, "path": "/"},
    {"token": None, "headers": LOGGER | {"ce-inferenceservicename": "other"}},
    {"token": None, "headers": LOGGER | {"ce-namespace": "elsewhere"}},
    {"token": None, "headers": LOGGER | {"ce-specversion": "0.3"}},
    {"token": None, "headers": LOGGER | {"ce-source": ""}},
    {"token": None, "headers": {k: v for k, v in LOGGER.items() if k != "ce-namespace"}},
], ids=["none", "wrong", "prefix", "empty", "no-scheme", "other-header", "root-path",
        "other-isvc", "other-namespace", "old-specversion", "no-source", "no-namespace"])
def test_spoofed_events_are_401_counted_and_never_written(sink, auth):
    url, root, _ = sink
    before = stats(url)
    for kind, body in (("request", REQUEST), ("response", RESPONSE)):
        reply = post(url, json.dumps(body).encode(),
                     event_headers(f"spoof-{auth}", kind) | auth.get("headers", {}),
                     token=auth["token"], path=auth.get("path", "/events"))
        assert reply.status_code == 401 and reply.json() == {"error": "missing or wrong sink "
                                                                       "token"}
    after = stats(url)
    assert after["unauthorized"] == before["unauthorized"] + 2
    assert after["pairs"] == before["pairs"] and after["pending"] == before["pending"]
    assert not any(rid.startswith("spoof") for rid in read_log(root, Settings())["request_id"])


@pytest.mark.parametrize("path", ["/events", "/feedback"])
def test_a_token_in_the_url_is_refused_even_the_right_one(sink, path):
    url, root, _ = sink
    before = stats(url)["unauthorized"]
    reply = requests.post(f"{url}{path}?token={TOKEN}", data=json.dumps(REQUEST),
                          headers=event_headers("in-url", "request") | LOGGER, timeout=10)
    STATUSES[reply.status_code] += 1
    assert reply.status_code == 401
    if path == "/events":
        assert "never goes in a URL" in reply.json()["error"]
        assert stats(url)["unauthorized"] == before + 1


def test_a_body_over_the_limit_is_413_json_declared_or_streamed(sink):
    url, _, process = sink
    big = b'{"instances": ["' + b"a" * (BODY_LIMIT + 10) + b'"]}'
    reply = post(url, big, event_headers("big-1", "request"))
    assert reply.status_code == 413 and "limit" in reply.json()["error"]
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # no Content-Length
    reply = requests.post(f"{url}/events", data=chunks, timeout=10,
                          headers=event_headers("big-2", "request")
                          | {"authorization": f"Bearer {TOKEN}"})
    STATUSES[reply.status_code] += 1
    assert reply.status_code == 413
    assert stats(url)["too_large"] >= 2 and process.memory_info().rss < 400 << 20


def test_unmatched_halves_stay_within_the_budget_oldest_dropped(sink):
    url, _, process = sink
    before = stats(url)
    half = json.dumps({"instances": ["x" * (BODY_LIMIT // 2)]}).encode()
    for number in range(20):  # 20 × 0.5 MiB against a 4 MiB budget
        assert post(url, half, event_headers(f"orphan-{number}", "request")).status_code == 202
    after = stats(url)
    assert after["pending_bytes"] <= PENDING_BUDGET
    assert after["unpaired"] - before["unpaired"] >= 12
    assert process.memory_info().rss < 400 << 20


def test_a_stalled_upload_is_408_and_the_connection_closed(sink):
    url, _, _ = sink
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"POST /events HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {TOKEN}\r\n"
                           "Content-Length: 1000\r\nce-id: slow\r\n\r\n{".encode())
        started = time.monotonic()
        answer = connection.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408") and time.monotonic() - started < 8
    STATUSES[408] += 1
    assert stats(url)["slow"] >= 1


def test_no_token_no_listening_beyond_loopback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CIVICSENSE_SINK_TOKEN"}
    done = subprocess.run([str(CIVICSENSE), "sink", "--host", "0.0.0.0", "--port",
                           str(free_port())], env=env | {"CIVICSENSE_HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no CIVICSENSE_SINK_TOKEN" in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(("token", "host", "says"), [
    (TOKEN_PLACEHOLDER, "127.0.0.1", "placeholder"), (TOKEN_PLACEHOLDER, "0.0.0.0", "placeholder"),
    ("", "0.0.0.0", "empty")])
def test_the_placeholder_or_an_empty_token_never_starts(tmp_path, token, host, says):
    done = subprocess.run([str(CIVICSENSE), "sink", "--host", host, "--port", str(free_port())],
                          env=os.environ | {"CIVICSENSE_HOME": str(tmp_path),
                                            "CIVICSENSE_SINK_TOKEN": token},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1


def structured(**event) -> tuple[bytes, dict]:
    return json.dumps(event).encode(), {"content-type": "application/cloudevents+json"}


def binary_event(kind: str, body) -> tuple[bytes, dict]:
    return json.dumps(body).encode(), event_headers("bad", kind)


MALFORMED = {
    "structured-list": (b"[1, 2]", {"content-type": "application/cloudevents+json"}),
    "structured-scalar": (b"7", {"content-type": "application/cloudevents+json"}),
    "data-base64-not-base64": structured(id="1", type=REQUEST_TYPE, data_base64="%%%"),
    "data-base64-not-json": structured(id="1", type=REQUEST_TYPE,
                                       data_base64=base64.b64encode(b"\xff{").decode()),
    "data-base64-number": structured(id="1", type=REQUEST_TYPE, data_base64=5),
    "type-not-a-string": structured(id="1", type=["x"], data=REQUEST),
    "id-an-object": structured(id={"a": 1}, type=REQUEST_TYPE, data=REQUEST),
    "instances-not-a-list": binary_event("request", {"instances": "abc"}),
    "instances-not-strings": binary_event("request", {"instances": [{"a": 1}, 2]}),
    "inputs-a-dict": binary_event("request", {"inputs": {"name": "text"}}),
    "inputs-of-strings": binary_event("request", {"inputs": ["text"]}),
    "text-input-data-null": binary_event("request", {"inputs": [{"name": "text",
                                                                 "data": None}]}),
    "predictions-not-dicts": binary_event("response", {"predictions": [1, 2]}),
    "predictions-a-dict": binary_event("response", {"predictions": {"label": "x"}}),
    "probabilities-missing-a-label": binary_event("response", {"predictions": [
        {"label": "positive", "probabilities": {"positive": 1.0}}]}),
    "probability-a-string": binary_event("response", {"predictions": [
        {"label": "positive", "probabilities": {"negative": "a", "neutral": 0, "positive": 1}}]}),
    "probability-out-of-range": binary_event("response", {"predictions": [
        {"label": "positive", "probabilities": {"negative": 9, "neutral": 0, "positive": 1}}]}),
    "label-not-a-string": binary_event("response", {"predictions": [
        {"label": None, "probabilities": {"negative": 0, "neutral": 0, "positive": 1}}]}),
    "outputs-not-a-list": binary_event("response", {"outputs": "x"}),
    "outputs-of-strings": binary_event("response", {"outputs": ["label", "probabilities"]}),
    "label-output-without-data": binary_event("response", {"outputs": [
        {"name": "label"}, {"name": "probabilities", "data": [1, 0, 0]}]}),
    "probabilities-short": binary_event("response", {"outputs": [
        {"name": "label", "data": ["positive"]}, {"name": "probabilities", "data": [1]}]}),
    "probabilities-nested-garbage": binary_event("response", {"outputs": [
        {"name": "label", "data": ["positive"]}, {"name": "probabilities", "data": [[1], 2]}]}),
    "model-version-an-object": binary_event("response", {"model_version": {}, "predictions": [
        {"label": "positive", "probabilities": {"negative": 0, "neutral": 0, "positive": "1"}}]}),
    "deeply-nested": (b"[" * 5000 + b"]" * 5000, event_headers("bad", "request")),
    "not-utf8": (b'{"instances": ["\xff"]}', event_headers("bad", "request")),
    "empty-body": (b"", event_headers("bad", "request")),
    "no-id": (json.dumps(REQUEST).encode(), {"ce-type": REQUEST_TYPE}),
    "unknown-type": (json.dumps(REQUEST).encode(), event_headers("bad", "x") | {"ce-type": "x"}),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_every_malformed_event_is_a_202_not_accepted(sink, name):
    url, _, _ = sink
    body, headers = MALFORMED[name]
    if "ce-id" in headers and headers["ce-type"] in (REQUEST_TYPE, RESPONSE_TYPE):
        # its valid other half goes first: the malformed one must not break the pairing
        headers = headers | {"ce-id": f"malformed-{name}"}
        partner = "response" if headers["ce-type"] == REQUEST_TYPE else "request"
        half = json.dumps(RESPONSE if partner == "response" else REQUEST).encode()
        assert post(url, half, event_headers(headers["ce-id"], partner)).status_code == 202
    reply = post(url, body, headers)
    assert reply.status_code == 202, reply.text
    assert reply.json()["accepted"] is False and reply.json()["error"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
FIELDS = st.sampled_from(["instances", "inputs", "predictions", "outputs", "model_version",
                          "name", "data", "label", "probabilities", "id", "type",
                          "data_base64"])
SHAPED = st.recursive(JSON, lambda inner: st.dictionaries(FIELDS, inner, max_size=4)
                      | st.lists(inner, max_size=4), max_leaves=25)
HEADERS = st.fixed_dictionaries({}, optional={
    "ce-id": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=8),
    "ce-type": st.sampled_from([REQUEST_TYPE, RESPONSE_TYPE, "x.request", "", "other"]),
    "content-type": st.sampled_from(["application/json", "application/cloudevents+json",
                                     "text/plain"])})


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=SHAPED, headers=HEADERS, raw=st.booleans(), garbage=st.binary(max_size=64))
def test_fuzzed_events_never_get_a_5xx_or_hang(sink, body, headers, raw, garbage):
    url, _, _ = sink
    payload = garbage if raw else json.dumps(body).encode()
    reply = post(url, payload, headers)
    assert reply is not None, "the sink hung for 10 s"
    assert reply.status_code == 202, reply.text
    assert "accepted" in reply.json()


def test_the_sink_is_still_healthy_and_lean_after_the_attacks(sink):
    url, _, process = sink
    assert requests.get(f"{url}/healthz", timeout=5).json() == {"ok": True}
    assert stats(url)["pending_bytes"] <= PENDING_BUDGET
    rss = process.memory_info().rss
    print(f"\nsink RSS after the attack suite: {rss / 2**20:.0f} MB")
    assert rss < 400 << 20
    assert not any(status >= 500 for status in STATUSES if isinstance(status, int))
    assert STATUSES["hang"] == 0
