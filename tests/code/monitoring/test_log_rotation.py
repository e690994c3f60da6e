"""Rotation and retention of the payload and feedback logs: files cut by size and by UTC day,
locally and on GCS (the emulator), with threads and processes writing at once; every record of
a window read back exactly once across the rotated files; expired day partitions deleted."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from civicsense.features.featurizer import DESCRIPTOR_NAMES, describe
from civicsense.monitoring.day_log import lines_of_days
from civicsense.monitoring.feedback_log import (
    make_feedback,
    read_feedback,
    read_feedback_window,
    write_feedback,
)
from civicsense.monitoring.inference_log import (
    InferenceLogger,
    make_records,
    read_log,
    read_window,
    write_records,
)
from civicsense.monitoring.log_rotation import (
    MEGABYTE,
    expired_partitions,
    max_file_bytes,
    size_chunks,
)
from civicsense.settings import PROJECT_ROOT, Settings
from civicsense.storage import gcs_client, split_gcs_uri

CAP_MB = 0.01  # ≈ 10 KB: a few dozen payload records per file
MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FILE = re.compile(r"(?P<writer>.+)\.(?P<number>\d{4})\.jsonl")
PROBS = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]]


def _settings(tmp_path: Path, **changes) -> Settings:
    return Settings(home=tmp_path / "home", log_max_megabytes=CAP_MB, **changes)


def _batches(n_batches: int, size: int, start: datetime, step: timedelta) -> list[list[dict]]:
    """Payload-log batches of distinct texts, batch i stamped start + i * step."""
    texts = [f"post {i:04d} on the pension reform, take {i % 7}" for i in range(n_batches * size)]
    descriptors = describe(texts).to_numpy()
    probabilities = np.array([PROBS[i % 3] for i in range(len(texts))])
    labels = [("negative", "neutral", "positive")[int(row.argmax())] for row in probabilities]
    return [make_records(texts[i * size:(i + 1) * size], labels[i * size:(i + 1) * size],
                         probabilities[i * size:(i + 1) * size], "3+run",
                         when=start + i * step, descriptors=descriptors[i * size:(i + 1) * size])
            for i in range(n_batches)]


def _local_files(root: Path) -> dict[str, list[Path]]:
    return {day.name: sorted(day.glob("*.jsonl")) for day in sorted(root.glob("date=*"))}


def _gcs_objects(root: str, settings: Settings) -> dict[str, list[int]]:
    """Day partition → the sizes of its objects."""
    bucket, prefix = split_gcs_uri(root)
    found: dict[str, list[int]] = {}
    for blob in gcs_client(settings).list_blobs(bucket, prefix=f"{prefix}/"):
        found.setdefault(blob.name.split("/")[-2], []).append(blob.size)
    return found


def _assert_numbered_and_capped(files: list[Path], cap: int) -> None:
    """Each writer's files of a day are numbered 0000, 0001, … with no gap, each under the cap."""
    numbers: dict[tuple[str, str], list[int]] = {}
    for path in files:
        match = FILE.fullmatch(path.name)
        assert match, path.name
        numbers.setdefault((path.parent.name, match["writer"]), []).append(int(match["number"]))
        assert path.stat().st_size <= cap, (path.name, path.stat().st_size)
    for writer, found in numbers.items():
        assert sorted(found) == list(range(len(found))), writer


def test_size_chunks_never_split_a_line_and_fill_what_is_left():
    lines = [b"a" * 4 + b"\n", b"b" * 9 + b"\n", b"c" * 25 + b"\n", b"d\n"]
    assert size_chunks(lines, 20) == [[lines[0], lines[1]], [lines[2]], [lines[3]]]
    assert size_chunks(lines[:1], 20, used=18) == [[], lines[:1]]  # the current file is full
    assert size_chunks(lines[:1], 20, used=10) == [lines[:1]]
    assert size_chunks([], 20) == [[]]
    assert max_file_bytes(Settings(log_max_megabytes=2)) == 2 * MEGABYTE


def test_rotated_local_files_across_midnight_hold_every_record_once(tmp_path):
    settings, root = _settings(tmp_path), tmp_path / "log"
    # 60 batches of 5, 20 s apart from ten minutes before midnight; written two batches per
    # call, so one call holds records of both days.
    batches = _batches(60, 5, MIDNIGHT - timedelta(minutes=10), timedelta(seconds=20))
    for first in range(0, len(batches), 2):
        assert write_records(batches[first] + batches[first + 1], str(root), settings) == 10
    files = _local_files(root)
    yesterday, today = f"date={MIDNIGHT - timedelta(days=1):%Y-%m-%d}", f"date={MIDNIGHT:%Y-%m-%d}"
    assert list(files) == [yesterday, today]
    assert all(len(day_files) >= 3 for day_files in files.values())  # rotated by size
    _assert_numbered_and_capped(files[yesterday] + files[today], max_file_bytes(settings))
    written = [record["text"] for batch in batches for record in batch]
    window = read_window(str(root), settings, since=MIDNIGHT - timedelta(minutes=10),
                         until=MIDNIGHT + timedelta(minutes=10))
    assert window.skipped == {} and window.lines == len(written)
    assert window.frame["text"].tolist() == written  # all, once, oldest first
    # A window across midnight takes exactly the records stamped inside it, from both days.
    since, until = MIDNIGHT - timedelta(minutes=2), MIDNIGHT + timedelta(minutes=1)
    inside = [record["text"] for batch in batches for record in batch
              if since <= datetime.fromisoformat(record["time"]) < until]
    assert read_log(str(root), settings, since, until)["text"].tolist() == inside
    assert len(inside) == 5 * 9  # six batches before midnight, three after


def test_the_background_writer_rotates_and_loses_nothing(tmp_path):
    settings, root = _settings(tmp_path), tmp_path / "log"
    logger = InferenceLogger(str(root), settings)
    batches = _batches(40, 5, MIDNIGHT, timedelta(0))
    for batch in batches:
        logger.log([r["text"] for r in batch], [r["label"] for r in batch],
                   [[r["p_negative"], r["p_neutral"], r["p_positive"]] for r in batch], "3+run",
                   descriptors=[[0.0] * len(DESCRIPTOR_NAMES) for _ in batch])
    assert logger.flush(120)
    assert (logger.stats.logged, logger.stats.failed, logger.stats.dropped) == (200, 0, 0)
    files = [path for day_files in _local_files(root).values() for path in day_files]
    assert len(files) >= 3
    _assert_numbered_and_capped(files, max_file_bytes(settings))
    frame = read_log(str(root), settings)
    assert Counter(frame["text"]) == Counter(r["text"] for batch in batches for r in batch)


def test_gcs_objects_are_capped_and_read_back_across_midnight(gcs, tmp_path):
    settings, root = _settings(tmp_path), f"{gcs}/inference-log"
    batches = _batches(60, 5, MIDNIGHT - timedelta(minutes=10), timedelta(seconds=20))
    everything = [record for batch in batches for record in batch]
    assert write_records(everything[:150], root, settings) == 150  # one call, several objects
    assert write_records(everything[150:], root, settings) == 150
    objects = _gcs_objects(root, settings)
    assert len(objects) == 2 and all(len(sizes) >= 3 for sizes in objects.values())
    assert max(size for sizes in objects.values() for size in sizes) <= max_file_bytes(settings)
    window = read_window(root, settings, since=MIDNIGHT - timedelta(minutes=10),
                         until=MIDNIGHT + timedelta(minutes=10))
    assert window.skipped == {} and window.frame["time"].is_monotonic_increasing
    # Objects are listed by name, not in writing order: a batch cut in two may read back in
    # either order, so the records are compared as a multiset.
    assert Counter(window.frame["text"]) == Counter(record["text"] for record in everything)


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_the_feedback_log_rotates_and_reads_back_whole(where, tmp_path, request):
    settings = Settings(home=tmp_path / "home", log_max_megabytes=0.002)  # ≈ 2 KB
    root = (f"{request.getfixturevalue('gcs')}/feedback-log" if where == "gcs"
            else str(tmp_path / "feedback"))
    start = MIDNIGHT - timedelta(minutes=3)
    records = [make_feedback(f"disputed post {i}", "negative", "positive", "3",
                             f"client-{i % 4:04d}", when=start + timedelta(seconds=5 * i))
               for i in range(72)]
    for i in range(0, len(records), 3):
        write_feedback(records[i:i + 3], root, settings)
    if where == "local":
        files = _local_files(Path(root))
        assert len(files) == 2 and all(len(found) >= 2 for found in files.values())
        _assert_numbered_and_capped([p for found in files.values() for p in found],
                                    max_file_bytes(settings))
    window = read_feedback_window(root, settings)
    assert window.skipped == {}
    assert window.frame["text"].tolist() == [record["text"] for record in records]
    since = MIDNIGHT - timedelta(seconds=30)
    assert read_feedback(root, settings, since=since)["text"].tolist() == [
        record["text"] for record in records if datetime.fromisoformat(record["time"]) >= since]


def test_threads_of_one_process_never_interleave_across_rotations(tmp_path):
    settings, root = _settings(tmp_path), tmp_path / "log"
    batches = _batches(100, 4, MIDNIGHT, timedelta(0))
    errors: list[BaseException] = []

    def write(share: list[list[dict]]) -> None:
        try:
            for batch in share:
                write_records(batch, str(root), settings)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(batches[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    files = _local_files(root)[f"date={MIDNIGHT:%Y-%m-%d}"]
    assert len(files) >= 5
    _assert_numbered_and_capped(files, max_file_bytes(settings))
    window = read_window(str(root), settings, since=MIDNIGHT, until=MIDNIGHT + timedelta(1))
    assert window.skipped == {}  # no torn or interleaved line
    assert Counter(window.frame["text"]) == Counter(r["text"] for b in batches for r in b)


WRITER_PROCESS = """
import sys, time
from datetime import datetime, timedelta
from pathlib import Path
from civicsense.monitoring.feedback_log import make_feedback, write_feedback
from civicsense.settings import Settings

root, start_file, name, when = sys.argv[1:5]
settings = Settings(home=Path(root).parent / "home", log_max_megabytes=0.002)
while not Path(start_file).exists():  # all start writing together
    time.sleep(0.005)
for i in range(40):
    record = make_feedback(f"{name} post {i}", "neutral", "positive", "3", f"client-{name}",
                           when=datetime.fromisoformat(when) + timedelta(seconds=i))
    write_feedback([record], root, settings)
"""


def test_several_writer_processes_each_rotate_their_own_files(tmp_path):
    root, start_file = tmp_path / "feedback", tmp_path / "go"
    names = ["alpha", "bravo", "charlie"]
    processes = [subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, str(root),
                                   str(start_file), name, (MIDNIGHT - timedelta(seconds=20))
                                   .isoformat()], cwd=PROJECT_ROOT) for name in names]
    start_file.touch()
    assert [process.wait(timeout=300) for process in processes] == [0, 0, 0]
    files = _local_files(root)
    assert len(files) == 2  # twenty seconds of each writer on either side of midnight
    every_file = [path for found in files.values() for path in found]
    writers = {FILE.fullmatch(path.name)["writer"] for path in every_file}
    assert len(writers) == 3  # one set of files per process
    assert len(every_file) >= 3 * 2 * 2  # each writer rotated on each day
    _assert_numbered_and_capped(every_file, max_file_bytes(Settings(log_max_megabytes=0.002)))
    window = read_feedback_window(str(root), Settings(home=tmp_path / "home"))
    assert window.skipped == {}
    assert Counter(window.frame["text"]) == Counter(f"{name} post {i}" for name in names
                                                    for i in range(40))


def test_retention_deletes_expired_day_partitions_when_a_file_starts(tmp_path):
    root = tmp_path / "feedback"
    now = datetime.now(UTC)
    keep_all = Settings(home=tmp_path / "home", log_retention_days=0)
    for age in (45, 32, 29, 1):
        write_feedback([make_feedback(f"{age} days old", "negative", "positive", "3",
                                      "client-0001", when=now - timedelta(days=age))],
                       str(root), keep_all)
    assert len(_local_files(root)) == 4  # 0: nothing is ever deleted
    (root / f"date={now - timedelta(days=45):%Y-%m-%d}" / "notes.txt").write_text("mine")
    write_feedback([make_feedback("today", "negative", "positive", "3", "client-0001")],
                   str(root), Settings(home=tmp_path / "home", log_retention_days=30))
    assert sorted(_local_files(root)) == sorted(
        f"date={now - timedelta(days=age):%Y-%m-%d}" for age in (45, 29, 1, 0))
    assert _local_files(root)[f"date={now - timedelta(days=45):%Y-%m-%d}"] == []  # only the log's
    assert sorted(read_feedback(str(root), keep_all)["text"]) == ["1 days old", "29 days old",
                                                                 "today"]


def test_which_partitions_expire_exactly(tmp_path):
    today = date(2026, 3, 1)
    for day in ("2026-01-28", "2026-01-29", "2026-01-30", "2026-02-28", "2026-03-01",
                "junk", "2026-02-30"):
        (tmp_path / f"date={day}").mkdir()
    (tmp_path / "other").mkdir()
    # 2026-01-30 is 30 days before today: kept; 31 days and more before: expired.
    assert [p.name for p in expired_partitions(tmp_path, 30, today)] == [
        "date=2026-01-28", "date=2026-01-29"]
    assert expired_partitions(tmp_path, 0, today) == []
    assert expired_partitions(tmp_path / "missing", 30, today) == []


def test_a_file_deleted_after_listing_is_skipped_not_fatal(tmp_path):
    settings = Settings(home=tmp_path / "home")
    root = tmp_path / "log"
    batches = _batches(2, 3, MIDNIGHT, timedelta(0))
    write_records(batches[0], str(root), settings, writer="a")
    write_records(batches[1], str(root), settings, writer="b")
    lines = lines_of_days(str(root), [f"date={MIDNIGHT:%Y-%m-%d}"], settings)
    assert next(lines).text is not None  # a's file open, b's listed
    next(iter(_local_files(root).values()))[1].unlink()  # b's, by the retention of another writer
    assert len(list(lines)) == 2  # the rest of a's
