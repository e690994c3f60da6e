"""The inference log: one record per prediction, one schema, one writer, one reader.

A record is flat: when, which model version, the text, the predicted label, the three class
probabilities and the featurizer's cheap descriptors (civicsense.featurize.describe, the same
function training uses). Records are JSON lines partitioned by day
(civicsense.monitoring.day_log stores them):

    <root>/date=YYYY-MM-DD/<writer>.<NNNN>.jsonl        root = a directory, or gs://bucket/prefix

Locally the model server appends to files of its own per process and day, the next one past
`log_max_megabytes`, and deletes days past `log_retention_days`; the cluster's log sink writes
one object (or more, under the same cap) per batch, since GCS objects cannot be appended to
(civicsense.monitoring.log_rotation). `read_log` reads every file of the window's days.

Logging never slows or fails a prediction: `InferenceLogger.log` only puts the batch on a
bounded queue; a background thread builds the records and writes them (it computes descriptors
only when the caller has none: the server passes the ones its prediction computed). A full
queue, a full disk or an unreachable bucket is logged and counted (`InferenceLogger.stats`),
never raised to the caller.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from civicsense import PROBABILITY_COLUMNS
from civicsense.features.featurizer import DESCRIPTOR_NAMES
from civicsense.monitoring.day_log import (
    DayLogWindow,
    as_utc,
    days_between,
    decode_line,
    lines_of_days,
    read_records,
    records_frame,
    stamped_time,
    write_partitioned,
)
from civicsense.settings import Settings

log = logging.getLogger(__name__)

BASE_COLUMNS: tuple[str, ...] = ("time", "request_id", "model_version", "source", "text", "label",
                                 *PROBABILITY_COLUMNS)
# The record schema, in order. `source` says which writer made it: "server" or "sink".
RECORD_COLUMNS: tuple[str, ...] = (*BASE_COLUMNS, *DESCRIPTOR_NAMES)


def make_records(texts: Sequence[str], labels: Sequence[str], probabilities: Any,
                 model_version: str, request_id: str | None = None, source: str = "server",
                 when: datetime | None = None, descriptors: Any = None) -> list[dict]:
    """Prediction batch → records (descriptors included), all stamped with the same time.
    `descriptors` (rows in DESCRIPTOR_NAMES order) are computed from the texts when absent."""
    from civicsense.features.featurizer import describe

    when = when or datetime.now(UTC)
    stamp = when.astimezone(UTC).isoformat(timespec="microseconds")
    request_id = request_id or str(uuid.uuid4())
    if descriptors is None:
        descriptors = describe(list(texts)).to_numpy()
    records = []
    for text, label, row, extra in zip(texts, labels, probabilities, descriptors, strict=True):
        record = {"time": stamp, "request_id": request_id, "model_version": str(model_version),
                  "source": source, "text": str(text), "label": str(label)}
        record |= {column: float(p) for column, p in zip(PROBABILITY_COLUMNS, row, strict=True)}
        record |= {name: float(v) for name, v in zip(DESCRIPTOR_NAMES, extra, strict=True)}
        records.append(record)
    return records


def validate_record(record: dict) -> dict:
    """A record with exactly the schema's fields (missing ones are an error, extras dropped)."""
    missing = [c for c in RECORD_COLUMNS if c not in record]
    if missing:
        raise ValueError(f"inference record lacks {missing}")
    return {c: record[c] for c in RECORD_COLUMNS}


# ---------------------------------------------------------------- writing


def write_records(records: Sequence[dict], root: str, settings: Settings,
                  writer: str | None = None) -> int:
    """Write records under their day partitions; returns how many. Raises on I/O errors (the
    non-raising wrapper is InferenceLogger). Locally appends to `<writer>.jsonl`; on GCS writes
    a new object per call and day."""
    return write_partitioned((validate_record(record) for record in records), root, settings,
                             writer)


@dataclass
class LogStats:
    logged: int = 0  # records written
    failed: int = 0  # records lost to write errors (disk full, bucket unreachable, bad data)
    dropped: int = 0  # records dropped because the queue was full (writer too slow)


class InferenceLogger:
    """Non-blocking, never-raising writer: `log()` enqueues, a daemon thread writes."""

    def __init__(self, root: str, settings: Settings, max_queue: int = 10_000,
                 source: str = "server"):
        self.root, self.settings, self.source = root, settings, source
        self.stats = LogStats()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="inference-log", daemon=True)
        self._thread.start()
        atexit.register(self.flush, 5.0)

    def log(self, texts: Sequence[str], labels: Sequence[str], probabilities: Any,
            model_version: str, request_id: str | None = None, descriptors: Any = None) -> None:
        """Queue a prediction batch. Never raises, never blocks."""
        try:
            item = (list(texts), list(labels), [list(map(float, row)) for row in probabilities],
                    str(model_version), request_id, datetime.now(UTC), descriptors)
            self._queue.put_nowait(item)
        except queue.Full:
            self._count("dropped", len(texts))
            log.warning("inference log queue full: dropped %d records", len(texts))
        except Exception:  # noqa: BLE001 - logging must never fail a prediction
            self._count("failed", _safe_len(texts))
            log.exception("inference log: could not queue a batch")

    def _count(self, field: str, n: int) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)

    def _work(self) -> None:
        while True:
            texts, labels, probabilities, version, request_id, when, descriptors = (
                self._queue.get())
            try:
                records = make_records(texts, labels, probabilities, version, request_id,
                                       self.source, when, descriptors)
                self._count("logged", write_records(records, self.root, self.settings))
            except Exception as error:  # noqa: BLE001 - counted and logged, never raised
                self._count("failed", len(texts))
                log.error("inference log: %d records lost (%s: %s)", len(texts),
                          type(error).__name__, error)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (up to timeout seconds) until every queued batch is written or counted."""
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while self._queue.unfinished_tasks:
            if datetime.now(UTC) > deadline:
                return False
            threading.Event().wait(0.01)
        return True


def _safe_len(items: Any) -> int:
    try:
        return len(items)
    except Exception:  # noqa: BLE001
        return 1


_LOGGER: InferenceLogger | None = None
_LOGGER_LOCK = threading.Lock()


def get_logger(settings: Settings) -> InferenceLogger:
    """The process's logger (one writer thread per process, created on first use)."""
    global _LOGGER
    with _LOGGER_LOCK:
        if _LOGGER is None or _LOGGER.settings is not settings:
            _LOGGER = InferenceLogger(settings.inference_log, settings)
        return _LOGGER


def log_prediction(settings: Settings, texts: Sequence[str], labels: Sequence[str],
                   probabilities: Any, model_version: str, request_id: str | None = None,
                   descriptors: Any = None) -> None:
    """What the model server calls after each prediction. Never raises."""
    try:
        if not settings.log_predictions:
            return
        get_logger(settings).log(texts, labels, probabilities, model_version, request_id,
                                 descriptors)
    except Exception:  # noqa: BLE001 - logging must never fail a prediction
        log.exception("inference log unavailable")


# ---------------------------------------------------------------- reading


class BadLine(ValueError):
    """A log line that is not a valid record; its message is the reason counted."""


def _number(record: dict, column: str, reason: str, low: float = -math.inf,
            high: float = math.inf) -> float:
    value = record[column]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadLine(reason)
    try:
        number = float(value)
    except ValueError:
        raise BadLine(reason) from None
    if not (math.isfinite(number) and low <= number <= high):
        raise BadLine(reason)
    return number


def parse_record(text: str) -> dict:
    """One log line → a record with typed values (time as an aware UTC datetime, floats for
    probabilities and descriptors). Raises BadLine(reason) for anything else."""
    record = decode_line(text, RECORD_COLUMNS, BadLine)
    record = {c: record[c] for c in RECORD_COLUMNS}
    record["time"] = stamped_time(record["time"], BadLine, "bad_time", "bad_time").astimezone(UTC)
    if not isinstance(record["text"], str) or not isinstance(record["label"], str):
        raise BadLine("bad_text_or_label")
    for column in ("request_id", "model_version", "source"):
        record[column] = str(record[column])
    for column in PROBABILITY_COLUMNS:
        record[column] = _number(record, column, "bad_probability", 0.0, 1.0)
    for column in DESCRIPTOR_NAMES:
        record[column] = _number(record, column, "bad_descriptor")
    return record


class LogWindow(DayLogWindow):
    """The valid records of a window, and what was skipped: `lines` non-blank lines read,
    `skipped` {reason: count} (invalid_utf8, line_too_long, not_json, bad_time, …)."""

    @property
    def valid_share(self) -> float:
        return 1.0 if not self.lines else 1 - sum(self.skipped.values()) / self.lines


def read_window(root: str, settings: Settings, since: datetime | None = None,
                until: datetime | None = None) -> LogWindow:
    """Records with since <= time < until (default: the last monitor window), decoded and
    validated line by line: an invalid line is skipped and counted by reason, never fatal."""
    until = until or datetime.now(UTC) + timedelta(seconds=1)
    since = since or until - timedelta(hours=settings.monitor_window_hours)
    since, until = as_utc(since), as_utc(until)
    rows, read, skipped = read_records(lines_of_days(root, days_between(since, until), settings),
                                       parse_record, BadLine, since, until)
    if skipped:
        log.warning("inference log: skipped %d invalid lines %s", sum(skipped.values()),
                    dict(skipped))
    return LogWindow(records_frame(rows, RECORD_COLUMNS), read, dict(sorted(skipped.items())))


def read_log(root: str, settings: Settings, since: datetime | None = None,
             until: datetime | None = None) -> pd.DataFrame:
    """The valid records of a window as a DataFrame with RECORD_COLUMNS (`time` a UTC
    timestamp); invalid lines are skipped (read_window counts them)."""
    return read_window(root, settings, since, until).frame
