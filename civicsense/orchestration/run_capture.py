"""The local run's output, split: every line (KFP's task dumps, dependency warnings, the
components' own output) to a log file, and step events (start, sub-phase, end with outputs) to
an observer that draws the terminal view."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A tqdm line a component prints ("train xgboost:  42%|████▏ | 168/400 [00:05<00:07, …]").
INNER_BAR = re.compile(r"^\s*(?P<desc>[^:|]{1,40}):\s+\d+%\|.*?\|\s*(?P<n>\d+)/(?P<total>\d+)")
EXECUTOR_INFO = re.compile(r"\[KFP Executor [^\]]* INFO\]: (?P<message>.*)$")
# KFP's and Feast's own chatter: not a phase worth showing.
NOISE = ("Looking for component", "Loading KFP component", "Got executor_input",
         "Wrote executor output", "Registry cache expired", "Registry file not found")


class RunObserver(Protocol):
    """What the terminal view is told about a run (all calls from the running thread)."""

    def run_started(self, steps: list[str], log_path: Path) -> None: ...
    def step_started(self, name: str) -> None: ...
    def step_phase(self, name: str, phase: str) -> None: ...
    def step_finished(self, name: str, ok: bool, outputs: dict[str, Any], seconds: float,
                      cached: bool) -> None: ...


def phase_of(line: str) -> str | None:
    """The sub-phase a raw output line announces (a component's log message or its own
    progress bar), or None for noise."""
    line = ANSI.sub("", line).rstrip()
    bar = INNER_BAR.match(line)
    if bar:
        return f"{bar['desc'].strip()} {bar['n']}/{bar['total']}"
    info = EXECUTOR_INFO.search(line)
    if info and not info["message"].startswith(NOISE):
        return info["message"].strip()
    return None


class LineRouter(io.TextIOBase):
    """A text stream that writes everything to the log and tells the observer each phase."""

    def __init__(self, log: TextIO, observer: RunObserver):
        self.log, self.observer = log, observer
        self.current: str | None = None
        self.cache_hits = 0
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(ANSI.sub("", text))
        self._partial += text
        *lines, self._partial = re.split(r"[\r\n]", self._partial)
        for line in lines:
            phase = phase_of(line) if self.current else None
            if phase:
                self.observer.step_phase(self.current, phase)
        return len(text)

    def flush(self) -> None:
        self.log.flush()


def display_names(pipeline: Any) -> dict[str, str]:
    """Task name → the display name the pipeline gave it, in the order the tasks run (each
    after the tasks it depends on; the spec's task map has no order)."""
    tasks = dict(pipeline.pipeline_spec.root.dag.tasks)
    ordered: list[str] = []
    while len(ordered) < len(tasks):
        ready = sorted(name for name, task in tasks.items() if name not in ordered
                       and set(task.dependent_tasks) <= set(ordered))
        if not ready:  # a cycle cannot compile; keep whatever is left, by name
            ready = sorted(set(tasks) - set(ordered))
        ordered.extend(ready)
    return {name: (tasks[name].task_info.name or name) for name in ordered}


@contextlib.contextmanager
def observed_tasks(router: LineRouter, names: dict[str, str]) -> Iterator[None]:
    """Report each task's start and end to the router's observer. KFP 2.17's local runner has no
    task callbacks, so for the duration of one run this wraps the function every local
    orchestrator calls per task (kfp.local.orchestrator.task_executor.execute_single_task)."""
    from kfp.local import status
    from kfp.local.orchestrator import task_executor

    original = task_executor.execute_single_task

    def execute(task_name: str, *args: Any, **kwargs: Any):
        name = names.get(task_name, task_name)
        router.current = name
        router.observer.step_started(name)
        before = router.cache_hits
        started = time.perf_counter()
        outputs, ok = {}, False
        try:
            outputs, task_status = original(task_name, *args, **kwargs)
            ok = task_status == status.Status.SUCCESS
            return outputs, task_status
        finally:  # also on an exception or Ctrl-C: the bar stops, the step says it failed
            router.current = None
            router.observer.step_finished(name, ok, outputs or {}, time.perf_counter() - started,
                                          router.cache_hits > before)

    task_executor.execute_single_task = execute
    try:
        yield
    finally:
        task_executor.execute_single_task = original


class _CacheHitCounter(logging.Handler):
    """KFP logs "Task X cache hit" on the root logger: count them (the step was not run)."""

    def __init__(self, router: LineRouter):
        super().__init__(logging.INFO)
        self.router = router

    def emit(self, record: logging.LogRecord) -> None:
        if "cache hit" in record.getMessage():
            self.router.cache_hits += 1


@contextlib.contextmanager
def captured(log_path: Path, observer: RunObserver, steps: list[str]) -> Iterator[LineRouter]:
    """Send stdout, stderr, warnings and the root logger to `log_path` for the block; the
    observer hears the steps. The terminal streams stay with the observer, which keeps them."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        router = LineRouter(log, observer)
        observer.run_started(steps, log_path)
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        file_handler = logging.StreamHandler(router)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                    "%(message)s"))
        counter = _CacheHitCounter(router)
        root.handlers = [file_handler, counter]
        root.setLevel(logging.INFO)
        try:
            with (contextlib.redirect_stdout(router), contextlib.redirect_stderr(router),
                  warnings.catch_warnings()):
                warnings.showwarning = _to(router)
                yield router
        finally:
            root.handlers, root.level = handlers, level
            router.flush()


def _to(stream: TextIO):
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))
    return show
