"""The feedback log: one record per "Wrong?" a reader sent on a badge, one schema, one writer,
one reader.

A record says when, which post (`post_key`, the id both logs and the labeling queue key posts
by, since the payload log has no post ids), its text, the model version and label that made
the badge, the label the reader chose, and the reader's random client id. Records are JSON
lines partitioned by day, like the payload log (civicsense.monitoring.inference_log):

    <root>/date=YYYY-MM-DD/<writer>.jsonl        root = a directory, or gs://bucket/prefix

Locally the HTTP process appends to one file per process; on GCS each write is a new object
(objects cannot be appended to). Records are validated on the way in (a bad one raises) and
on the way out (a bad line is skipped and counted by reason, never fatal).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from civicsense import LABELS
from civicsense.data.readers import Line, read_lines
from civicsense.settings import Settings
from civicsense.storage import gcs_client, is_gcs, split_gcs_uri

log = logging.getLogger(__name__)

FEEDBACK_COLUMNS: tuple[str, ...] = ("time", "post_key", "text", "model_version",
                                     "predicted_label", "label", "client_id")
PARTITION = "date="
MAX_RECORD_BYTES = 1 << 20  # a record holds one text of at most a few KB
MAX_VERSION_CHARS = 200
# A client id is the extension's random id: no personal data fits in this alphabet and size.
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
POST_KEY = re.compile(r"t[0-9a-f]{20}")


class BadFeedback(ValueError):
    """A feedback record that breaks the schema; its message says which field and why."""


def post_key(text: str) -> str:
    """The id of a served post: its text's hash (the same text is the same post everywhere)."""
    return "t" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _check(record: dict, max_text_chars: int) -> None:
    text = record["text"]
    if not isinstance(text, str) or not text.strip():
        raise BadFeedback("text must be a non-empty string")
    if len(text) > max_text_chars:
        raise BadFeedback(f"text is {len(text)} characters; at most {max_text_chars}")
    for column in ("label", "predicted_label"):
        if record[column] not in LABELS:
            raise BadFeedback(f"{column} must be one of {', '.join(LABELS)}")
    version = record["model_version"]
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_VERSION_CHARS:
        raise BadFeedback(f"model_version must be a string of 1 to {MAX_VERSION_CHARS} "
                          "characters")
    client = record["client_id"]
    if not isinstance(client, str) or not CLIENT_ID.fullmatch(client):
        raise BadFeedback("client_id must be 8 to 64 characters of A-Z a-z 0-9 _ -")


def make_feedback(text: str, label: str, predicted_label: str, model_version: str,
                  client_id: str, when: datetime | None = None,
                  max_text_chars: int = 2000) -> dict:
    """One validated feedback record (FEEDBACK_COLUMNS, in order). BadFeedback if any field
    breaks the schema."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    record = {"time": when.isoformat(timespec="microseconds"), "post_key": None,
              "text": text, "model_version": model_version, "predicted_label": predicted_label,
              "label": label, "client_id": client_id}
    _check(record, max_text_chars)
    record["post_key"] = post_key(text)
    return record


def validate_feedback(record: dict, max_text_chars: int = 2000) -> dict:
    """A record with exactly the schema's fields, each valid (BadFeedback else; extras dropped)."""
    missing = [c for c in FEEDBACK_COLUMNS if c not in record]
    if missing:
        raise BadFeedback(f"feedback record lacks {missing}")
    record = {c: record[c] for c in FEEDBACK_COLUMNS}
    _check(record, max_text_chars)
    if record["post_key"] != post_key(record["text"]):
        raise BadFeedback("post_key is not the hash of the text")
    try:
        when = datetime.fromisoformat(record["time"])
    except (TypeError, ValueError):
        raise BadFeedback("time is not an ISO timestamp") from None
    if when.tzinfo is None:
        raise BadFeedback("time has no time zone")
    return record


# ---------------------------------------------------------------- writing


def write_feedback(records: Sequence[dict], root: str, settings: Settings,
                   writer: str | None = None) -> int:
    """Validate every record, then write them under their day partitions; returns how many.
    Raises BadFeedback before writing anything if one is invalid, OSError/GCS errors on I/O."""
    by_day: dict[str, list[str]] = {}
    for record in records:
        record = validate_feedback(record, settings.max_text_chars)
        by_day.setdefault(f"{PARTITION}{record['time'][:10]}", []).append(
            json.dumps(record, ensure_ascii=False))
    writer = writer or f"{socket.gethostname()}-{os.getpid()}"
    if is_gcs(root):
        bucket_name, prefix = split_gcs_uri(root)
        bucket = gcs_client(settings).bucket(bucket_name)
        for day, lines in by_day.items():
            name = "/".join(p for p in (prefix, day, f"{writer}-{uuid.uuid4().hex}.jsonl") if p)
            bucket.blob(name).upload_from_string("\n".join(lines) + "\n",
                                                 content_type="application/x-ndjson")
    else:
        for day, lines in by_day.items():
            folder = Path(root) / day
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"{writer}.jsonl", "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
    return sum(len(lines) for lines in by_day.values())


# ---------------------------------------------------------------- reading


def _in_range(day: str, since: datetime | None, until: datetime | None) -> bool:
    date = day.removeprefix(PARTITION)
    return ((since is None or date >= since.astimezone(UTC).date().isoformat())
            and (until is None or date <= until.astimezone(UTC).date().isoformat()))


def _lines_local(root: str, since: datetime | None, until: datetime | None) -> Iterator[Line]:
    folder = Path(root)
    if not folder.is_dir():
        return
    for day in sorted(p for p in folder.glob(f"{PARTITION}*") if p.is_dir()):
        if _in_range(day.name, since, until):
            for path in sorted(day.glob("*.jsonl")):
                yield from read_lines(path, MAX_RECORD_BYTES)


def _lines_gcs(root: str, since: datetime | None, until: datetime | None,
               settings: Settings) -> Iterator[Line]:
    bucket_name, prefix = split_gcs_uri(root)
    start = f"{prefix}/" if prefix else ""
    for blob in gcs_client(settings).list_blobs(bucket_name, prefix=start):
        day, _, name = blob.name[len(start):].partition("/")
        if day.startswith(PARTITION) and name.endswith(".jsonl") and _in_range(day, since,
                                                                                until):
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as copy:
                blob.download_to_filename(copy.name)  # streamed to disk, read per line
                yield from read_lines(Path(copy.name), MAX_RECORD_BYTES)


def _parse(text: str, max_text_chars: int) -> dict:
    try:
        record = json.loads(text)
    except ValueError:
        raise BadFeedback("not_json") from None
    if not isinstance(record, dict):
        raise BadFeedback("not_a_record")
    if any(column not in record for column in FEEDBACK_COLUMNS):
        raise BadFeedback("missing_fields")
    try:
        record = validate_feedback(record, max_text_chars)
    except BadFeedback as error:
        reason = str(error).split(" ", 1)[0]
        raise BadFeedback(f"bad_{reason}" if reason in FEEDBACK_COLUMNS else "bad_field") from None
    record["time"] = datetime.fromisoformat(record["time"]).astimezone(UTC)
    return record


@dataclass
class FeedbackWindow:
    """The valid records of a window, and what was skipped: `lines` non-blank lines read,
    `skipped` {reason: count} (invalid_utf8, line_too_long, not_json, bad_label, …)."""

    frame: pd.DataFrame
    lines: int
    skipped: dict[str, int]


def read_feedback_window(root: str, settings: Settings, since: datetime | None = None,
                         until: datetime | None = None) -> FeedbackWindow:
    """Records with since <= time < until (either open when None: all of the log by default),
    validated line by line; an invalid line is skipped and counted by reason."""
    since, until = (t if t is None or t.tzinfo else t.replace(tzinfo=UTC)
                    for t in (since, until))
    lines = (_lines_gcs(root, since, until, settings) if is_gcs(root)
             else _lines_local(root, since, until))
    rows, skipped, read = [], Counter(), 0
    for line in lines:
        if line.text is not None and not line.text.strip():
            continue
        read += 1
        try:
            if line.text is None:
                raise BadFeedback(line.problem)
            record = _parse(line.text, settings.max_text_chars)
        except BadFeedback as reason:
            skipped[str(reason)] += 1
            continue
        if (since is None or since <= record["time"]) and (until is None
                                                           or record["time"] < until):
            rows.append(record)
    if skipped:
        log.warning("feedback log: skipped %d invalid lines %s", sum(skipped.values()),
                    dict(skipped))
    frame = pd.DataFrame(rows, columns=list(FEEDBACK_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    frame.attrs["lines"], frame.attrs["skipped"] = read, dict(sorted(skipped.items()))
    return FeedbackWindow(frame, read, frame.attrs["skipped"])


def read_feedback(root: str, settings: Settings, since: datetime | None = None,
                  until: datetime | None = None) -> pd.DataFrame:
    """The valid feedback records as a DataFrame with FEEDBACK_COLUMNS (`time` a UTC timestamp,
    oldest first); invalid lines are skipped, counted in `frame.attrs["skipped"]`."""
    return read_feedback_window(root, settings, since, until).frame
