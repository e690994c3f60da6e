"""The feedback route for real: `civicsense serve --workers 2` (the route runs in the HTTP
process beside the model processes), then a server that forwards to a real `civicsense sink`
as on the cluster. Each test has its own X-Forwarded-For address (the test client, on
127.0.0.1, is a trusted proxy), so the per-peer limits of one test do not spend another's;
each reader first gets its credential from POST /v1/credentials."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from civicsense.monitoring.feedback_log import post_key, read_feedback
from civicsense.settings import Settings
from tests_support import CIVICSENSE, MODEL_NAME, free_port, start_server, stop_server

FEEDBACK = f"/v1/models/{MODEL_NAME}/feedback"
CREDENTIAL = "X-CivicSense-Credential"
TOKEN = "feedback-test-token-0123456789"
TEXT = "Finally a pension reform that protects the young, well done"


@pytest.fixture(scope="module")
def version_tag(trained_home) -> str:
    _, summary = trained_home
    return f"{summary['version']}+{summary['run_id']}"


def serve(tmp_path_factory, env: dict[str, str], workers: int):
    log = tmp_path_factory.mktemp("feedback-serve") / "server.log"
    port = free_port()
    return start_server([str(CIVICSENSE), "serve", "--port", str(port), "--workers",
                         str(workers)], port, {**os.environ, **env}, log, timeout=180)


@pytest.fixture(scope="module")
def server(trained_home, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(URL, feedback log) of a server with two model processes and small feedback limits."""
    log_dir = str(tmp_path_factory.mktemp("feedback-log"))
    process, url = serve(tmp_path_factory, {
        "CIVICSENSE_FEEDBACK_LOG_URI": log_dir, "CIVICSENSE_FEEDBACK_BURST": "2",
        "CIVICSENSE_FEEDBACK_RATE_PER_MINUTE": "1", "CIVICSENSE_FEEDBACK_PEER_RATE_PER_MINUTE":
        "5", "CIVICSENSE_TRUSTED_PROXIES": "127.0.0.1,::1"}, workers=2)
    try:
        yield url, log_dir
    finally:
        stop_server(process)


def body(version: str, client: str, **change) -> dict:
    return {"text": TEXT, "label": "negative", "model_version": version,
            "predicted_label": "positive", "client_id": client, **change}


def credential(url: str, peer: str) -> tuple[str, str]:
    """(credential, install id) for a reader at `peer`."""
    answer = requests.post(url + "/v1/credentials", headers={"X-Forwarded-For": peer},
                           timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["credential"], answer.json()["install_id"]


def post(url: str, payload, peer: str, token: str | None, session=requests,
         **kwargs) -> requests.Response:
    headers = {"X-Forwarded-For": peer, **({CREDENTIAL: token} if token else {})}
    return session.post(url + FEEDBACK, json=payload, headers=headers, timeout=30, **kwargs)


def of(frame, install: str):
    """The records of one install (the client id is the install id and the peer's tag)."""
    return frame[frame.client_id.str.startswith(install + "_")]


def test_feedback_is_appended_to_the_feedback_log(server, version_tag):
    url, log_dir = server
    assert post(url, body(version_tag, "reader-a-0001"), "192.0.2.1", None).status_code == 401
    token, install = credential(url, "192.0.2.1")
    answer = post(url, body(version_tag, "reader-a-0001"), "192.0.2.1", token)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": True, "post_key": post_key(TEXT), "label": "negative",
                             "model_version": version_tag}
    frame = read_feedback(log_dir, Settings())
    assert "reader-a-0001" not in set(frame.client_id)  # the credential's identity, not this
    row = of(frame, install).iloc[0]
    assert (row.text, row.label, row.predicted_label, row.model_version) == (
        TEXT, "negative", "positive", version_tag)


def test_without_predicted_label_the_server_fills_in_its_own(server, version_tag):
    url, log_dir = server
    predicted = requests.post(f"{url}/v1/models/{MODEL_NAME}:predict",
                              json={"instances": [TEXT]}, timeout=10).json()
    label = predicted["predictions"][0]["label"]
    payload = body(version_tag, "reader-b-0001")
    del payload["predicted_label"]
    token, install = credential(url, "192.0.2.2")
    assert post(url, payload, "192.0.2.2", token).status_code == 200
    frame = read_feedback(log_dir, Settings())
    assert of(frame, install).predicted_label.tolist() == [label]
    other = post(url, {**payload, "model_version": "0+old"}, "192.0.2.2", token)
    assert other.status_code == 400 and version_tag in other.json()["error"]


def test_bad_feedback_is_a_json_4xx_and_the_connection_stays_usable(server, version_tag):
    url, log_dir = server
    token, install = credential(url, "192.0.2.3")
    with requests.Session() as session:  # one keep-alive connection for every request
        for payload, status, message in [
            (body(version_tag, "reader-c-0001", label="wrong"), 400, '"label" must be one of'),
            (body(version_tag, "bad id"), 400, "client_id"),
            (body(version_tag, "reader-c-0001", extra=1), 400, "unknown field"),
            (body(version_tag, "reader-c-0001", text="\u2028" * 10_000), 413, "at most"),
            ([1, 2], 400, "JSON object"),
        ]:
            answer = post(url, payload, "192.0.2.3", token, session)
            assert answer.status_code == status, answer.text
            assert message in answer.json()["error"]
        forged = post(url, body(version_tag, "reader-c-0001"), "192.0.2.3", token[:-4] + "AAAA",
                      session)
        assert forged.status_code == 401 and "signature" in forged.json()["error"]
        garbage = session.post(url + FEEDBACK, data=b"{not json", headers={CREDENTIAL: token},
                               timeout=10)
        assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]
        missing = session.post(f"{url}/v1/models/no-such-model/feedback",
                               json=body(version_tag, "reader-c-0001"), timeout=10)
        assert missing.status_code == 404 and "no-such-model" in missing.json()["error"]
        assert session.post(f"{url}/v1/models/{MODEL_NAME}:predict", json={
            "instances": [TEXT]}, timeout=10).status_code == 200
    frame = read_feedback(log_dir, Settings())
    assert of(frame, install).empty


def test_a_client_over_its_rate_and_a_flooding_peer_get_429(server, version_tag):
    url, _ = server
    token, _ = credential(url, "192.0.2.4")
    statuses = [post(url, body(version_tag, "reader-d-0001"), "192.0.2.4", token).status_code
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Another claimed client id is the same credential: the same spent bucket.
    refused = post(url, body(version_tag, "reader-d-0002"), "192.0.2.4", token)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "too much feedback from this client" in refused.json()["error"]
    # One address, four credentials: the peer limit (5 a minute) holds whatever they are.
    tokens = [credential(url, "192.0.2.5")[0] for _ in range(4)]
    flood = [post(url, body(version_tag, "reader-d-0003"), "192.0.2.5",
                  tokens[i // 2]).status_code for i in range(8)]
    assert flood == [200] * 5 + [429] * 3
    assert post(url, body(version_tag, "reader-d-0004"), "192.0.2.6",
                credential(url, "192.0.2.6")[0]).status_code == 200


@pytest.fixture(scope="module")
def forwarding(trained_home, tmp_path_factory) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """(server URL, the sink's feedback log, the sink process): the cluster's path."""
    log_dir = str(tmp_path_factory.mktemp("sink-feedback-log"))
    sink_port = free_port()
    sink_log = tmp_path_factory.mktemp("sink") / "sink.log"
    sink_env = {**os.environ, "CIVICSENSE_SINK_TOKEN": TOKEN,
                "CIVICSENSE_FEEDBACK_LOG_URI": log_dir, "CIVICSENSE_FEEDBACK_BURST": "1",
                "CIVICSENSE_INFERENCE_LOG_URI": str(tmp_path_factory.mktemp("sink-log"))}
    with sink_log.open("w") as out:
        sink = subprocess.Popen([str(CIVICSENSE), "sink", "--port", str(sink_port), "--host",
                                 "127.0.0.1"], env=sink_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    process = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{sink_port}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, sink_log.read_text()
                time.sleep(0.3)
        process, url = serve(tmp_path_factory, {
            "CIVICSENSE_SINK_TOKEN": TOKEN, "CIVICSENSE_FEEDBACK_FORWARD_URL":
            f"http://127.0.0.1:{sink_port}/feedback",
            "CIVICSENSE_FEEDBACK_LOG_URI": str(tmp_path_factory.mktemp("unused"))}, workers=1)
        yield url, log_dir, sink
    finally:
        if process is not None:
            stop_server(process)
        stop_server(sink)


def test_a_forwarding_server_hands_feedback_to_the_sink(forwarding, version_tag):
    url, log_dir, sink = forwarding
    token, install = credential(url, "192.0.2.7")
    assert post(url, body(version_tag, "reader-e-0001"), "192.0.2.7", token).status_code == 200
    frame = read_feedback(log_dir, Settings())
    assert len(of(frame, install)) == len(frame) == 1  # the server's identity, from the sink
    assert frame.model_version.tolist() == [version_tag]
    # The sink's own limit (burst 1 there) comes back through the server, Retry-After too.
    refused = post(url, body(version_tag, "reader-e-0001"), "192.0.2.7", token)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    other, _ = credential(url, "192.0.2.8")
    stop_server(sink)
    down = post(url, body(version_tag, "reader-e-0002"), "192.0.2.8", other)
    assert down.status_code == 503 and "unreachable" in down.json()["error"]
    assert down.headers["Retry-After"] == "30"
