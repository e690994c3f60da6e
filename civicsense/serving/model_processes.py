"""The model processes behind the server's one HTTP process: spawned, fed request by request over
pipes from the event loop, and replaced when one dies.

Why not uvicorn's `--workers`: they share one listening socket and keep each keep-alive
connection on the worker that accepted it, so a client with a few connections (a browser,
Knative's queue-proxy) often lands them all on one worker while the others idle. Here each
request goes to whichever process is free, whatever connection it came on. Why not a
`ProcessPoolExecutor`: its queue and manager threads cost about a millisecond per request; a
pipe per process read by the event loop itself costs a fraction of that.
Each answer carries the CPU time it took; calls take turns by client (serving.model_turns).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from kserve.logging import logger

from civicsense.serving.model_turns import ModelTurns, take_turn

WARM_UP = ["warming up the model process"]


class ModelProcessDied(RuntimeError):
    """The process holding a request's batch exited before answering, or none is alive (the
    server answers 503 with Retry-After: the pool is being replaced)."""


# Imported once by the fork server, so a model process forked from it (a replacement for one
# that died, too) starts in seconds: only the model itself is loaded, not the libraries.
PRELOAD = ["civicsense.serving.loading", "civicsense.features.featurizer",
           "civicsense.training.model", "mlflow.pyfunc", "mlflow.pyfunc.model", "mlflow.models",
           "mlflow.tracking", "mlflow.artifacts", "mlflow.store.artifact.local_artifact_repo",
           "cloudpickle", "xgboost", "sklearn.linear_model", "sklearn.feature_extraction.text",
           "vaderSentiment.vaderSentiment"]


def _context():
    """multiprocessing's fork server, preloaded: not fork (the server process runs threads),
    not spawn (each process would import everything again: ≈20 s per replacement here)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _exit_with_parent() -> None:
    # A SIGKILLed server cannot stop its model processes: without this they would linger. The
    # parent is the fork server, which exits with the server; then this process is reparented.
    first_parent = os.getppid()
    while os.getppid() == first_parent:
        time.sleep(1)
    os._exit(0)


def _serve_requests(load: Callable[[], Any], score: Callable, conn: Connection) -> None:
    """A model process: load once, say ready with the version loaded, then answer batches
    until the pipe closes. Errors go back as messages: the process outlives a bad batch."""
    # Ctrl-C and a process-group SIGTERM are the HTTP process's to handle: it drains its
    # requests, then closes the pipes, which ends this process (as does its death).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    model = load()
    score(model.predictor, WARM_UP)
    conn.send(("ready", os.getpid(), model.version_tag))
    while True:
        try:
            texts = conn.recv()
        except EOFError:
            return
        started = time.process_time()  # every thread of it: OpenMP's and ONNX Runtime's too
        try:
            answer = ("ok", score(model.predictor, texts))
        except Exception as error:  # noqa: BLE001 - answered as a 500, the process stays
            answer = ("error", f"{type(error).__name__}: {error}")
        answer += (time.process_time() - started,)
        try:
            conn.send(answer)
        except OSError:  # the server closed the pipe: it is stopping
            return


@dataclass(eq=False)
class _Member:
    process: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    pid: int
    alive: bool = True
    pending: asyncio.Future | None = None


class ModelProcesses:
    """`processes` copies of the model, each in a spawned process, used one batch at a time.

    `load()` (picklable; run in each process) returns an object with `.predictor` and
    `.version_tag`; `score(predictor, texts)` (module-level) computes an answer there. Every
    process must report `expected_version`."""

    def __init__(self, load: Callable[[], Any], score: Callable, processes: int,
                 expected_version: str, start_timeout: float = 600):
        self.load, self.score_fn = load, score
        self.processes = processes
        self.expected_version = expected_version
        self.start_timeout = start_timeout
        self.members: list[_Member] = []
        self._context = _context()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Queue[_Member] | None = None
        self._stopping: asyncio.Future | None = None  # done once stop() ran: waiters give up
        self._emptied: asyncio.Future | None = None  # done while no process is alive
        self._replacing: set[asyncio.Task] = set()
        self._one_at_a_time: asyncio.Lock | None = None
        self._turns = ModelTurns(processes)
        self._stopped = False

    @property
    def pids(self) -> list[int]:
        return sorted(member.pid for member in self.members)

    @property
    def alive(self) -> int:
        """Model processes running now (what readiness and liveness report on)."""
        return sum(1 for member in self.members
                   if member.alive and member.process.is_alive())

    def start(self) -> None:
        """Spawn the processes; return once each has loaded the model and answered once."""
        self.members = self._spawn(self.processes)

    def _spawn(self, count: int) -> list[_Member]:
        started = []
        for _ in range(count):
            parent_end, child_end = self._context.Pipe()
            process = self._context.Process(
                target=_serve_requests, name="civicsense-model", daemon=True,
                args=(self.load, self.score_fn, child_end))
            process.start()
            child_end.close()
            started.append((process, parent_end))
        deadline = time.monotonic() + self.start_timeout
        members = []
        try:
            for process, conn in started:
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"a model process was not ready in "
                                       f"{self.start_timeout:.0f} s")
                try:
                    _, pid, version = conn.recv()
                except EOFError:
                    process.join(5)
                    raise RuntimeError("a model process exited while loading the model (exit "
                                       f"code {process.exitcode}; its error is in the log "
                                       "above)") from None
                if version != self.expected_version:
                    raise RuntimeError(f"a model process loaded {version}, the server "
                                       f"resolved {self.expected_version}")
                members.append(_Member(process, conn, pid))
        except BaseException:
            for process, conn in started:
                conn.close()
                process.kill()
                process.join(5)
            raise
        return members

    def watch(self) -> None:
        """Watch the processes from the running event loop now (the server calls it when it
        starts), so one that dies is replaced even before the next request comes."""
        self._bind(asyncio.get_running_loop())

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the pipes from this event loop (the server has one; tests run several)."""
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            for member in self.members:
                self._loop.remove_reader(member.conn.fileno())
        self._loop, self._idle = loop, asyncio.LifoQueue()
        self._stopping = loop.create_future()
        self._emptied = loop.create_future()
        # Replacements load in turn: the first is up sooner than two sharing the cores.
        self._one_at_a_time = asyncio.Lock()
        self._turns = ModelTurns(self.processes)
        for member in self.members:
            member.pending = None
            self._add(member)

    def _add(self, member: _Member) -> None:
        assert self._loop is not None and self._idle is not None
        self._loop.add_reader(member.conn.fileno(), self._on_answer, member)
        self._idle.put_nowait(member)
        if self._emptied is not None and self._emptied.done():
            self._emptied = self._loop.create_future()

    def _on_answer(self, member: _Member) -> None:
        assert self._loop is not None and self._idle is not None
        try:
            status, value, cpu_seconds = member.conn.recv()
        except (EOFError, OSError):
            self._loop.remove_reader(member.conn.fileno())
            self._replace(member)
            if member.pending is not None and not member.pending.done():
                member.pending.set_exception(ModelProcessDied(
                    f"model process {member.pid} exited while predicting"))
            return
        pending, member.pending = member.pending, None
        self._idle.put_nowait(member)
        if pending is not None and not pending.done():  # done: the client went away
            if status == "ok":
                pending.set_result((value, cpu_seconds))
            else:
                pending.set_exception(RuntimeError(f"model process {member.pid}: {value}"))

    def _replace(self, dead: _Member) -> None:
        dead.alive = False
        dead.conn.close()
        dead.process.join(1)
        self.members.remove(dead)
        if self._stopped:
            return
        if not self.members and self._emptied is not None and not self._emptied.done():
            self._emptied.set_result(None)  # requests waiting for a process: 503 now
        logger.error("model process %d died (exit code %s); starting another", dead.pid,
                     dead.process.exitcode)
        loop = self._loop
        assert loop is not None

        async def replace() -> None:
            try:
                async with self._one_at_a_time:
                    [member] = await loop.run_in_executor(None, self._spawn, 1)
            except Exception:  # noqa: BLE001 - cannot serve as configured: let the pod restart
                logger.exception("cannot replace the model process; stopping the server")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if self._loop is loop and not self._stopped:
                self.members.append(member)
                self._add(member)
            else:
                member.conn.close()

        task = loop.create_task(replace())
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def score(self, texts: list[str]) -> Any:
        """score(predictor, texts) in the next free process, in the turn of the request's
        client; its CPU time is added to the request's Reservation. A process that dies
        meanwhile is replaced and the batch tried once more elsewhere. Only once: a batch that
        kills its process itself fails (500) after costing at most two processes."""
        if self._stopped:
            raise ModelProcessDied("the model processes are stopped")
        self._bind(asyncio.get_running_loop())
        return await take_turn(self._turns, self._score, texts)

    async def _score(self, texts: list[str]) -> tuple[Any, float]:
        assert self._loop is not None and self._idle is not None
        for attempt in (1, 2):
            member = await self._next_idle()
            member.pending = self._loop.create_future()
            try:
                member.conn.send(texts)
            except OSError:  # died while idle: its reader replaces it
                member.pending = None
                continue
            except BaseException:  # e.g. unpicklable input: the process is fine, keep it
                member.pending = None
                self._idle.put_nowait(member)
                raise
            try:
                return await member.pending
            except ModelProcessDied:
                if attempt == 2:
                    raise
        raise ModelProcessDied("two model processes died in a row")

    async def _next_idle(self) -> _Member:
        """The next free process; ModelProcessDied at once when none is alive (a waiting
        request gets a 503 in milliseconds, not when a replacement has loaded the model)."""
        assert self._idle is not None and self._stopping is not None
        while True:
            if not self.members:
                raise ModelProcessDied("no model process is alive; replacements are starting")
            assert self._emptied is not None
            getter = asyncio.ensure_future(self._idle.get())
            try:
                await asyncio.wait({getter, self._stopping, self._emptied},
                                   return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the request's time budget ran out
                self._give_back(getter)
                raise
            if not getter.done():
                self._give_back(getter)
                if self._stopping.done():
                    raise ModelProcessDied("the server is stopping")
                continue  # emptied: the check above answers
            member = getter.result()
            if self._stopping.done():
                self._idle.put_nowait(member)
                raise ModelProcessDied("the server is stopping")
            if member.alive:
                return member

    def _give_back(self, getter: asyncio.Future) -> None:
        """Cancel a pending idle-queue get, returning its member if it already got one."""
        assert self._idle is not None
        if getter.done() and not getter.cancelled():
            self._idle.put_nowait(getter.result())
        else:
            getter.cancel()

    async def wait_until_complete(self, timeout: float = 600) -> None:
        """Until `processes` are running again after a replacement (tests wait on it)."""
        deadline = time.monotonic() + timeout
        while len(self.members) < self.processes or self._replacing:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.members)} of {self.processes} model processes")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        """End every process; requests still waiting for one fail instead of hanging."""
        self._stopped = True
        if self._loop is not None and not self._loop.is_closed():
            for member in self.members:
                self._loop.remove_reader(member.conn.fileno())
                if member.pending is not None and not member.pending.done():
                    member.pending.set_exception(ModelProcessDied("the server is stopping"))
            if self._stopping is not None and not self._stopping.done():
                self._stopping.set_result(None)
        for member in self.members:
            member.conn.close()  # the process's recv() ends: it returns
        for member in self.members:
            member.process.join(5)
            if member.process.is_alive():
                member.process.kill()
        self.members = []
