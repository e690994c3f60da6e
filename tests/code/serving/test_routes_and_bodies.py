"""The server's app as `serve()` builds it (our routes, handlers and middleware, then KServe's),
on a stand-in predictor: unsupported routes are JSON 4xx/501 with one log line, versioned V2
routes work for the served version only, bodies are strict JSON alike on V1, V2 and feedback,
invisible-only texts are blank, feedback names the served version, and forwarded headers
move the feedback peer limit only from a trusted proxy; then serve() itself, once, on loopback."""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import threading
import time

import numpy as np
import pytest
import requests
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kserve.model_repository import ModelRepository
from kserve.protocol.rest.server import RESTServer

from civicsense.monitoring.feedback_log import read_feedback
from civicsense.serving.dataplane import RepositoryRoutesOff, VersionedDataPlane
from civicsense.serving.http import OneLineClientErrors
from civicsense.serving.loading import LoadedModel
from civicsense.serving.predictor import SentimentKServeModel
from civicsense.serving.server import configure_uvicorn, install_app
from civicsense.settings import Settings
from tests_support import STAND_IN_SERVER, free_port, start_server, stop_server

pytestmark = pytest.mark.filterwarnings(  # KServe 0.21 answers with ORJSONResponse
    "ignore::fastapi.exceptions.FastAPIDeprecationWarning")
NAME = "civicsense-sentiment"
TAG = "7+abc"  # the stand-in's version: registered version 7, run abc
V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"
FEEDBACK = f"/v1/models/{NAME}/feedback"
CREDENTIAL = "X-CivicSense-Credential"  # feedback is taken only with a credential the server issued
BOM = b"\xef\xbb\xbf"
PEER = ("198.51.100.7", 50000)  # the TCP peer every TestClient request comes from


class StandInPredictor:
    """What loading.score calls: fixed probabilities (positive), no descriptors needed."""

    def score(self, texts):
        rows = np.tile(np.array([0.1, 0.2, 0.7], dtype=np.float32), (len(texts), 1))
        return rows, np.zeros((len(texts), 1))


def build_app(settings: Settings) -> FastAPI:
    """serve()'s app without a trained model or a port: install_app, then KServe's own
    middleware, routes and handlers, as RESTServer adds them when the server starts."""
    model = SentimentKServeModel(NAME, "unused", settings)
    model.loaded = LoadedModel(StandInPredictor(), "unused", "7", "abc")
    model.ready = True
    models = ModelRepository()
    models.update(model)
    dataplane = VersionedDataPlane(model_registry=models)
    app = FastAPI()
    install_app(app, models, dataplane, settings)
    rest = RESTServer("unused", dataplane, RepositoryRoutesOff(models), http_port=0)
    rest._add_middlewares(app)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    return app


def settings_for(tmp_path, **overrides) -> Settings:
    return Settings(home=tmp_path / "home", log_predictions=False,
                    feedback_log_uri=str(tmp_path / "feedback"), **overrides)


def credential(post) -> dict[str, str]:
    """A reader's credential header, from the server's POST /v1/credentials (`post(path)`)."""
    return {CREDENTIAL: post("/v1/credentials").json()["credential"]}


def reader(test_client: TestClient) -> TestClient:
    """`test_client`, sending a reader's credential with every request."""
    test_client.headers.update(credential(test_client.post))
    return test_client


@pytest.fixture
def client(tmp_path):
    with TestClient(build_app(settings_for(tmp_path)), client=PEER) as test_client:
        yield reader(test_client)


@pytest.fixture
def logged(caplog):
    """The server's log as production writes it: KServe's logger, through the one-line filter
    its log config installs."""
    kserve_logger = logging.getLogger("kserve")
    caplog.handler.addFilter(OneLineClientErrors())
    caplog.set_level(logging.INFO, logger="kserve")
    # KServe's log config (when some test applied it) stops its records at its own handler.
    attached = not kserve_logger.propagate
    if attached:
        kserve_logger.addHandler(caplog.handler)
    yield caplog
    if attached:
        kserve_logger.removeHandler(caplog.handler)


def v2_body(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                        "data": texts}]}


def feedback_body(client_id: str = "reader-0001", **change) -> dict:
    return {"text": "Raising the pension age is fine by me", "label": "negative",
            "model_version": TAG, "predicted_label": "positive", "client_id": client_id,
            **change}


@pytest.mark.parametrize(("method", "path", "status", "says"), [
    ("GET", f"/v2/models/{NAME}/versions/3/ready", 404, f"serves version {TAG}"),
    ("GET", f"/v2/models/{NAME}/versions/3", 404, f"serves version {TAG}"),
    ("POST", f"/v2/models/{NAME}/versions/3/infer", 404, f"serves version {TAG}"),
    ("GET", "/v2/models/no-such-model/versions/7/ready", 404, "no-such-model"),
    ("POST", f"/v1/models/{NAME}:explain", 501, "no explainer"),
    ("POST", "/v1/models/no-such-model:explain", 404, "no-such-model"),
    ("POST", f"/v2/repository/models/{NAME}/unload", 404, "disabled"),
    ("GET", f"/v2/models/{NAME}/stats", 404, "Not Found"),
    ("POST", "/v2/repository/index", 404, "Not Found"),
    ("GET", V2, 405, "Method Not Allowed"),
])
def test_an_unsupported_route_is_a_json_error_and_one_log_line(client, logged, method, path,
                                                                status, says):
    answer = client.request(method, path, json=v2_body(["fine"]))
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    assert "Traceback" not in logged.text
    assert not [r for r in logged.records if r.exc_info]
    assert len([r for r in logged.records if r.levelno >= logging.WARNING]) == 1


@pytest.mark.parametrize("version", [TAG, "7"])
def test_versioned_routes_work_for_the_served_version(client, logged, version):
    prefix = f"/v2/models/{NAME}/versions/{version}"
    assert client.get(prefix + "/ready").json() == {"name": NAME, "ready": True}
    assert client.get(prefix).json()["versions"] == [TAG]
    answer = client.post(prefix + "/infer", json=v2_body(["so good"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == TAG
    assert "Traceback" not in logged.text


def test_server_metadata_advertises_no_extension_whose_routes_404(client):
    assert client.get("/v2").json()["extensions"] == []


@pytest.mark.parametrize("text", ["\u200b\u202e", "\ufeff", "\u2066\u2069 \u200d", "\u3164"])
def test_text_of_only_invisible_characters_is_blank_everywhere(client, text):
    for path, body in [(V1, {"instances": ["visible", text]}), (V2, v2_body([text])),
                       (FEEDBACK, feedback_body(text=text))]:
        answer = client.post(path, json=body)
        assert answer.status_code == 400, (path, answer.text)
        assert "empty" in answer.json()["error"] or "non-empty" in answer.json()["error"]
    assert client.post(V1, json={"instances": ["a\u200b"]}).status_code == 200


def _binary_v2(texts: list[str], bom: bool = False) -> tuple[bytes, dict]:
    """A V2 binary-extension request (tritonclient's binary_data=True): a JSON header, then
    each BYTES element as a 4-byte length and its UTF-8."""
    data = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    header = (BOM if bom else b"") + header
    return header + data, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}


def test_a_leading_bom_is_accepted_alike_on_v1_v2_and_feedback(client):
    v1 = json.dumps({"instances": ["so good"]}).encode()
    v2 = json.dumps(v2_body(["so good"])).encode()
    json_type = {"Content-Type": "application/json"}
    plain_v1 = client.post(V1, content=v1, headers=json_type)
    with_bom_v1 = client.post(V1, content=BOM + v1, headers=json_type)
    plain_v2 = client.post(V2, content=v2, headers=json_type)
    with_bom_v2 = client.post(V2, content=BOM + v2, headers=json_type)
    assert [plain_v1.status_code, with_bom_v1.status_code, plain_v2.status_code,
            with_bom_v2.status_code] == [200, 200, 200, 200], with_bom_v1.text
    assert with_bom_v1.json() == plain_v1.json()
    assert with_bom_v2.json()["outputs"] == plain_v2.json()["outputs"]
    body, headers = _binary_v2(["so good"], bom=True)
    binary = client.post(V2, content=body, headers=headers)
    assert binary.status_code == 200, binary.text
    assert binary.json()["outputs"][0]["data"] == ["positive"]
    feedback = client.post(FEEDBACK, content=BOM + json.dumps(feedback_body()).encode(),
                           headers=json_type)
    assert feedback.status_code == 200, feedback.text


@pytest.mark.parametrize(("path", "body"), [
    (V1, b'{"instances": ["fine"], "instances": ["\\u200b"]}'),
    (V2, b'{"inputs": [{"name": "text", "name": "other", "datatype": "BYTES", "shape": [1],'
         b' "data": ["fine"]}]}'),
    (FEEDBACK, json.dumps(feedback_body())[:-1].encode() + b', "label": "positive"}'),
    (V1, BOM + b'{"instances": ["a"], "instances": ["b"]}'),
])
def test_a_key_sent_twice_is_a_400(client, logged, path, body):
    answer = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "twice" in answer.json()["error"]
    assert len([r for r in logged.records if r.levelno >= logging.WARNING]) == 1


def test_a_key_sent_twice_in_a_binary_extension_header_is_a_400(client):
    body, headers = _binary_v2(["fine"])
    body = body.replace(b'"name": "text"', b'"name": "text", "name": "text"')
    headers["Inference-Header-Content-Length"] = str(int(
        headers["Inference-Header-Content-Length"]) + len(b', "name": "text"'))
    answer = client.post(V2, content=body, headers=headers)
    assert answer.status_code == 400 and "twice" in answer.json()["error"]


def test_feedback_must_name_the_version_this_server_serves(tmp_path, client):
    for version in ["999+evil", "7", "6+abc"]:
        answer = client.post(FEEDBACK, json=feedback_body(model_version=version))
        assert answer.status_code == 400, answer.text
        assert f"this server serves, {TAG}" in answer.json()["error"]
    assert client.post(FEEDBACK, json=feedback_body()).status_code == 200
    settings = settings_for(tmp_path)
    assert read_feedback(settings.feedback_log, settings).model_version.tolist() == [TAG]


def _statuses(test_client: TestClient, spoofed: list[str]) -> list[int]:
    """One feedback per spoofed address, each claiming a fresh client id (ignored)."""
    return [test_client.post(FEEDBACK, json=feedback_body(f"reader-{i:04d}"), headers={
        "X-Forwarded-For": address}).status_code for i, address in enumerate(spoofed)]


SPOOFED = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_move_the_peer_limit(tmp_path):
    settings = settings_for(tmp_path, feedback_peer_rate_per_minute=2)
    with TestClient(build_app(settings), client=PEER) as test_client:
        assert _statuses(reader(test_client), SPOOFED) == [200, 200, 429, 429]
        refused = test_client.post(FEEDBACK, json=feedback_body("reader-9999"), headers={
            "Forwarded": "for=203.0.113.9", "X-Real-IP": "203.0.113.10"})
    assert refused.status_code == 429 and PEER[0] in refused.json()["error"]


def test_from_a_trusted_proxy_the_forwarded_address_is_the_peer(tmp_path):
    settings = settings_for(tmp_path, feedback_peer_rate_per_minute=2,
                            trusted_proxies="198.51.100.0/24")
    with TestClient(build_app(settings), client=PEER) as test_client:
        assert _statuses(reader(test_client), SPOOFED) == [200] * 4
        # What a client wrote is left of what the proxy appended: only the proxy's entry counts.
        chained = [f"10.9.9.{i}, 203.0.113.1" for i in range(3)]
        assert _statuses(test_client, chained) == [200, 429, 429]


def _serve_in_thread(app, settings: Settings):
    """uvicorn on 127.0.0.1 with the config the server's start hook gives it for `settings`."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    configure_uvicorn(config, settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def spoofed_feedback_statuses(url: str) -> list[int]:
    """One reader's credential, then one feedback post per SPOOFED X-Forwarded-For address:
    the statuses in order."""
    token = credential(lambda path: requests.post(url + path, timeout=10))
    return [requests.post(url + FEEDBACK, json=feedback_body(f"reader-{i:04d}"),
                          headers={"X-Forwarded-For": address, **token},
                          timeout=10).status_code
            for i, address in enumerate(SPOOFED)]


@pytest.mark.parametrize(("trusted", "expected"), [("", [200, 200, 429, 429]),
                                                   ("127.0.0.1", [200] * 4)])
def test_uvicorn_honours_forwarded_for_from_loopback_only_when_told(tmp_path, trusted,
                                                                    expected):
    """uvicorn's own default trusts X-Forwarded-For from 127.0.0.1: the attack that spent no
    peer limit. Through the server's start hook it trusts only CIVICSENSE_TRUSTED_PROXIES."""
    settings = settings_for(tmp_path, feedback_peer_rate_per_minute=2, trusted_proxies=trusted)
    server, thread, url = _serve_in_thread(build_app(settings), settings)
    try:
        statuses = spoofed_feedback_statuses(url)
    finally:
        server.should_exit = True
        thread.join(10)
    assert statuses == expected




def test_serve_itself_ignores_a_spoofed_forwarded_for_and_logs_no_traceback(tmp_path):
    """The whole of serve() (KServe's ModelServer and its uvicorn, as `civicsense serve` runs
    them) with a stand-in predictor: the attack replayed on loopback, then unsupported routes."""
    port = free_port()
    env = {**os.environ, "CIVICSENSE_HOME": str(tmp_path / "home"),
           "CIVICSENSE_LOG_PREDICTIONS": "false",
           "CIVICSENSE_FEEDBACK_LOG_URI": str(tmp_path / "feedback"),
           "CIVICSENSE_FEEDBACK_PEER_RATE_PER_MINUTE": "2"}
    env.pop("CIVICSENSE_TRUSTED_PROXIES", None)
    log = tmp_path / "server.log"
    process, url = start_server([sys.executable, "-c", STAND_IN_SERVER, str(port)], port, env,
                                log, timeout=120)
    try:
        statuses = spoofed_feedback_statuses(url)
        assert requests.get(url + "/v2", timeout=10).json()["extensions"] == []
        for method, path in [("GET", f"/v2/models/{NAME}/versions/3/ready"),
                             ("POST", f"/v1/models/{NAME}:explain")]:
            answer = requests.request(method, url + path, json={}, timeout=10)
            assert answer.status_code in (404, 501) and "error" in answer.json()
    finally:
        stop_server(process)
    assert statuses == [200, 200, 429, 429]
    assert "Traceback" not in log.read_text()
