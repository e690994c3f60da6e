"""Connection deadlines for the server's HTTP/1.1 protocol: a request's headers and body must
arrive within a time limit, and a connection that never sends anything is closed like an idle
keep-alive one, so slow or stalled clients cannot hold connections open.

uvicorn (h11) times out only idle keep-alive connections between requests; a client that
sends a request a byte at a time, stops halfway, or connects and stays silent keeps its
connection forever. This subclass of uvicorn's own h11 protocol adds the missing deadlines.
"""

from __future__ import annotations

import asyncio

import h11
from kserve.logging import logger
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMED_OUT_BODY = b'{"error": "the request did not arrive in time; connection closed"}'
TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
             b"connection: close\r\ncontent-length: " + str(len(TIMED_OUT_BODY)).encode()
             + b"\r\n\r\n" + TIMED_OUT_BODY)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request (408, then closed) and an idle
    deadline for a fresh connection (timeout_keep_alive, as between requests)."""

    read_timeout: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        # uvicorn cancels this on the first byte, as it does between requests.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self._read_deadline is None and self.conn.their_state is h11.IDLE:
            self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._cancel_read_deadline()  # the whole request is in (or the connection ended)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_deadline()
        super().connection_lost(exc)

    def _cancel_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.warning("408 closed the connection from %s: the request did not arrive within "
                       "%g s", client, self.read_timeout)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(TIMED_OUT)
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()  # an app waiting for the body gets a disconnect
        self.transport.close()


def guarded_protocol(read_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn's Config takes as `http`, with this read deadline."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"read_timeout": read_timeout})
