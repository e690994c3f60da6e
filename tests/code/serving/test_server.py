"""The model server for real: `civicsense serve` on a free port with the registered champion,
called over HTTP on both protocols, good and bad input alike."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import requests

from civicsense import LABELS
from tests_support import MODEL_NAME

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
TEXTS = ["I love this reform, finally some good news :)",
         "This law is a disaster and the minister should resign!",
         "The parliament votes on the pension bill on Tuesday."]


def v2_body(data, name="text", datatype="BYTES", shape=None) -> dict:
    return {"inputs": [{"name": name, "datatype": datatype,
                        "shape": [len(data)] if shape is None else shape, "data": data}]}


@pytest.fixture(scope="module")
def expected(trained_home) -> np.ndarray:
    """The same registered model in process: what the server must answer."""
    settings, summary = trained_home
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{summary['version']}")
    return model.unwrap_python_model().predictor.predict_proba(TEXTS)


@pytest.fixture(scope="module")
def version_tag(trained_home) -> str:
    _, summary = trained_home
    return f"{summary['version']}+{summary['run_id']}"


def test_health_and_metadata_carry_the_model_version(server, version_tag):
    url, _ = server
    assert requests.get(f"{url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(f"{url}/v2/models/{MODEL_NAME}/ready", timeout=5).status_code == 200
    metadata = requests.get(f"{url}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert metadata["versions"] == [version_tag]
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        "label": "BYTES", "probabilities": "FP32"}


def test_v1_predicts_the_batch_like_the_model_in_process(server, expected, version_tag):
    url, _ = server
    response = requests.post(url + V1, json={"instances": TEXTS}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == version_tag
    assert len(body["predictions"]) == len(TEXTS)
    got = np.array([[p["probabilities"][label] for label in LABELS]
                    for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert [p["label"] for p in body["predictions"]] == [LABELS[i] for i in
                                                         expected.argmax(axis=1)]


def test_v2_infer_returns_labels_and_fp32_probabilities(server, expected, version_tag):
    url, _ = server
    response = requests.post(url + V2, json={"id": "req-1", **v2_body(TEXTS)}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-1" and body["model_version"] == version_tag
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [3]
    assert outputs["label"]["data"] == [LABELS[i] for i in expected.argmax(axis=1)]
    probabilities = outputs["probabilities"]
    assert probabilities["datatype"] == "FP32" and probabilities["shape"] == [3, 3]
    np.testing.assert_allclose(np.reshape(probabilities["data"], (3, 3)), expected,
                               rtol=1e-5, atol=1e-6)


def test_a_v2_body_without_json_content_type_is_still_read(server):
    url, _ = server
    response = requests.post(url + V2, data=json.dumps(v2_body(TEXTS[:1])), timeout=10,
                             headers={"content-type": "text/plain"})
    assert response.status_code == 200, response.text


LONG = "x" * 501  # the fixture's server accepts at most 500 characters and 64 texts
BAD_V1 = {
    "invalid JSON": b'{"instances": ["a"',
    "invalid UTF-8": b'{"instances": ["\xff\xfe"]}',
    "lone surrogate": b'{"instances": ["\\ud800"]}',
    "not an object": b'["a", "b"]',
    "missing instances": b'{"inputs": ["a"]}',
    "instances not a list": b'{"instances": "a"}',
    "empty list": b'{"instances": []}',
    "empty string": b'{"instances": ["fine", ""]}',
    "blank string": b'{"instances": ["   "]}',
    "non-string item": b'{"instances": ["fine", 3]}',
    "object item": b'{"instances": [{"text": "a"}]}',
    "null item": b'{"instances": [null]}',
    "too long": json.dumps({"instances": [LONG]}).encode(),
    "batch too big": json.dumps({"instances": ["a"] * 65}).encode(),
}
BAD_V2 = {
    "invalid JSON": b'{"inputs": [',
    "invalid UTF-8": b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", '
                     b'"data": ["\xff"]}]}',
    "no inputs": b'{"id": "1"}',
    "empty inputs": b'{"inputs": []}',
    "renamed input": json.dumps(v2_body(["a"], name="txt")).encode(),
    "missing name": b'{"inputs": [{"shape": [1], "datatype": "BYTES", "data": ["a"]}]}',
    "two inputs": json.dumps({"inputs": v2_body(["a"])["inputs"] * 2}).encode(),
    "wrong datatype": json.dumps(v2_body([1.0], datatype="FP32")).encode(),
    "ints as BYTES": json.dumps(v2_body([1, 2])).encode(),
    "empty list": json.dumps(v2_body([])).encode(),
    "empty string": json.dumps(v2_body(["a", ""])).encode(),
    "too long": json.dumps(v2_body([LONG])).encode(),
    "batch too big": json.dumps(v2_body(["a"] * 65)).encode(),
    "shape disagrees": json.dumps(v2_body(["a", "b"], shape=[3])).encode(),
    "shape 2-D wide": json.dumps(v2_body(["a", "b"], shape=[1, 2])).encode(),
    "negative shape": json.dumps(v2_body(["a"], shape=[-1])).encode(),
    "binary header lies": b'{"inputs": [{}]}',
}


@pytest.fixture(scope="module")
def session(server) -> requests.Session:
    """One keep-alive connection for all bad requests: KServe drops it after any 500."""
    return requests.Session()


def assert_client_error_and_still_serving(session, url, response):
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert set(response.json()) == {"error"} and response.json()["error"]
    ok = session.post(url + V1, json={"instances": ["still there?"]}, timeout=10)
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("case", list(BAD_V1))
def test_bad_v1_input_is_a_4xx_json_error(server, session, case):
    url, process = server
    response = session.post(url + V1, data=BAD_V1[case], timeout=10,
                            headers={"content-type": "application/json"})
    assert_client_error_and_still_serving(session, url, response)
    assert process.poll() is None


@pytest.mark.parametrize("case", list(BAD_V2))
def test_bad_v2_input_is_a_4xx_json_error(server, session, case):
    url, process = server
    headers = {"content-type": "application/json"}
    if case == "binary header lies":
        headers["inference-header-content-length"] = "16"
    response = session.post(url + V2, data=BAD_V2[case], timeout=10, headers=headers)
    assert_client_error_and_still_serving(session, url, response)
    assert process.poll() is None


def test_unknown_model_and_route_are_json_404s(server, session):
    url, _ = server
    for response in (session.post(f"{url}/v1/models/nope:predict", json={"instances": ["a"]}),
                     session.get(f"{url}/no/such/route")):
        assert response.status_code == 404 and "error" in response.json()


@pytest.mark.parametrize("path", [V1, V2])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_is_a_413_before_it_is_read_whole(server, path, chunked):
    url, process = server
    # The fixture's limits (64 texts of 500 chars) allow about 450 kB; send 2 MB of valid JSON.
    body = json.dumps({"instances": ["x" * 400] * 5000}).encode()
    data = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    with requests.Session() as fresh:  # the server may close this connection: it is unread
        response = fresh.post(url + path, data=data, timeout=30,
                              headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "at most" in response.json()["error"]
    assert process.poll() is None
    ok = requests.post(url + V1, json={"instances": ["still there?"]}, timeout=10)
    assert ok.status_code == 200, ok.text
