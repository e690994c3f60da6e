"""The sink's POST /feedback: what the model servers forward lands in the feedback log; the
same 4xx checks and 429 limits as the server's route; the token guards it like /events."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from civicsense.monitoring.feedback_log import post_key, read_feedback
from civicsense.monitoring.sink import create_app
from civicsense.settings import Settings

TOKEN = "t0ken-for-the-sink-0123456789"
GOOD = {"text": "Raising the pension age is fine by me", "label": "positive",
        "model_version": "2+run42", "predicted_label": "negative", "client_id": "reader-0001"}


PEER = ("198.51.100.7", 50000)  # the TCP peer of every request


def sink(tmp_path, **overrides):
    settings = Settings(home=tmp_path / "home", inference_log_uri=str(tmp_path / "log"),
                        feedback_log_uri=str(tmp_path / "feedback"), **overrides)
    return settings, TestClient(create_app(settings), client=PEER)


def test_feedback_lands_in_the_feedback_log(tmp_path):
    settings, client = sink(tmp_path)
    with client:
        answer = client.post("/feedback", json=GOOD)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": True, "post_key": post_key(GOOD["text"]),
                                 "label": "positive", "model_version": "2+run42"}
        assert client.get("/stats").json()["feedback"] == 1
    frame = read_feedback(settings.feedback_log, settings)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row.text, row.label, row.predicted_label, row.model_version, row.client_id) == (
        GOOD["text"], "positive", "negative", "2+run42", "reader-0001")


@pytest.mark.parametrize(("body", "status", "message"), [
    ({**GOOD, "label": "meh"}, 400, '"label" must be one of'),
    ({k: v for k, v in GOOD.items() if k != "predicted_label"}, 400, "predicted_label"),
    ({**GOOD, "client_id": "x"}, 400, "client_id"),
    ({k: v for k, v in GOOD.items() if k != "client_id"}, 400, '"client_id" is required'),
    ({**GOOD, "text": "y" * 2001}, 400, "at most 2000"),
    ({**GOOD, "text": "\u2028" * 30_000}, 413, "limit"),
    ({**GOOD, "text": "\u200b\u202e"}, 400, '"text" must be a non-empty string'),
])
def test_bad_feedback_is_a_json_4xx_and_nothing_is_written(tmp_path, body, status, message):
    settings, client = sink(tmp_path)
    with client:
        answer = client.post("/feedback", json=body)
    assert answer.status_code == status and message in answer.json()["error"]
    assert read_feedback(settings.feedback_log, settings).empty


def test_a_client_over_its_rate_gets_429_with_retry_after(tmp_path):
    settings, client = sink(tmp_path, feedback_burst=2, feedback_rate_per_minute=1)
    with client:
        statuses = [client.post("/feedback", json=GOOD).status_code for _ in range(3)]
        refused = client.post("/feedback", json=GOOD)
    assert statuses == [200, 200, 429]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 1
    assert "too much feedback" in refused.json()["error"]
    assert len(read_feedback(settings.feedback_log, settings)) == 2


def test_with_a_token_only_its_holders_post_and_their_peer_header_counts(tmp_path):
    settings, client = sink(tmp_path, sink_token=TOKEN, feedback_peer_rate_per_minute=1)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with client:
        assert client.post("/feedback", json=GOOD).status_code == 401
        assert client.post("/feedback", json=GOOD, headers={
            "Authorization": "Bearer wrong"}).status_code == 401
        first = {**auth, "X-CivicSense-Peer": "203.0.113.7"}
        assert client.post("/feedback", json=GOOD, headers=first).status_code == 200
        other_client = {**GOOD, "client_id": "reader-0002"}
        # One reader's address spent its minute; another reader behind the same server not.
        assert client.post("/feedback", json=other_client, headers=first).status_code == 429
        second = {**auth, "X-CivicSense-Peer": "203.0.113.8"}
        assert client.post("/feedback", json=other_client, headers=second).status_code == 200


def test_without_a_token_the_peer_header_is_ignored(tmp_path):
    settings, client = sink(tmp_path, feedback_peer_rate_per_minute=1)
    with client:
        assert client.post("/feedback", json=GOOD, headers={
            "X-CivicSense-Peer": "198.51.100.1"}).status_code == 200
        spoofed = {**GOOD, "client_id": "reader-0002"}
        assert client.post("/feedback", json=spoofed, headers={
            "X-CivicSense-Peer": "198.51.100.2"}).status_code == 429


def test_the_sink_writes_the_feedback_log_to_gcs(gcs, tmp_path):
    """As on the cluster: gs://civicsense-monitoring/feedback-log (the emulator here)."""
    settings = Settings(home=tmp_path / "home", inference_log_uri=f"{gcs}/inference-log",
                        feedback_log_uri=f"{gcs}/feedback-log")
    with TestClient(create_app(settings)) as client:
        assert client.post("/feedback", json=GOOD).status_code == 200
        assert client.post("/feedback", json={**GOOD, "label": "neutral"}).status_code == 200
    frame = read_feedback(settings.feedback_log, settings)
    assert frame.label.tolist() == ["positive", "neutral"]
    assert set(frame.post_key) == {post_key(GOOD["text"])}


def test_an_unwritable_log_is_a_503_with_retry_after(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log's directory should be")
    settings = Settings(home=tmp_path / "home", inference_log_uri=str(tmp_path / "log"),
                        feedback_log_uri=str(blocker))
    with TestClient(create_app(settings)) as client:
        answer = client.post("/feedback", json=GOOD)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    assert "cannot be written" in answer.json()["error"]


def _flood(client, spoofed: list[str]) -> list[int]:
    """One feedback per spoofed X-Forwarded-For address, each under a fresh client id."""
    return [client.post("/feedback", json={**GOOD, "client_id": f"reader-{i:04d}"}, headers={
        "X-Forwarded-For": address}).status_code for i, address in enumerate(spoofed)]


SPOOFED = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_move_the_peer_limit(tmp_path):
    _, client = sink(tmp_path, feedback_peer_rate_per_minute=2)
    with client:
        assert _flood(client, SPOOFED) == [200, 200, 429, 429]


def test_from_a_trusted_proxy_the_forwarded_address_is_the_peer(tmp_path):
    _, client = sink(tmp_path, feedback_peer_rate_per_minute=2, trusted_proxies=PEER[0])
    with client:
        assert _flood(client, SPOOFED) == [200] * 4
        assert _flood(client, ["6.6.6.6, 203.0.113.9"] * 3) == [200, 200, 429]


def test_a_bom_is_ignored_and_a_key_sent_twice_is_a_400(tmp_path):
    settings, client = sink(tmp_path)
    raw = json.dumps(GOOD).encode()
    with client:
        assert client.post("/feedback", content=b"\xef\xbb\xbf" + raw).status_code == 200
        twice = client.post("/feedback", content=raw[:-1] + b', "label": "neutral"}')
    assert twice.status_code == 400 and "twice" in twice.json()["error"]
    assert read_feedback(settings.feedback_log, settings).label.tolist() == ["positive"]
