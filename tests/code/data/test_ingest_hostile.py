"""Ingest on hostile files (issue 12): every unconvertible value quarantines its row with a
reason, lines are capped, outputs appear whole or not at all, a missing credential is one line."""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import pytest

from civicsense.data.ingest import ingest, write_outputs
from civicsense.data.readers import read_lines
from tests_support import CIVICSENSE, write_tweeteval_sample

GOOD = "264183816548130816\tpositive\tthe reform passed, great day\n"


def accounted(result) -> bool:
    return result.records_read == len(result.accepted) + len(result.quarantined)


def reasons(result) -> dict[str, int]:
    return result.report["quarantine_reasons"]


def test_a_29_digit_id_quarantines_its_row_only(tmp_path):
    (tmp_path / "a.txt").write_text(GOOD + "12345678901234567890123456789\tnegative\tbad id\n")
    result = ingest(tmp_path / "a.txt", progress=False)
    assert reasons(result) == {"bad_post_id": 1} and len(result.accepted) == 1
    assert accounted(result)


def test_csv_bad_values_and_bad_rows_quarantine_those_rows_only(tmp_path):
    (tmp_path / "posts.csv").write_bytes(
        b"post_id,created_at,text,label\n"
        b"p1,2024-05-01T10:00:00Z,fine row,positive\n"
        + "\u00b2,,superscript two as an id,negative\n".encode()
        + b"12345678901234567890123456789,,too big for 64 bits,neutral\n"
        b"p4,,one field,too,many,positive\n"
        b"p5,99999-01-01,year out of range,neutral\n"
        b"p6,,caf\xe9 latin-1 byte,neutral\n"
        b"p7,,\"quoted, with comma\",negative\n")
    result = ingest(tmp_path / "posts.csv", progress=False)
    assert list(result.accepted["post_id"]) == ["p1", "p7"]
    assert reasons(result) == {"bad_post_id": 2, "bad_csv_row": 1, "bad_created_at": 1,
                               "invalid_utf8": 1}
    assert result.records_read == 7 and accounted(result)
    lines = dict(zip(result.quarantined["reason"], result.quarantined["line"], strict=False))
    assert lines["bad_csv_row"] == 5 and lines["invalid_utf8"] == 7


def test_mapping_line_without_a_tab_is_quarantined(tmp_path):
    folder = write_tweeteval_sample(tmp_path / "tweeteval")
    (folder / "mapping.txt").write_text("0\tnegative\n1 neutral\n2\tpositive\n")
    result = ingest(folder, progress=False)
    quarantined = result.quarantined.set_index("reason")
    assert quarantined.loc["malformed_mapping_line", "raw"] == "1 neutral"
    assert quarantined.loc["malformed_mapping_line", "source"] == "mapping.txt"
    # the post labelled with the unmapped id is quarantined too, the others pass
    assert reasons(result) == {"bad_label:id:1": 1, "malformed_mapping_line": 1}
    assert list(result.accepted["label"]) == ["negative", "positive"] and accounted(result)


def test_a_line_over_the_cap_is_quarantined_unread(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(GOOD + "1\tneutral\t" + "x" * 50_000 + "\n" + GOOD.replace("816\t", "817\t"))
    result = ingest(path, progress=False, max_line_bytes=4096)
    assert reasons(result) == {"line_too_long": 1} and len(result.accepted) == 2
    raw = result.quarantined["raw"].iloc[0]
    assert raw.startswith("1\tneutral\txxx") and raw.endswith("(50011 bytes)") and len(raw) < 300
    assert result.lines_read == 3 and accounted(result)


def test_read_lines_keeps_line_numbers_and_an_exact_cap(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"a" * 10 + b"\n" + b"b" * 11 + b"\n\r\n" + b"\xff\n" + b"c" * 30)
    lines = list(read_lines(path, max_line_bytes=10))
    assert [(ln.number, ln.problem) for ln in lines] == [
        (1, None), (2, "line_too_long"), (3, None), (4, "invalid_utf8"), (5, "line_too_long")]
    assert lines[0].text == "a" * 10 and lines[2].text == ""


def test_an_aborted_write_leaves_no_partial_output(tmp_path):
    (tmp_path / "a.txt").write_text(GOOD)
    result = ingest(tmp_path / "a.txt", progress=False)
    snapshot, blocker = tmp_path / "out" / "snapshot.parquet", tmp_path / "out" / "blocker"
    blocker.parent.mkdir()
    blocker.write_text("a file where the quarantine's folder should be")
    with pytest.raises(OSError):
        write_outputs(result, snapshot, blocker / "quarantine.parquet")
    assert sorted(p.name for p in snapshot.parent.iterdir()) == ["blocker"]  # no temp, no half
    write_outputs(result, snapshot, tmp_path / "out" / "quarantine.parquet")
    assert pd.read_parquet(snapshot)["post_id"].tolist() == ["264183816548130816"]
    assert sorted(p.name for p in snapshot.parent.iterdir()) == [
        "blocker", "quarantine.parquet", "snapshot.parquet"]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in {"GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"}}
    return subprocess.run([str(CIVICSENSE), *args], capture_output=True, text=True, timeout=120,
                          env={**base, **(env or {})})


def test_cli_missing_gcs_credential_is_one_line(tmp_path):
    done = run_cli("ingest", "--data", "gs://civicsense-absent/raw/", "--out",
                   str(tmp_path / "s.parquet"), "--quarantine", str(tmp_path / "q.parquet"),
                   env={"HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "cannot read gs://civicsense-absent/raw/" in done.stderr
    assert not list(tmp_path.glob("*.parquet"))


def test_cli_ingests_hostile_data_without_a_traceback(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_bytes(GOOD.encode() + b"99999999999999999999999999999\tneutral\tx\n"
                                 + b"\xc3\x28\tbroken\n")
    (data / "b.csv").write_text("post_id,text,label\n\u00b2,hi,positive\nok,fine,neutral\n")
    done = run_cli("ingest", "--data", str(data), "--out", str(tmp_path / "s.parquet"),
                   "--quarantine", str(tmp_path / "q.parquet"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    quarantined = pd.read_parquet(tmp_path / "q.parquet")
    assert sorted(quarantined["reason"]) == ["bad_post_id", "bad_post_id", "invalid_utf8"]
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 2


def test_parquet_empty_cells_are_missing_values_not_text(tmp_path):
    frame = pd.DataFrame({"post_id": ["p1", None, "\u00b2"], "text": ["fine", None, "x"],
                          "label": ["positive", "negative", "neutral"],
                          "created_at": pd.to_datetime(["2024-05-01", None, None], utc=True)})
    frame.to_parquet(tmp_path / "posts.parquet")
    result = ingest(tmp_path / "posts.parquet", progress=False)
    assert reasons(result) == {"bad_post_id": 1, "empty_text": 1} and accounted(result)
    assert result.accepted["created_at"].tolist() == [pd.Timestamp("2024-05-01", tz="UTC")]
