"""The record schema round-trips through the sink: KServe logger CloudEvents (request +
response, V1 and V2, binary and structured mode) → the same records the server writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from civicsense import LABELS
from civicsense.features.featurizer import DESCRIPTOR_NAMES
from civicsense.monitoring.inference_log import RECORD_COLUMNS, make_records, read_log
from civicsense.monitoring.sink import REQUEST_TYPE, RESPONSE_TYPE, create_app, parse_event
from civicsense.settings import Settings

TEXTS = ["Vote yes on the reform! :)", "this bill is a disaster", "hearing moved to Tuesday"]
PROBS = np.array([[0.05, 0.15, 0.8], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
LABELS_OUT = [LABELS[i] for i in PROBS.argmax(axis=1)]
VERSION = "4+0123abcd"


def v1_pair():
    request = {"instances": TEXTS}
    response = {"predictions": [{"label": label, "probabilities": dict(zip(LABELS, row,
                                                                           strict=True))}
                                for label, row in zip(LABELS_OUT, PROBS.tolist(), strict=True)],
                "model_version": VERSION}
    return request, response


def v2_pair():
    request = {"id": "abc", "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                                        "data": TEXTS}]}
    response = {"model_name": "civicsense-sentiment", "model_version": VERSION, "id": "abc",
                "outputs": [{"name": "label", "shape": [3], "datatype": "BYTES",
                             "data": LABELS_OUT},
                            {"name": "probabilities", "shape": [3, 3], "datatype": "FP32",
                             "data": PROBS.reshape(-1).tolist()}]}
    return request, response


def binary(client, event_id, kind, body):
    headers = {"ce-id": event_id, "ce-specversion": "1.0", "ce-source":
               "http://localhost:9081/", "ce-inferenceservicename": "civicsense-sentiment",
               "ce-type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
               "content-type": "application/json"}
    return client.post("/events", content=json.dumps(body), headers=headers)


@pytest.fixture
def sink(tmp_path):
    settings = Settings(home=tmp_path / "home", inference_log_uri=str(tmp_path / "log"))
    app = create_app(settings)
    with TestClient(app) as client:
        yield settings, app, client


@pytest.mark.parametrize("pair", [v1_pair, v2_pair], ids=["v1", "v2"])
def test_request_and_response_become_the_servers_records(sink, pair):
    settings, app, client = sink
    request, response = pair()
    assert binary(client, "ev-1", "response", response).status_code == 202  # any order
    assert binary(client, "ev-1", "request", request).status_code == 202
    assert app.state.writer.flush(20)
    frame = read_log(settings.inference_log, settings)
    assert list(frame.columns) == list(RECORD_COLUMNS) and len(frame) == 3
    expected = make_records(TEXTS, LABELS_OUT, PROBS, VERSION, request_id="ev-1", source="sink")
    for column in ("request_id", "model_version", "source", "text", "label"):
        assert frame[column].tolist() == [r[column] for r in expected]
    for column in ("p_negative", "p_neutral", "p_positive", *DESCRIPTOR_NAMES):
        assert frame[column].tolist() == pytest.approx([r[column] for r in expected], abs=1e-6)
    stats = client.get("/stats").json()
    assert stats | {"pairs": 1, "records": 3, "bad": 0, "logged": 3, "pending": 0} == stats


def test_structured_mode_and_unusable_events(sink):
    settings, app, client = sink
    request, response = v1_pair()
    for kind, body in (("request", request), ("response", response)):
        event = {"specversion": "1.0", "id": "ev-9", "source": "x", "data": body,
                 "type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE}
        reply = client.post("/events", content=json.dumps(event),
                            headers={"content-type": "application/cloudevents+json"})
        assert reply.status_code == 202 and reply.json()["accepted"]
    for bad in (b"not json", json.dumps({"instances": TEXTS}).encode()):  # no ce-id
        assert client.post("/events", content=bad).json()["accepted"] is False
    refused = binary(client, "ev-10", "request", {"nothing": 1})  # unusable on arrival
    assert refused.status_code == 202 and refused.json()["accepted"] is False
    assert binary(client, "ev-10", "response", response).json()["accepted"]  # held, unpaired
    assert app.state.writer.flush(20)
    assert len(read_log(settings.inference_log, settings)) == 3
    stats = client.get("/stats").json()
    assert stats["bad"] == 3 and stats["pending"] == 1


def test_a_logged_body_with_a_bom_reads_like_one_without():
    """The server accepts a request body with a leading UTF-8 BOM; KServe's logger passes it
    on as the client sent it."""
    headers = {"ce-id": "ev-1", "ce-type": REQUEST_TYPE}
    raw = json.dumps({"instances": TEXTS}).encode()
    assert parse_event(headers, b"\xef\xbb\xbf" + raw) == parse_event(headers, raw)


def test_the_sink_writes_to_gcs(gcs, tmp_path):
    settings = Settings(home=tmp_path / "home", inference_log_uri=f"{gcs}/inference-log")
    app = create_app(settings)
    with TestClient(app) as client:
        request, response = v2_pair()
        binary(client, "ev-2", "request", request)
        binary(client, "ev-2", "response", response)
        assert app.state.writer.flush(30)
    frame = read_log(settings.inference_log, settings)
    assert frame["text"].tolist() == TEXTS and set(frame["source"]) == {"sink"}
