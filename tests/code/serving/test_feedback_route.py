"""The feedback route for real: `civicsense serve --workers 2` (the route runs in the HTTP
process beside the model processes), then a server that forwards to a real `civicsense sink`
as on the cluster. Each test has its own X-Forwarded-For address (the test client, on
127.0.0.1, is a trusted proxy), so the per-peer limit of one test does not spend another's."""

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


def post(url: str, payload, peer: str, session=requests, **kwargs) -> requests.Response:
    return session.post(url + FEEDBACK, json=payload, headers={"X-Forwarded-For": peer},
                        timeout=30, **kwargs)


def test_feedback_is_appended_to_the_feedback_log(server, version_tag):
    url, log_dir = server
    answer = post(url, body(version_tag, "reader-a-0001"), "192.0.2.1")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": True, "post_key": post_key(TEXT), "label": "negative",
                             "model_version": version_tag}
    frame = read_feedback(log_dir, Settings())
    row = frame[frame.client_id == "reader-a-0001"].iloc[0]
    assert (row.text, row.label, row.predicted_label, row.model_version) == (
        TEXT, "negative", "positive", version_tag)


def test_without_predicted_label_the_server_fills_in_its_own(server, version_tag):
    url, log_dir = server
    predicted = requests.post(f"{url}/v1/models/{MODEL_NAME}:predict",
                              json={"instances": [TEXT]}, timeout=10).json()
    label = predicted["predictions"][0]["label"]
    payload = body(version_tag, "reader-b-0001")
    del payload["predicted_label"]
    assert post(url, payload, "192.0.2.2").status_code == 200
    frame = read_feedback(log_dir, Settings())
    assert frame[frame.client_id == "reader-b-0001"].predicted_label.tolist() == [label]
    other = post(url, {**payload, "model_version": "0+old"}, "192.0.2.2")
    assert other.status_code == 400 and version_tag in other.json()["error"]


def test_bad_feedback_is_a_json_4xx_and_the_connection_stays_usable(server, version_tag):
    url, log_dir = server
    with requests.Session() as session:  # one keep-alive connection for every request
        for payload, status, message in [
            (body(version_tag, "reader-c-0001", label="wrong"), 400, '"label" must be one of'),
            (body(version_tag, "bad id"), 400, "client_id"),
            (body(version_tag, "reader-c-0001", extra=1), 400, "unknown field"),
            (body(version_tag, "reader-c-0001", text="\u2028" * 10_000), 413, "at most"),
            ([1, 2], 400, "JSON object"),
        ]:
            answer = post(url, payload, "192.0.2.3", session)
            assert answer.status_code == status, answer.text
            assert message in answer.json()["error"]
        garbage = session.post(url + FEEDBACK, data=b"{not json", timeout=10)
        assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["error"]
        missing = session.post(f"{url}/v1/models/no-such-model/feedback",
                               json=body(version_tag, "reader-c-0001"), timeout=10)
        assert missing.status_code == 404 and "no-such-model" in missing.json()["error"]
        assert session.post(f"{url}/v1/models/{MODEL_NAME}:predict", json={
            "instances": [TEXT]}, timeout=10).status_code == 200
    frame = read_feedback(log_dir, Settings())
    assert "reader-c-0001" not in set(frame.client_id)


def test_a_client_over_its_rate_and_a_flooding_peer_get_429(server, version_tag):
    url, _ = server
    statuses = [post(url, body(version_tag, "reader-d-0001"), "192.0.2.4").status_code
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = post(url, body(version_tag, "reader-d-0001"), "192.0.2.4")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "too much feedback from this client" in refused.json()["error"]
    # One address, fresh client ids: the peer limit (5 a minute) holds whatever ids it claims.
    flood = [post(url, body(version_tag, f"fake-client-{i:04d}"), "192.0.2.5").status_code
             for i in range(8)]
    assert flood == [200] * 5 + [429] * 3
    assert post(url, body(version_tag, "reader-d-0002"), "192.0.2.6").status_code == 200


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
    assert post(url, body(version_tag, "reader-e-0001"), "192.0.2.7").status_code == 200
    frame = read_feedback(log_dir, Settings())
    assert frame.client_id.tolist() == ["reader-e-0001"]
    assert frame.model_version.tolist() == [version_tag]
    # The sink's own limit (burst 1 there) comes back through the server, Retry-After too.
    refused = post(url, body(version_tag, "reader-e-0001"), "192.0.2.7")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    stop_server(sink)
    down = post(url, body(version_tag, "reader-e-0002"), "192.0.2.8")
    assert down.status_code == 503 and "unreachable" in down.json()["error"]
    assert down.headers["Retry-After"] == "30"
