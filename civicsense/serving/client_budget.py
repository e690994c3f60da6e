"""Per-client budgets of model time: whose request it is (a credential, else the client's
address), what a request may cost before it runs, and token buckets of model CPU-milliseconds
that refuse a client in debt while another client shares the server. Plain classes, no HTTP.

Work-conserving on purpose: a client alone on the server is never refused (there is nobody to
protect, and the server's throughput figures are one client's), it only runs up a debt that is
capped at one burst, so that when another client comes it waits at most burst / rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from civicsense.monitoring.request_edge import client_address

# The cost known before a request runs, as a floor of what it is charged: what one text and a
# thousand characters take the lexical model on this project's 2 cores (a 32 x 2,000-emoji
# request ≈ 0.7 s). Measured model CPU time replaces it when larger (the encoder's is).
ESTIMATE_MS_PER_TEXT = 1.0
ESTIMATE_MS_PER_KCHAR = 10.0
# The shortest body that holds another text: `"x",` in a JSON list.
MIN_BYTES_PER_TEXT = 4
MAX_CLIENTS = 100_000  # clients remembered; the least recently seen go first (a full bucket)
ANONYMOUS = "-"  # model calls outside any budgeted request (the feedback route's one text)


def client_key(peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[str],
               credential_id: str | None = None) -> str:
    """Whom a request is charged to: its credential when it carries a valid one (one per
    install, so one address may hold several readers), else the client's address (the TCP
    peer, or behind Settings.trusted_proxies the address they forwarded)."""
    if credential_id:
        return f"credential:{credential_id}"
    return f"address:{client_address(peer, headers, trusted_proxies)}"


def estimate_ms(texts: int, chars: int) -> float:
    """Model time a request of `texts` texts and `chars` characters in all is charged at
    least: the lexical model's cost on this project's machine."""
    return texts * ESTIMATE_MS_PER_TEXT + chars * ESTIMATE_MS_PER_KCHAR / 1000


def upper_bound_ms(content_length: int | None, max_batch: int, max_request_chars: int) -> float:
    """The most a body of `content_length` bytes can be estimated at once read (None: of
    unknown length, a chunked body): no more characters than bytes, no more texts than fit."""
    if content_length is None:
        return estimate_ms(max_batch, max_request_chars)
    texts = min(max_batch, max(1, content_length // MIN_BYTES_PER_TEXT))
    return estimate_ms(texts, min(content_length, max_request_chars))


class OverBudget(Exception):
    """A client in debt while another shares the server (HTTP 429, Retry-After in s)."""

    def __init__(self, key: str, retry_after: int, ms_per_second: float, burst_ms: float):
        super().__init__(key, retry_after)
        self.key, self.retry_after = key, retry_after
        self.ms_per_second, self.burst_ms = ms_per_second, burst_ms

    def __str__(self) -> str:
        return (f"this client has used its share of the model's time ({self.ms_per_second:g} "
                f"ms per second, {self.burst_ms:g} ms at once) while others are waiting: retry "
                f"in {self.retry_after} s, or send fewer or shorter texts")


@dataclass
class _Client:
    tokens: float  # ms of model time; negative: the debt still to be paid back
    updated: float
    seen: float


@dataclass(eq=False)
class Reservation:
    """What one admitted request has booked: `booked` ms now taken from its client's bucket,
    the estimate once its texts are known, and the model CPU time measured while it ran."""

    budgets: ClientBudgets
    key: str
    shared: bool  # another client was active when it came: keep a model process free of it
    booked: float
    estimate: float | None = None
    measured_ms: float = 0.0
    settled: bool = False

    def book_estimate(self, texts: int, chars: int) -> None:
        """Its texts are known (before any of them runs): book their estimate instead."""
        self.estimate = estimate_ms(texts, chars)
        self.budgets.rebook(self, self.estimate)

    def add_measured(self, cpu_seconds: float) -> None:
        self.measured_ms += cpu_seconds * 1000

    def settle(self) -> float:
        """Charge what it cost, once: the larger of its estimate and the model time measured,
        or nothing when it never reached the model (a malformed or refused body). Returns it."""
        if self.settled:
            return self.booked
        charge = max(self.estimate or 0.0, self.measured_ms)
        self.budgets.rebook(self, charge, final=True)
        self.settled = True
        return charge

    def refund(self) -> None:
        """The model never ran for it (its texts were invalid): charge nothing."""
        self.estimate, self.measured_ms = None, 0.0
        self.settle()


CURRENT: ContextVar[Reservation | None] = ContextVar("civicsense_reservation", default=None)


def current_reservation() -> Reservation | None:
    """The admitted request being served in this task, if any (set by the FairShare edge)."""
    return CURRENT.get()


class ClientBudgets:
    """Token buckets of model time by client key: `burst_ms` at most, refilled at
    `ms_per_second`; debt capped at one burst. `ms_per_second` 0: nobody is refused, but who is
    active is still tracked (for the model processes' fair turns). One event loop calls it:
    no lock. Memory-bounded: `max_clients`, least recently seen evicted."""

    def __init__(self, ms_per_second: float, burst_ms: float, active_seconds: float,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS):
        if ms_per_second < 0 or burst_ms <= 0 or active_seconds <= 0:
            raise ValueError("ms_per_second must be >= 0, burst_ms and active_seconds > 0")
        self.rate, self.burst, self.active_seconds = ms_per_second, burst_ms, active_seconds
        self.clock, self.max_clients = clock, max_clients
        self.clients: OrderedDict[str, _Client] = OrderedDict()  # least recently seen first

    @classmethod
    def from_settings(cls, settings) -> ClientBudgets:
        return cls(settings.serve_client_ms_per_second, settings.serve_client_burst_ms,
                   settings.serve_client_active_seconds)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def tokens(self, key: str) -> float:
        """The key's bucket now (a full one for a client not seen): for tests and logs."""
        client = self.clients.get(key)
        if client is None:
            return self.burst
        return self._refilled(client, self.clock())

    def _refilled(self, client: _Client, now: float) -> float:
        return min(self.burst, client.tokens + (now - client.updated) * self.rate)

    def shared(self, key: str, now: float | None = None) -> bool:
        """Another client sent a request within `active_seconds`."""
        now = self.clock() if now is None else now
        for other, client in reversed(self.clients.items()):  # most recently seen first
            if other != key:
                return now - client.seen <= self.active_seconds
        return False

    def admit(self, key: str, reserve_ms: float) -> Reservation:
        """Book `reserve_ms` (what the request may cost) for `key`; OverBudget when its bucket
        is empty or in debt while another client shares the server."""
        now = self.clock()
        client = self.clients.pop(key, None)
        if client is None:
            client = _Client(self.burst, now, now)
        client.tokens, client.updated, client.seen = self._refilled(client, now), now, now
        self.clients[key] = client
        while len(self.clients) > self.max_clients:
            self.clients.popitem(last=False)
        shared = self.shared(key, now)
        if not self.enabled:
            return Reservation(self, key, shared, 0.0, settled=True)
        if client.tokens <= 0 and shared:
            wait = max(1, math.ceil(-client.tokens / self.rate))
            raise OverBudget(key, wait, self.rate, self.burst)
        client.tokens -= reserve_ms
        return Reservation(self, key, shared, reserve_ms)

    def rebook(self, reservation: Reservation, amount_ms: float, final: bool = False) -> None:
        """Book `amount_ms` for an admitted request instead of what it has booked; `final`:
        its charge, after which the debt is capped at one burst."""
        if reservation.settled:
            return
        client = self.clients.get(reservation.key)
        if client is not None:  # evicted meanwhile: it comes back with a full bucket anyway
            tokens = min(self.burst, client.tokens + reservation.booked - amount_ms)
            client.tokens = max(-self.burst, tokens) if final else tokens
        reservation.booked = amount_ms
