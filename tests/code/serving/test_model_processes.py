"""Model processes behind the one HTTP process: same answers as the model in process, a clean
server sys.path, a crashed process replaced without failing a request, an error kept to its
request."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import numpy as np
import pytest

from civicsense import LABELS
from civicsense.serving.loading import load_model
from civicsense.serving.model_processes import ModelProcessDied
from civicsense.serving.predictor import SentimentKServeModel
from tests_support import MODEL_NAME, run_coroutine

TEXTS = ["I love this reform, finally some good news :)",
         "This law is a disaster and the minister should resign!"]


@pytest.fixture(scope="module")
def pooled(trained_home):
    settings, _ = trained_home
    settings = settings.model_copy(update={"log_predictions": False})
    model = SentimentKServeModel(MODEL_NAME, f"models:/{MODEL_NAME}@champion", settings,
                                 processes=2)
    path_before = list(sys.path)
    model.load()
    try:
        yield model, path_before
    finally:
        model.stop()


def probabilities(answer: dict) -> np.ndarray:
    return np.array([[p["probabilities"][label] for label in LABELS]
                     for p in answer["predictions"]])


def test_two_processes_load_the_model_and_the_server_process_does_not(pooled):
    model, path_before = pooled
    assert model.ready and len(set(model.pool.pids)) == 2
    assert os.getpid() not in model.pool.pids
    # Loading the pyfunc would put the model's code copy first on sys.path, and every process
    # spawned afterwards would import civicsense from there.
    assert sys.path == path_before and model.loaded.predictor is None


def test_the_processes_answer_like_the_model_in_process(pooled, trained_home):
    model, _ = pooled
    settings, summary = trained_home
    answer = run_coroutine(model.predict({"instances": TEXTS}))
    assert answer["model_version"] == f"{summary['version']}+{summary['run_id']}"
    in_process = load_model(f"models:/{MODEL_NAME}/{summary['version']}", settings)
    np.testing.assert_allclose(probabilities(answer),
                               in_process.predictor.predict_proba(TEXTS), atol=1e-6)


def test_a_killed_model_process_is_replaced_and_no_request_fails(pooled):
    model, _ = pooled
    before = list(model.pool.pids)
    os.kill(before[0], signal.SIGKILL)

    async def several_then_recovered():
        answers = await asyncio.gather(*(model.predict({"instances": TEXTS}) for _ in range(6)))
        await model.pool.wait_until_complete(timeout=300)
        return answers

    answers = run_coroutine(several_then_recovered())
    assert [len(a["predictions"]) for a in answers] == [2] * 6
    assert len(model.pool.pids) == 2 and before[0] not in model.pool.pids
    assert before[1] in model.pool.pids  # only the dead one was replaced
    assert len(run_coroutine(model.predict({"instances": TEXTS}))["predictions"]) == 2


def test_an_error_in_a_model_process_is_an_error_for_that_request_only(pooled):
    model, _ = pooled
    pids = list(model.pool.pids)
    with pytest.raises(RuntimeError, match="model process"):
        run_coroutine(model.pool.score(None))  # the featurizer cannot take None
    assert model.pool.pids == pids
    assert len(run_coroutine(model.predict({"instances": TEXTS}))["predictions"]) == 2


def test_stopping_fails_the_waiting_requests_instead_of_hanging(pooled):
    """Last in this module: it stops the shared pool."""
    model, _ = pooled

    async def stop_while_busy():
        tasks = [asyncio.ensure_future(model.predict({"instances": TEXTS * 16}))
                 for _ in range(6)]
        await asyncio.sleep(0.01)
        model.stop()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    results = run_coroutine(stop_while_busy())
    assert any(isinstance(result, ModelProcessDied) for result in results)
    assert all(isinstance(result, ModelProcessDied | dict) for result in results), results
    assert model.pool.members == [] and not model.ready
