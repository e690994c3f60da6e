"""The server's input checks and batching, as plain functions (no HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from civicsense import LABELS
from civicsense.features.featurizer import describe
from civicsense.serving.loading import LoadedModel
from civicsense.serving.predictor import SentimentKServeModel
from civicsense.serving.validation import Limits, check_texts, texts_from_v1, texts_from_v2
from civicsense.settings import Settings
from civicsense.training.model import SentimentPredictor
from tests_support import run_coroutine

LIMITS = Limits(max_text_chars=10, max_batch=3)


def v2(data, name="text", datatype="BYTES", shape=None) -> InferRequest:
    shape = [len(data)] if shape is None else shape
    return InferRequest(model_name="m", infer_inputs=[InferInput(name, shape, datatype, data)])


def test_a_request_is_capped_in_characters_in_all():
    limits = Limits(max_text_chars=10, max_batch=5, max_request_chars=25)
    assert check_texts(["a" * 10, "b" * 10, "c" * 5], limits)
    with pytest.raises(InvalidInput, match="26 characters in all; at most 25 per request"):
        check_texts(["a" * 10, "b" * 10, "c" * 6], limits)


def test_the_default_cap_admits_the_extensions_default_batch_of_longest_texts():
    settings = Settings()
    assert 32 * settings.max_text_chars <= settings.max_request_chars


def test_good_texts_pass_through():
    assert check_texts(["a", "héllo 👋"], LIMITS) == ["a", "héllo 👋"]
    assert texts_from_v1({"instances": ["a"]}, LIMITS) == ["a"]
    assert texts_from_v1(b'{"instances": ["a"]}', LIMITS) == ["a"]
    assert texts_from_v2(v2(["a", "b"]), LIMITS) == ["a", "b"]
    assert texts_from_v2(v2(["a", "b"], shape=[2, 1]), LIMITS) == ["a", "b"]
    assert texts_from_v2(v2([["a"], ["b"]], shape=[2, 1]), LIMITS) == ["a", "b"]
    assert texts_from_v2(v2([b"caf\xc3\xa9"]), LIMITS) == ["café"]


@pytest.mark.parametrize("items, message", [
    ("a", "must be a list"), ([], "is empty"), (["a"] * 4, "at most 3"),
    (["a", 1], "must be a string"), ([""], "empty text"), ([" \n"], "empty text"),
    (["\u200b\u202e"], "empty text"), (["\ufeff"], "empty text"),
    (["x" * 11], "at most 10"), (["\ud800"], "UTF-8"), ([b"\xff"], "UTF-8"),
])
def test_bad_texts_are_invalid_input(items, message):
    with pytest.raises(InvalidInput, match=message):
        check_texts(items, LIMITS)


@pytest.mark.parametrize("request_, message", [
    (v2(["a"], name="texts"), "must be named"), (v2([1.0], datatype="FP32"), "BYTES"),
    (v2(["a", "b"], shape=[3]), "shape"), (v2(["a", "b"], shape=[1, 2]), "shape"),
    (v2(["a"], shape=[]), "shape"), (v2(["a"], shape=["1"]), "shape"),
    (v2([["a", "b"]], shape=[1, 2]), "shape"), (v2([["a"], ["b"]], shape=[3, 1]), "shape"),
    (v2([["a"]], shape=[1]), "must be a string"),
    (InferRequest(model_name="m", infer_inputs=[]), "exactly one input"),
])
def test_bad_v2_requests_are_invalid_input(request_, message):
    with pytest.raises(InvalidInput, match=message):
        texts_from_v2(request_, LIMITS)


class CountingPredictor(SentimentPredictor):
    """SentimentPredictor with its featurizer and booster stood in: one featurizer call per batch
    is counted, the probabilities are fixed, the features are the real descriptors (the payload
    log reads them)."""

    def __init__(self):
        super().__init__(featurizer=self, booster=None)
        self.calls = []

    def transform(self, texts):
        self.calls.append(list(texts))
        return describe(texts)

    def predict_features(self, features):
        rows = np.tile(np.array([0.2, 0.3, 0.5], dtype=np.float32), (len(features), 1))
        rows[0] = [0.7, 0.2, 0.1]
        return rows


def test_a_batch_is_one_predictor_call_and_responses_carry_the_version(tmp_path):
    model = SentimentKServeModel("civicsense-sentiment", "unused",
                                 Settings(max_batch=10, home=tmp_path))
    predictor = CountingPredictor()
    model.loaded = LoadedModel(predictor, "unused", "7", "abc")
    model.ready = True
    body = run_coroutine(model.predict({"instances": ["a", "b", "c", "d"]}))
    assert predictor.calls == [["a", "b", "c", "d"]]
    assert body["model_version"] == "7+abc"
    assert [p["label"] for p in body["predictions"]] == ["negative"] + ["positive"] * 3
    assert list(body["predictions"][0]["probabilities"]) == list(LABELS)
    response = run_coroutine(model.predict(v2(["a", "b"])))
    assert predictor.calls[-1] == ["a", "b"] and response.model_version == "7+abc"
    outputs = {o.name: o for o in response.outputs}
    assert outputs["probabilities"].shape == [2, 3] and outputs["label"].data == [
        "negative", "positive"]


def test_the_body_limit_leaves_room_for_the_largest_valid_batch():
    settings = Settings(max_batch=50, max_text_chars=300, home=Path("unused"))
    worst = json.dumps({"instances": ["\U0001F600" * 300] * 50})  # 12 bytes per char escaped
    assert len(worst.encode()) <= settings.body_limit < 2 * len(worst.encode()) + 65536
    assert Settings(max_body_bytes=1000, home=Path("unused")).body_limit == 1000
