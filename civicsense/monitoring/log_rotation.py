"""Rotation and retention of the day-partitioned logs' files: a size cap per file or object, and
local day partitions older than the retention deleted by the writers.

    <root>/date=YYYY-MM-DD/<writer>.<NNNN>.jsonl      writer = <host>-<pid>, NNNN from 0000

A file holds the records of one UTC day (each record goes to its own day's partition). A local
writer appends to its current numbered file of that day and starts the next number when the
next lines would take the file past `log_max_megabytes`; on GCS, where objects cannot be
appended to, the lines of one write are cut into objects under the same cap. Either way a line
is never split, and a line longer than the cap goes alone into its own file.

Several processes write one log: each appends only to files named after itself (host and
process id), so no two processes ever append to one file, and within a process one lock covers
choosing the file and appending to it, so threads never interleave lines across a rotation.

Retention (`log_retention_days`, 0 = keep all): whenever a local writer starts a file (its first
of a day, or a rotation), it deletes the partitions dated more than that many days before today
(UTC). On GCS the bucket's lifecycle rule deletes old objects instead (docs/monitoring.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

from civicsense.settings import Settings

log = logging.getLogger(__name__)

PARTITION = "date="
MEGABYTE = 1 << 20
_LOCK = threading.Lock()
# (root, writer) → (day partition, number of the file appended to now): the files a process
# names after itself change only through it, so what it last did is what is on disk.
_CURRENT: dict[tuple[str, str], tuple[str, int]] = {}


def max_file_bytes(settings: Settings) -> int:
    """The size cap of one log file or object, in bytes (at least 1)."""
    return max(1, int(settings.log_max_megabytes * MEGABYTE))


def file_name(writer: str, number: int) -> str:
    """`<writer>.<NNNN>.jsonl`, the writer's `number`-th file of a day."""
    return f"{writer}.{number:04d}.jsonl"


def last_number(folder: Path, writer: str) -> int:
    """The highest number among the writer's files in `folder` (0 when it has none yet)."""
    pattern = re.compile(rf"{re.escape(writer)}\.(\d+)\.jsonl")
    try:
        names = os.listdir(folder)
    except OSError:  # no partition yet (or no root): writing will say what is wrong
        return 0
    return max((int(m.group(1)) for m in map(pattern.fullmatch, names) if m), default=0)


def size_chunks(lines: Iterable[bytes], max_bytes: int, used: int = 0) -> list[list[bytes]]:
    """Lines, in order, cut into chunks of at most `max_bytes` together; the first chunk fills
    what is left after `used` bytes (empty when the first line does not fit there), and a line
    longer than `max_bytes` makes a chunk of its own."""
    chunks: list[list[bytes]] = [[]]
    size = used
    for line in lines:
        if size and size + len(line) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
    return chunks


def append_rotating(root: str, day: str, writer: str, lines: list[bytes],
                    max_bytes: int) -> bool:
    """Append lines (each ending in a newline) to the writer's current file of `day` under
    root, starting the next file whenever they would take it past `max_bytes`. True when a
    file was started (a rotation, or this process's first file of that day). Raises OSError."""
    folder, key = Path(root) / day, (os.path.abspath(root), writer)
    with _LOCK:
        known_day, number = _CURRENT.get(key, ("", -1))
        started = known_day != day
        if started:
            number = last_number(folder, writer)
        try:
            used = (folder / file_name(writer, number)).stat().st_size
        except FileNotFoundError:
            used = 0
        for index, chunk in enumerate(size_chunks(lines, max_bytes, used)):
            if index:  # past every file of ours there, whatever this process remembered
                number, started = max(number, last_number(folder, writer)) + 1, True
            if chunk:
                folder.mkdir(parents=True, exist_ok=True)
                # One write call per file, under the lock: threads' lines never interleave.
                with open(folder / file_name(writer, number), "ab") as handle:
                    handle.write(b"".join(chunk))
        _CURRENT[key] = (day, number)
        return started


def partition_day(name: str) -> date | None:
    """The day of a `date=YYYY-MM-DD` partition name; None for any other name."""
    if not name.startswith(PARTITION):
        return None
    try:
        return date.fromisoformat(name.removeprefix(PARTITION))
    except ValueError:
        return None


def expired_partitions(root: Path, retention_days: int, today: date) -> list[Path]:
    """The day partitions under root dated more than `retention_days` before `today`, oldest
    first (none when retention_days is 0: keep all)."""
    if retention_days <= 0 or not root.is_dir():
        return []
    oldest_kept = today - timedelta(days=retention_days)
    found = [(day, path) for path in root.iterdir()
             if (day := partition_day(path.name)) is not None and day < oldest_kept]
    return [path for _, path in sorted(found)]


def prune_partitions(root: Path, retention_days: int, today: date) -> list[str]:
    """Delete the log files of every expired partition (expired_partitions) and the partition
    when that empties it; returns the partitions' names. Never raises: another writer may be
    deleting the same files, and a failure is logged, never the write's failure."""
    removed = []
    for partition in expired_partitions(root, retention_days, today):
        try:
            for path in partition.glob("*.jsonl"):
                path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("log retention: could not delete %s (%s: %s)", partition,
                        type(error).__name__, error)
            continue
        # Gone already, or it holds files that are not the log's: those are left as they are.
        with contextlib.suppress(OSError):
            partition.rmdir()
        removed.append(partition.name)
    if removed:
        log.info("log retention: deleted %s under %s (older than %d days)", ", ".join(removed),
                 root, retention_days)
    return removed
