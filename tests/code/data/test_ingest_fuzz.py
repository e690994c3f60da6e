"""Property-based fuzzing of ingest (issue 12): whatever bytes a SemEval, CSV or TweetEval file
holds, ingest either accounts for every row (read = accepted + quarantined) or stops with an
IngestError — never another exception. Bounded: 150 generated files per layout."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicsense.data.ingest import IngestError, ingest

PIECES = st.sampled_from([
    "264183816548130816", "12345678901234567890123456789", "\u00b2", "-1", "0", "positive",
    "negative", "neutral", "mixed", "\t", ",", '"', '""', "\\u2019", "\\ud83d", "&amp;", "\r",
    "\n", " ", "text", "\u00e9", "2024-05-01T10:00:00Z", "99999-01-01", "nan"])
LINE = st.lists(PIECES | st.text(max_size=8), max_size=12).map("".join)
RAW = st.lists(LINE.map(str.encode) | st.binary(max_size=24), min_size=1, max_size=15).map(
    b"\n".join)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def accounted_or_refused(path: Path, max_line_bytes: int = 64 << 10) -> None:
    try:
        result = ingest(path, progress=False, max_line_bytes=max_line_bytes)
    except IngestError:
        return
    assert result.records_read == len(result.accepted) + len(result.quarantined)
    assert result.accepted["post_id"].is_unique and result.accepted["text"].str.len().min() > 0


@FUZZ
@given(body=RAW)
def test_fuzzed_semeval_files(body):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.txt"
        path.write_bytes(b"264183816548130816\tpositive\tfirst line keeps the layout\n" + body)
        accounted_or_refused(path)


@FUZZ
@given(body=RAW, header=st.sampled_from([b"text,label", b"post_id,created_at,text,label",
                                         b"label,text,post_id"]))
def test_fuzzed_csv_files(body, header):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(header + b"\n" + body)
        accounted_or_refused(path)


@FUZZ
@given(texts=RAW, labels=RAW, mapping=RAW)
def test_fuzzed_tweeteval_folders(texts, labels, mapping):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "train_text.txt").write_bytes(texts)
        (root / "train_labels.txt").write_bytes(labels)
        (root / "mapping.txt").write_bytes(mapping)
        accounted_or_refused(root, max_line_bytes=1024)
