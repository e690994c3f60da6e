"""Fair sharing: each client's budget of model time (refill, charge, debt, 429 with
Retry-After), whom a request is charged to, fair turns at the model processes, one log line per
refused client per second; then the app as serve() builds it, a real pool, and serve() itself
on loopback with a heavy and a light client on distinct addresses. Clocks are injected: no
result depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import logging
import operator
import os
import sys
import types

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kserve.model_repository import ModelRepository
from kserve.protocol.rest.server import RESTServer

from civicsense.serving.client_budget import (
    ANONYMOUS,
    CURRENT,
    ClientBudgets,
    OverBudget,
    client_key,
    estimate_ms,
    upper_bound_ms,
)
from civicsense.serving.dataplane import RepositoryRoutesOff, VersionedDataPlane, request_size
from civicsense.serving.fair_share import BUDGETED, RefusalLog
from civicsense.serving.loading import LoadedModel
from civicsense.serving.model_processes import ModelProcesses
from civicsense.serving.model_turns import ModelTurns, take_turn
from civicsense.serving.predictor import SentimentKServeModel
from civicsense.serving.server import install_app
from civicsense.settings import Settings
from tests_support import (
    STAND_IN_SERVER,
    free_port,
    run_coroutine,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.filterwarnings(  # KServe 0.21 answers with ORJSONResponse
    "ignore::fastapi.exceptions.FastAPIDeprecationWarning")
NAME = "civicsense-sentiment"
V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budgets(rate=100.0, burst=1000.0, active=10.0, **kwargs) -> tuple[ClientBudgets, Clock]:
    clock = Clock()
    return ClientBudgets(rate, burst, active, clock=clock, **kwargs), clock


# ---------------------------------------------------------------- the budget's arithmetic


def test_a_client_alone_is_never_refused_and_its_debt_is_capped_at_one_burst():
    book, _ = budgets()
    for _ in range(10):
        book.admit("address:a", 700).settle()  # never reached the model: refunded
        reservation = book.admit("address:a", 700)
        reservation.book_estimate(32, 64_000)
        reservation.settle()
    assert book.tokens("address:a") == -1000  # 10 x 672 ms charged, capped at one burst


def test_a_client_in_debt_is_refused_while_another_shares_the_server():
    book, clock = budgets(rate=100, burst=1000)
    book.admit("address:light", 5).settle()
    first = book.admit("address:heavy", 900)
    first.book_estimate(32, 64_000)  # 672 ms, known before the model runs
    first.add_measured(0.75)  # the model processes took 750 ms of CPU: that is charged
    assert first.settle() == 750
    assert book.tokens("address:heavy") == 250
    book.admit("address:heavy", 900).book_estimate(32, 64_000)  # 250 > 0: admitted, then -422
    with pytest.raises(OverBudget) as refused:
        book.admit("address:heavy", 10)
    assert refused.value.retry_after == 5  # 422 ms of debt at 100 ms/s: 4.22 s, rounded up
    assert "retry in 5 s" in str(refused.value)
    clock.now += 4.3  # 430 ms refilled: 8 ms in hand
    book.admit("address:heavy", 10)
    assert book.admit("address:light", 5)  # the light client's bucket is full all along


def test_sharing_ends_when_the_other_client_has_been_quiet_for_the_active_time():
    book, clock = budgets(rate=50, burst=1000, active=10)
    book.admit("address:light", 1)
    heavy = book.admit("address:heavy", 10)
    heavy.add_measured(5.0)
    assert heavy.settle() == 5000 and book.tokens("address:heavy") == -1000  # capped
    with pytest.raises(OverBudget):
        book.admit("address:heavy", 1)
    clock.now += 10.5  # light quiet for 10.5 s: the heavy one is alone again, still in debt
    assert book.tokens("address:heavy") == -475
    assert book.admit("address:heavy", 5000).shared is False


def test_a_refused_client_still_counts_as_active():
    book, _ = budgets(rate=100, burst=100)
    book.admit("address:b", 500)  # alone: admitted into debt
    book.admit("address:a", 500)  # a sees b: admitted (full bucket), into debt
    with pytest.raises(OverBudget):
        book.admit("address:b", 1)
    with pytest.raises(OverBudget):
        book.admit("address:a", 1)


def test_a_request_refused_before_the_model_is_charged_nothing():
    book, _ = budgets(burst=1000)
    reservation = book.admit("address:a", 600)
    assert book.tokens("address:a") == 400  # reserved up front
    reservation.book_estimate(2, 100)
    assert book.tokens("address:a") == 997  # its texts' estimate: 2 x 1 + 100 x 0.01 ms
    reservation.refund()  # invalid texts (a 400): nothing
    assert book.tokens("address:a") == 1000
    reservation.add_measured(1.0)
    assert reservation.settle() == 0  # settled once: later calls change nothing
    assert book.tokens("address:a") == 1000


def test_no_budget_refuses_nobody_but_still_tells_who_shares():
    book, _ = budgets(rate=0)
    book.admit("address:a", 10**9)
    reservation = book.admit("address:b", 10**9)
    assert reservation.shared and reservation.settle() == 0
    assert book.tokens("address:a") == 1000


def test_clients_held_are_bounded_least_recently_seen_first():
    book, _ = budgets(max_clients=3)
    for name in "abcd":
        book.admit(f"address:{name}", 1)
    assert list(book.clients) == ["address:b", "address:c", "address:d"]


def test_estimates_before_the_model_runs():
    assert estimate_ms(32, 64_000) == 672
    assert estimate_ms(1, 100) == 2
    assert upper_bound_ms(60, 256, 64_000) == estimate_ms(15, 60)  # 15 texts fit in 60 bytes
    assert upper_bound_ms(768_000, 256, 64_000) == estimate_ms(256, 64_000)
    assert upper_bound_ms(None, 256, 64_000) == estimate_ms(256, 64_000)  # chunked body


def test_request_size_of_v1_and_v2_bodies():
    assert request_size({"instances": ["ab", "cde"]}) == (2, 5)
    assert request_size({"instances": "nope"}) is None
    assert request_size(b"raw") is None


# ---------------------------------------------------------------- whom it is charged to


def test_the_key_is_the_credential_else_the_address():
    spoofed = {"x-forwarded-for": "203.0.113.9"}
    assert client_key("198.51.100.7", spoofed, (), "ab12cd34ab12cd34") == \
        "credential:ab12cd34ab12cd34"
    assert client_key("198.51.100.7", spoofed, ()) == "address:198.51.100.7"
    assert client_key("10.0.0.2", spoofed, ("10.0.0.0/8",)) == "address:203.0.113.9"
    assert client_key(None, {}, ()) == "address:unknown"


@pytest.mark.parametrize(("path", "budgeted"), [
    (V1, True), (V2, True), (f"/v2/models/{NAME}/versions/7/infer", True),
    (f"/v1/models/{NAME}/feedback", False), (f"/v1/models/{NAME}:explain", False),
    (f"/v2/models/{NAME}/ready", False), ("/v1/credentials", False)])
def test_only_the_routes_that_run_the_model_are_budgeted(path, budgeted):
    assert bool(BUDGETED.fullmatch(path)) is budgeted


# ---------------------------------------------------------------- turns at the processes


async def _turns_scenario(shared: bool) -> list[str]:
    turns, started = ModelTurns(2), []

    async def call(key: str, hold: asyncio.Event) -> None:
        await turns.acquire(key, shared)
        started.append(key)
        await hold.wait()
        turns.release(key)

    holds = [asyncio.Event() for _ in range(4)]
    tasks = [asyncio.ensure_future(call("heavy", holds[i])) for i in range(3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(call("light", holds[3])))
    await asyncio.sleep(0)
    snapshot = list(started)
    holds[0].set()  # a heavy call ends: its turn goes to the client running fewest
    await asyncio.sleep(0.01)
    for hold in holds:
        hold.set()
    await asyncio.gather(*tasks)
    return snapshot + ["|"] + started[len(snapshot):]


def test_a_client_alone_may_use_every_process():
    assert run_coroutine(_turns_scenario(shared=False)) == [
        "heavy", "heavy", "|", "light", "heavy"]


def test_a_client_that_shares_leaves_a_process_free_for_others():
    assert run_coroutine(_turns_scenario(shared=True)) == [
        "heavy", "light", "|", "heavy", "heavy"]


def test_a_cancelled_waiter_gives_up_its_place():
    async def scenario():
        turns = ModelTurns(1)
        await turns.acquire("a", False)
        waiter = asyncio.ensure_future(turns.acquire("b", False))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        turns.release("a")
        return turns.waiting, turns.total

    assert run_coroutine(scenario()) == ([], 0)


def test_take_turn_adds_the_cpu_time_to_the_request_being_served():
    book, _ = budgets()
    reservation = book.admit("address:a", 10)

    async def model_call(texts):
        return texts, 0.025

    async def scenario():
        token = CURRENT.set(reservation)
        try:
            return await take_turn(ModelTurns(2), model_call, ["x"])
        finally:
            CURRENT.reset(token)

    assert run_coroutine(scenario()) == ["x"]
    assert reservation.measured_ms == 25
    turns = ModelTurns(1)
    assert run_coroutine(take_turn(turns, model_call, ["y"])) == ["y"]  # outside a request
    assert turns.running == {} and ANONYMOUS == "-"


def test_real_model_processes_report_the_cpu_time_of_each_call():
    load = functools.partial(types.SimpleNamespace, predictor=[], version_tag="v1")
    pool = ModelProcesses(load, operator.add, 2, "v1", start_timeout=120)
    pool.start()
    book, _ = budgets()
    reservation = book.admit("address:a", 10)

    async def scenario():
        token = CURRENT.set(reservation)
        try:
            return await pool.score(["a"])
        finally:
            CURRENT.reset(token)

    try:
        assert run_coroutine(scenario()) == ["a"]
    finally:
        pool.stop()
    assert reservation.measured_ms > 0


# ---------------------------------------------------------------- one line per client a second


def test_refusals_are_logged_once_a_second_per_client_with_a_count(caplog):
    clock = Clock()
    log = RefusalLog(clock=clock)
    refused = OverBudget("address:heavy", 3, 250, 2000)
    caplog.set_level(logging.WARNING, logger="kserve")
    kserve_logger = logging.getLogger("kserve")
    kserve_logger.addHandler(caplog.handler)
    try:
        written = [log.refused("POST", V1, refused) for _ in range(5)]
        clock.now += 1.0
        written.append(log.refused("POST", V1, refused))
    finally:
        kserve_logger.removeHandler(caplog.handler)
    assert written == [True, False, False, False, False, True]
    lines = [r.getMessage() for r in caplog.records if r.name == "kserve"]
    assert lines[-1].endswith("(4 more refused since the last line)")
    assert all("\n" not in line for line in lines)


# ---------------------------------------------------------------- the app as serve() builds it


class StandInPredictor:
    def score(self, texts):
        rows = np.tile(np.array([0.1, 0.2, 0.7], dtype=np.float32), (len(texts), 1))
        return rows, np.zeros((len(texts), 1))


def build_app(settings: Settings) -> FastAPI:
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


def test_the_app_answers_a_heavy_client_429_and_keeps_serving_a_light_one(tmp_path):
    settings = Settings(home=tmp_path / "home", log_predictions=False,
                        serve_client_ms_per_second=1, serve_client_burst_ms=50)
    app = build_app(settings)
    light = TestClient(app, client=("198.51.100.1", 40000))
    heavy = TestClient(app, client=("198.51.100.2", 40000))
    big = {"instances": ["x" * 500] * 40}  # 40 + 200 ms estimated
    assert light.post(V1, json={"instances": ["fine"]}).status_code == 200
    assert heavy.post(V1, json=big).status_code == 200  # 50 ms in hand: admitted, into debt
    refused = heavy.post(V2, json={"inputs": [{"name": "text", "datatype": "BYTES",
                                               "shape": [1], "data": ["small"]}]})
    assert refused.status_code == 429
    # 190 ms of debt, capped at one burst (50 ms) at 1 ms/s: 50 s, less the 1 s it was held.
    assert refused.headers["Retry-After"] == "49"
    assert "share of the model's time" in refused.json()["error"]
    assert heavy.post(V1, content=b"not even json").status_code == 429  # no body is read
    assert light.post(V1, json={"instances": ["still fine"]}).status_code == 200
    # A body that is refused as invalid costs nothing: the light client's bucket stays full.
    assert light.post(V1, json={"instances": [""]}).status_code == 400


# ---------------------------------------------------------------- serve() itself, on loopback



def _post(port: int, source: str, body: dict) -> tuple[int, dict, dict]:
    """POST V1 from the loopback address `source`: the server sees a distinct TCP peer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                            source_address=(source, 0))
    try:
        connection.request("POST", V1, body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_serve_refuses_a_heavy_peer_and_serves_a_light_one(tmp_path):
    port = free_port()
    env = {**os.environ, "CIVICSENSE_HOME": str(tmp_path / "home"),
           "CIVICSENSE_LOG_PREDICTIONS": "false", "CIVICSENSE_SERVE_CLIENT_MS_PER_SECOND": "1",
           "CIVICSENSE_SERVE_CLIENT_BURST_MS": "50",
           "CIVICSENSE_SERVE_CLIENT_ACTIVE_SECONDS": "3600"}
    env.pop("CIVICSENSE_TRUSTED_PROXIES", None)
    log = tmp_path / "server.log"
    process, _ = start_server([sys.executable, "-c", STAND_IN_SERVER, str(port)], port, env,
                              log, timeout=120)
    light, heavy, big = "127.0.0.2", "127.0.0.3", {"instances": ["😀" * 500] * 40}
    try:
        statuses = [_post(port, light, {"instances": ["fine"]})[0], _post(port, heavy, big)[0]]
        refusals = [_post(port, heavy, big) for _ in range(3)]
        statuses.append(_post(port, light, {"instances": ["still fine"]})[0])
    finally:
        stop_server(process)
    assert statuses == [200, 200, 200]
    assert [status for status, _, _ in refusals] == [429] * 3
    assert all(int(headers["retry-after"]) >= 1 and "error" in body
               for _, headers, body in refusals)
    text = log.read_text()
    assert "429 POST" in text and "address:127.0.0.3" in text
    assert "Traceback" not in text
