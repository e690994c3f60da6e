"""The server's fair-sharing edge: every predict and infer request is charged to its client's
budget of model time (civicsense.serving.client_budget) from its headers alone, before its body
is read, and a client in debt while others share the server gets a 429 with Retry-After.
A refusal is answered after a pause (HOLD_SECONDS): a client that ignores Retry-After and loops
gets one answer per connection a second, so a flood of refusals costs the server next to
nothing (answered at once, each would cost about a millisecond of the one HTTP process's time
reading and dropping a large body), and a client that waits as told loses nothing.

The request's Reservation travels in a context variable to where its texts become known (the
data plane books their estimate before any runs) and to the model processes (which take turns
by client and add the CPU time each call used); it is settled when the response is done.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from kserve.logging import logger
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from civicsense.serving.client_budget import (
    CURRENT,
    MAX_CLIENTS,
    ClientBudgets,
    OverBudget,
    client_key,
    upper_bound_ms,
)

# The routes that run the model: V1 predict, V2 infer (unversioned and versioned).
BUDGETED = re.compile(r"/v1/models/[^/]+:predict|/v2/models/[^/]+(?:/versions/[^/]+)?/infer")
LOG_EVERY_SECONDS = 1.0
HOLD_SECONDS = 1.0
CredentialOf = Callable[[Mapping[str, str]], str | None]


class RefusalLog:
    """One log line per refused client per second at most, with how many refusals it stands
    for: a client looping over-budget requests would otherwise write a line per request."""

    def __init__(self, every_seconds: float = LOG_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS):
        self.every, self.clock, self.max_clients = every_seconds, clock, max_clients
        self.unlogged: OrderedDict[str, tuple[float, int]] = OrderedDict()  # last line, since

    def refused(self, method: str, path: str, error: OverBudget) -> bool:
        """Log this refusal unless the client had a line within the last second; True when
        a line was written."""
        now = self.clock()
        last, since = self.unlogged.pop(error.key, (float("-inf"), 0))
        if now - last < self.every:
            self.unlogged[error.key] = (last, since + 1)
            return False
        more = f" ({since} more refused since the last line)" if since else ""
        logger.warning("429 %s %s: %s over its model-time budget, retry in %d s%s", method,
                       path, error.key, error.retry_after, more)
        self.unlogged[error.key] = (now, 0)
        while len(self.unlogged) > self.max_clients:
            self.unlogged.popitem(last=False)
        return True


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class FairShare:
    """ASGI middleware, outside the body limit and the JSON checks, so that a refused request
    costs the server its headers only. `credential_of(headers)` names the verified
    credential a request carries (None: none, or not valid), which then keys its budget
    instead of its address."""

    def __init__(self, app, budgets: ClientBudgets, trusted_proxies: tuple[str, ...],
                 max_batch: int, max_request_chars: int,
                 credential_of: CredentialOf | None = None, log: RefusalLog | None = None,
                 hold_seconds: float = HOLD_SECONDS):
        self.app, self.budgets, self.hold_seconds = app, budgets, hold_seconds
        self.trusted_proxies = trusted_proxies
        self.max_batch, self.max_request_chars = max_batch, max_request_chars
        self.credential_of = credential_of
        self.log = log or RefusalLog()

    def key(self, scope) -> str:
        client = scope.get("client")
        headers = Headers(scope=scope)
        credential = self.credential_of(headers) if self.credential_of else None
        return client_key(client[0] if client else None, headers, self.trusted_proxies,
                          credential)

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or not BUDGETED.fullmatch(scope.get("path", ""))):
            return await self.app(scope, receive, send)
        key = self.key(scope)
        reserve = upper_bound_ms(content_length(scope["headers"]), self.max_batch,
                                 self.max_request_chars)
        try:
            reservation = self.budgets.admit(key, reserve)
        except OverBudget as error:
            hold = min(self.hold_seconds, error.retry_after)
            await asyncio.sleep(hold)  # uvicorn reads no more of the body meanwhile
            error.retry_after = max(1, math.ceil(error.retry_after - hold))
            self.log.refused(scope["method"], scope["path"], error)
            response = JSONResponse({"error": str(error)}, status_code=429,
                                    headers={"Retry-After": str(error.retry_after)})
            return await response(scope, receive, send)
        token = CURRENT.set(reservation)
        try:
            await self.app(scope, receive, send)
        finally:
            CURRENT.reset(token)
            reservation.settle()
