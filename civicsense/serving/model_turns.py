"""Fair turns at the model processes: as many model calls at once as there are processes, the
next free turn to the waiting client with the fewest calls running, and a client that shares
the server with others never holding every process, so their requests find one free.

Work-conserving: a client alone may use every process (one client's throughput is the
server's). Sharing is decided when its request was admitted (Reservation.shared).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from civicsense.serving.client_budget import ANONYMOUS, current_reservation


@dataclass(eq=False)
class _Waiter:
    key: str
    limit: int
    granted: asyncio.Future


class ModelTurns:
    """Turns for `capacity` model processes. acquire(key, shared) before a model call and
    release(key) after it, on one event loop."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.running: dict[str, int] = {}
        self.total = 0
        self.waiting: list[_Waiter] = []  # in arrival order

    def limit(self, shared: bool) -> int:
        """Most calls one client may run at once: all but one process while it shares."""
        return max(1, self.capacity - 1) if shared else self.capacity

    def _start(self, key: str) -> None:
        self.running[key] = self.running.get(key, 0) + 1
        self.total += 1

    async def acquire(self, key: str, shared: bool) -> None:
        limit = self.limit(shared)
        # After every release no waiter that may start is left waiting, so one that may
        # start now jumps nobody.
        if self.total < self.capacity and self.running.get(key, 0) < limit:
            self._start(key)
            return
        waiter = _Waiter(key, limit, asyncio.get_running_loop().create_future())
        self.waiting.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:  # e.g. the request's time budget ran out
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.release(key)  # granted as it was cancelled: hand the turn on
            elif waiter in self.waiting:
                self.waiting.remove(waiter)
            raise

    def release(self, key: str) -> None:
        left = self.running.get(key, 0) - 1
        if left > 0:
            self.running[key] = left
        else:
            self.running.pop(key, None)
        self.total = max(0, self.total - 1)
        self._grant()

    def _grant(self) -> None:
        """Free turns to waiters that may start: the one whose client runs fewest calls,
        the earliest of those first."""
        while self.total < self.capacity and self.waiting:
            best = None
            for waiter in self.waiting:
                running = self.running.get(waiter.key, 0)
                if running < waiter.limit and (best is None or running < best[0]):
                    best = (running, waiter)
                    if running == 0:
                        break
            if best is None:
                return
            waiter = best[1]
            self.waiting.remove(waiter)
            if waiter.granted.cancelled():
                continue
            self._start(waiter.key)
            waiter.granted.set_result(None)


async def take_turn(turns: ModelTurns, call: Callable[..., Awaitable[tuple[Any, float]]],
                    *args: Any) -> Any:
    """`call(*args)` (a model call answering (value, CPU seconds)) in the turn of the client
    whose request this task serves; the CPU time is added to that request's Reservation."""
    reservation = current_reservation()
    key = reservation.key if reservation is not None else ANONYMOUS
    await turns.acquire(key, reservation is not None and reservation.shared)
    try:
        value, cpu_seconds = await call(*args)
    finally:
        turns.release(key)
    if reservation is not None:
        reservation.add_measured(cpu_seconds)
    return value
