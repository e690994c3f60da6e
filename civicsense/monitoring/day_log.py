"""Day-partitioned JSON-lines logs, the storage under the inference and the feedback logs: write
records under `date=YYYY-MM-DD/` partitions, locally or on GCS, and read them back line by line,
an invalid line skipped and counted by reason, never fatal.

    <root>/date=YYYY-MM-DD/<writer>.<NNNN>.jsonl        root = a directory, or gs://bucket/prefix
    gs://bucket/prefix/date=YYYY-MM-DD/<writer>-<uuid>.jsonl

Locally a writer appends to numbered files of its own per process and day, the next one past
the size cap, and deletes partitions past the retention; on GCS each write is one or more new
objects under the same cap (objects cannot be appended to): civicsense.monitoring.log_rotation.
Readers take every `*.jsonl` of the partitions in their window, whatever wrote it. What a
record holds and how a line is validated is each log's own.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from civicsense.data.readers import Line, read_lines
from civicsense.monitoring.log_rotation import (
    PARTITION,
    append_rotating,
    max_file_bytes,
    prune_partitions,
    size_chunks,
)
from civicsense.settings import Settings
from civicsense.storage import gcs_client, is_gcs, split_gcs_uri

MAX_RECORD_BYTES = 1 << 20  # a record holds one text of at most a few KB


def day_partition(stamp: str) -> str:
    """The partition of a record stamped `stamp` (an ISO time): `date=YYYY-MM-DD` of its UTC
    day, the partition readers look in for that time (a stamp that is not an ISO time keeps
    its first ten characters)."""
    try:
        when = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return f"{PARTITION}{str(stamp)[:10]}"
    day = when.astimezone(UTC).date() if when.tzinfo else when.date()
    return f"{PARTITION}{day.isoformat()}"


def as_utc(moment: datetime | None) -> datetime | None:
    """An aware time as it is; a naive one read as UTC (None stays None: an open bound)."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------- writing


def write_partitioned(records: Iterable[dict], root: str, settings: Settings,
                      writer: str | None = None) -> int:
    """Write records (each with an ISO `time`) as JSON lines under their day partitions;
    returns how many. All records are taken (and so validated, when `records` validates as it
    goes) before anything is written. Locally appends to the writer's current file of each
    day, rotating past the size cap, and applies the retention when it starts a file; on GCS
    writes new objects per call and day, each under the cap. Raises on I/O errors."""
    by_day: dict[str, list[bytes]] = {}
    for record in records:
        by_day.setdefault(day_partition(record["time"]), []).append(
            (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    writer = writer or f"{socket.gethostname()}-{os.getpid()}"
    max_bytes = max_file_bytes(settings)
    if is_gcs(root):
        bucket_name, prefix = split_gcs_uri(root)
        bucket = gcs_client(settings).bucket(bucket_name)
        for day, lines in by_day.items():
            for chunk in filter(None, size_chunks(lines, max_bytes)):
                name = "/".join(p for p in (prefix, day, f"{writer}-{uuid.uuid4().hex}.jsonl")
                                if p)
                bucket.blob(name).upload_from_string(b"".join(chunk),
                                                     content_type="application/x-ndjson")
    else:
        started = False
        for day, lines in by_day.items():
            started |= append_rotating(root, day, writer, lines, max_bytes)
        if started:
            prune_partitions(Path(root), settings.log_retention_days, datetime.now(UTC).date())
    return sum(len(lines) for lines in by_day.values())


# ---------------------------------------------------------------- listing lines


def _file_lines(path: Path) -> Iterator[Line]:
    lines = read_lines(path, MAX_RECORD_BYTES)
    try:
        first = next(lines)  # opens the file
    except (StopIteration, FileNotFoundError):  # deleted since listed: past the retention
        return
    yield first
    yield from lines


def _folder_lines(folder: Path) -> Iterator[Line]:
    for path in sorted(folder.glob("*.jsonl")):
        yield from _file_lines(path)


def _blob_lines(blob) -> Iterator[Line]:
    from google.api_core.exceptions import NotFound

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "object.jsonl"
        try:
            blob.download_to_filename(str(copy))  # streamed to disk, read per line
        except NotFound:  # deleted since listed (the bucket's lifecycle rule)
            return
        yield from read_lines(copy, MAX_RECORD_BYTES)


def days_between(since: datetime, until: datetime) -> list[str]:
    """The partitions of every UTC day from since's to until's, both included."""
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    return [f"{PARTITION}{(first + timedelta(days=i)).isoformat()}"
            for i in range((last - first).days + 1)]


def lines_of_days(root: str, days: list[str], settings: Settings) -> Iterator[Line]:
    """Every line of the named partitions (see days_between), day by day, file by file."""
    if not is_gcs(root):
        for day in days:
            yield from _folder_lines(Path(root) / day)
        return
    bucket_name, prefix = split_gcs_uri(root)
    client = gcs_client(settings)
    for day in days:
        day_prefix = "/".join(p for p in (prefix, day) if p) + "/"
        for blob in client.list_blobs(bucket_name, prefix=day_prefix):
            if blob.name.endswith(".jsonl"):
                yield from _blob_lines(blob)


def _in_range(day: str, since: datetime | None, until: datetime | None) -> bool:
    date = day.removeprefix(PARTITION)
    return ((since is None or date >= since.astimezone(UTC).date().isoformat())
            and (until is None or date <= until.astimezone(UTC).date().isoformat()))


def lines_between(root: str, settings: Settings, since: datetime | None,
                  until: datetime | None) -> Iterator[Line]:
    """Every line of the partitions found under `root` whose day lies between since's and
    until's (either open when None), day by day, file by file. A missing root has none."""
    if not is_gcs(root):
        folder = Path(root)
        if not folder.is_dir():
            return
        for day in sorted(p for p in folder.glob(f"{PARTITION}*") if p.is_dir()):
            if _in_range(day.name, since, until):
                yield from _folder_lines(day)
        return
    bucket_name, prefix = split_gcs_uri(root)
    start = f"{prefix}/" if prefix else ""
    for blob in gcs_client(settings).list_blobs(bucket_name, prefix=start):
        day, _, name = blob.name[len(start):].partition("/")
        if day.startswith(PARTITION) and name.endswith(".jsonl") and _in_range(day, since,
                                                                                until):
            yield from _blob_lines(blob)


# ---------------------------------------------------------------- reading records


@dataclass
class DayLogWindow:
    """The valid records of a window, and what was skipped: `lines` non-blank lines read,
    `skipped` {reason: count}."""

    frame: pd.DataFrame
    lines: int
    skipped: dict[str, int]


def stamped_time(value: object, rejected: type[ValueError], not_iso: str,
                 no_zone: str) -> datetime:
    """A record's `time` as a datetime: an ISO timestamp with a time zone, else raises
    `rejected(not_iso)` or `rejected(no_zone)`."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise rejected(not_iso) from None
    if when.tzinfo is None:
        raise rejected(no_zone)
    return when


def decode_line(text: str, columns: Iterable[str], rejected: type[ValueError]) -> dict:
    """A line's JSON object, which has every one of `columns` (extras kept); else raises
    `rejected` with the reason: not_json, not_a_record or missing_fields."""
    try:
        record = json.loads(text)
    except ValueError:
        raise rejected("not_json") from None
    if not isinstance(record, dict):
        raise rejected("not_a_record")
    if any(column not in record for column in columns):
        raise rejected("missing_fields")
    return record


def read_records(lines: Iterable[Line], parse: Callable[[str], dict],
                 rejected: type[ValueError], since: datetime | None,
                 until: datetime | None) -> tuple[list[dict], int, Counter[str]]:
    """(records with since <= time < until, non-blank lines read, {reason: lines skipped}).
    `parse` turns a line into a record with an aware `time`, or raises `rejected(reason)`; a
    line that could not be read (invalid_utf8, line_too_long) is skipped for that reason."""
    rows, skipped, read = [], Counter(), 0
    for line in lines:
        if line.text is not None and not line.text.strip():
            continue
        read += 1
        try:
            if line.text is None:
                raise rejected(line.problem)
            record = parse(line.text)
        except rejected as reason:
            skipped[str(reason)] += 1
            continue
        if (since is None or since <= record["time"]) and (until is None
                                                           or record["time"] < until):
            rows.append(record)
    return rows, read, skipped


def records_frame(rows: list[dict], columns: Iterable[str]) -> pd.DataFrame:
    """Records as a DataFrame with `columns`, `time` a UTC timestamp, oldest first."""
    frame = pd.DataFrame(rows, columns=list(columns))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)
