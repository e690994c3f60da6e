"""The server's hardening pieces on their own: chunking, one-line client errors, connection
deadlines on a real uvicorn, the refused repository routes, and a dead pool failing fast."""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import os
import signal
import socket
import threading
import time
import types

import numpy as np
import pytest
import uvicorn
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from starlette.exceptions import HTTPException

from civicsense.serving.budget import chunks, merge_scores
from civicsense.serving.connections import guarded_protocol
from civicsense.serving.dataplane import RepositoryRoutesOff
from civicsense.serving.http import OneLineClientErrors
from civicsense.serving.model_processes import ModelProcessDied, ModelProcesses
from tests_support import free_port, run_coroutine


def test_chunks_bound_characters_and_keep_order():
    texts = ["a" * 5, "b" * 5, "c" * 12, "d", "e"]
    got = list(chunks(texts, 10))
    assert got == [["a" * 5, "b" * 5], ["c" * 12], ["d", "e"]]
    assert [t for chunk in got for t in chunk] == texts


def test_merge_scores_stacks_in_order():
    first = (np.ones((2, 3)), np.zeros((2, 4)))
    second = (np.full((1, 3), 2.0), np.ones((1, 4)))
    probabilities, descriptors = merge_scores([first, second])
    assert probabilities.shape == (3, 3) and probabilities[2, 0] == 2.0
    assert descriptors.shape == (3, 4) and descriptors[2, 0] == 1.0


def test_a_client_error_is_logged_as_one_line():
    try:
        raise InvalidInput("bad\nbody")
    except InvalidInput as error:
        record = logging.LogRecord("kserve", logging.ERROR, __file__, 1, "Exception:", (),
                                   (type(error), error, error.__traceback__))
    assert OneLineClientErrors().filter(record)
    line = logging.Formatter().format(record)
    assert "\n" not in line and "InvalidInput: bad body" in line
    assert record.levelname == "WARNING"


def test_the_repository_routes_refuse_load_and_unload():
    routes = RepositoryRoutesOff(ModelRepository())
    for call in (routes.load, routes.unload):
        with pytest.raises(HTTPException) as raised:
            run_coroutine(call("civicsense-sentiment"))
        assert raised.value.status_code == 404


async def _hello(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def guarded_server():
    """A real uvicorn with the guarded protocol: read deadline 0.5 s, idle 1 s."""
    port = free_port()
    config = uvicorn.Config(_hello, host="127.0.0.1", port=port, log_config=None,
                            http=guarded_protocol(0.5), timeout_keep_alive=1, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def _read_until_closed(sock: socket.socket, limit: float = 10) -> tuple[bytes, float]:
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic() - start


@pytest.mark.parametrize("partial", [b"POST / HTTP/1.1\r\nHost: x\r\n",  # headers never end
                                     b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n"
                                     b"only part of the body"])
def test_a_request_that_stalls_gets_a_408_and_is_closed(guarded_server, partial):
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(partial)
        data, waited = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert waited < 5  # closed by the 0.5 s deadline, not the 10 s read limit of this test


def test_a_silent_connection_is_closed_and_a_normal_request_is_served(guarded_server):
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        data, waited = _read_until_closed(sock)
    assert data == b"" and waited < 5
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.fixture
def tiny_pool():
    """Two real model processes whose 'model' is list concatenation (no model to train)."""
    load = functools.partial(types.SimpleNamespace, predictor=[], version_tag="v1")
    pool = ModelProcesses(load, operator.add, 2, "v1", start_timeout=120)
    pool.start()
    yield pool
    pool.stop()


def test_a_dead_pool_fails_fast_and_is_replaced(tiny_pool):
    async def scenario():
        assert await tiny_pool.score(["a"]) == ["a"]
        assert tiny_pool.alive == 2
        for pid in tiny_pool.pids:
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)  # the event loop sees both pipes close
        assert tiny_pool.alive == 0
        start = time.monotonic()
        with pytest.raises(ModelProcessDied):
            await tiny_pool.score(["b"])
        failed_after = time.monotonic() - start
        replacing = len(tiny_pool.members) < 2  # still loading: the 503 did not wait for them
        await tiny_pool.wait_until_complete(timeout=120)
        return failed_after, replacing, await tiny_pool.score(["c"])

    failed_after, replacing, answer = run_coroutine(scenario())
    assert replacing and answer == ["c"] and tiny_pool.alive == 2
    assert failed_after < 5, failed_after


def test_a_cancelled_wait_gives_its_process_back(tiny_pool):
    async def scenario():
        await tiny_pool.score(["warm"])
        waiters = [asyncio.ensure_future(tiny_pool.score(["x"])) for _ in range(20)]
        await asyncio.sleep(0)
        for waiter in waiters[::2]:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        # Every process is idle again: as many sequential requests as processes succeed.
        return [await tiny_pool.score([str(i)]) for i in range(4)], tiny_pool._idle.qsize()

    answers, idle = run_coroutine(scenario())
    assert answers == [["0"], ["1"], ["2"], ["3"]] and idle == 2
