"""Unit tests of ingest on small fixture files that carry the raw data's mess."""


import pandas as pd
import pytest

from civicsense.data.ingest import (
    IngestError,
    clean_text,
    content_hash,
    ingest,
    read_semeval,
    snowflake_time,
)
from tests_support import FIXTURES, write_tweeteval_sample


def test_clean_text_undoes_quoting_escapes_and_entities():
    assert clean_text('"He said ""hi"" &amp; left"') == 'He said "hi" & left'
    assert clean_text('"Why is \\""""Happy\\"""" trending?"') == 'Why is "Happy" trending?'
    assert clean_text("I\\u2019m here\\u002c ok") == "I’m here, ok"
    assert clean_text("smile \\ud83d\\ude0a") == "smile 😊"  # a surrogate pair, one emoji
    assert clean_text("&amp;amp; twice") == "& twice"
    assert clean_text('"never closed') == "never closed"


def test_snowflake_time_decodes_tweet_ids():
    # (id >> 22) + 1288834974657 ms, the data README's formula, is 2012-11-02T01:55:04.820Z
    assert snowflake_time(264183816548130816) == pd.Timestamp(1351821304820, unit="ms", tz="UTC")
    assert snowflake_time(12345) is None  # pre-snowflake ids carry no time


def test_two_line_record_is_joined():
    records, lines = read_semeval(FIXTURES / "semeval_mess.txt")
    assert lines == 15
    kanye = next(r for r in records if r.post_id == "638435681832960000")
    assert kanye.text.startswith('" @SkyNews') and "\n" in kanye.text
    assert kanye.raw.count("\n") == 1


def test_every_raw_row_is_accounted_for():
    result = ingest(FIXTURES / "semeval_mess.txt", progress=False)
    assert result.records_read == 14
    assert result.records_read == len(result.accepted) + len(result.quarantined)
    reasons = result.report["quarantine_reasons"]
    assert reasons == {
        "bad_label:mixed": 1, "blank_line": 1, "conflicting_labels": 2, "duplicate_id": 1,
        "empty_text": 1, "invalid_utf8": 1, "malformed_line": 1,
    }
    assert len(result.accepted) == 6
    texts = dict(zip(result.accepted["post_id"], result.accepted["text"], strict=True))
    kanye = "@SkyNews: Kanye West: 'I've decided to run for president!"
    assert texts["638435681832960000"] == kanye
    assert texts["212392538055778304"].startswith('Why is "Happy Valentines Day" trending? It’s')
    assert texts["638436159790653440"] == 'Kanye West will perform 808s & Heartbreak" Album on ' \
        "September 25th"
    assert not result.accepted["text"].str.contains(r"\\u", regex=False).any()


def test_quarantine_keeps_source_line_and_raw_text():
    quarantined = ingest(FIXTURES / "semeval_mess.txt", progress=False).quarantined
    malformed = quarantined[quarantined["reason"] == "malformed_line"].iloc[0]
    assert (malformed["source"], malformed["line"]) == ("semeval_mess.txt", 11)
    assert malformed["raw"] == "this line has no id and no tabs"


def test_tweeteval_layout_with_mapping(tmp_path):
    result = ingest(write_tweeteval_sample(tmp_path / "tweeteval"), progress=False)
    assert list(result.accepted["label"]) == ["negative", "neutral", "positive"]
    assert result.accepted["post_id"].is_unique
    assert (result.accepted["created_at"] == pd.Timestamp("1970-01-01", tz="UTC")).all()


def test_stance_labels_are_not_sentiment(tmp_path):
    folder = tmp_path / "abortion"
    folder.mkdir()
    (tmp_path / "mapping.txt").write_text("0\tnone\n1\tagainst\n2\tfavor\n")
    (folder / "train_text.txt").write_text("a\nb\n")
    (folder / "train_labels.txt").write_text("1\n2\n")
    with pytest.raises(IngestError, match="no valid rows"):
        ingest(folder, progress=False)


def test_csv_layout_with_optional_columns():
    result = ingest(FIXTURES / "posts.csv", progress=False)
    assert result.records_read == 3
    assert list(result.accepted["post_id"]) == ["p1", "p2"]
    assert result.accepted["created_at"].iloc[0] == pd.Timestamp("2024-05-01 10:00", tz="UTC")
    assert list(result.quarantined["reason"]) == ["bad_created_at"]


def test_csv_without_text_column_is_a_clear_error(tmp_path):
    (tmp_path / "bad.csv").write_text("body,label\nhello,positive\n")
    with pytest.raises(IngestError, match=r"missing column\(s\) \['text'\]"):
        ingest(tmp_path / "bad.csv", progress=False)


def test_unknown_layout_and_missing_source_are_clear_errors(tmp_path):
    (tmp_path / "notes.md").write_text("# nothing to ingest")
    with pytest.raises(IngestError, match="no ingestible files"):
        ingest(tmp_path, progress=False)
    with pytest.raises(IngestError, match="not found"):
        ingest(tmp_path / "absent", progress=False)


def test_content_hash_is_the_data_version():
    frame = ingest(FIXTURES / "semeval_mess.txt", progress=False).accepted
    assert content_hash(frame) == content_hash(frame.sample(frac=1, random_state=1))
    changed = frame.copy()
    changed.loc[changed.index[0], "label"] = "neutral"
    assert content_hash(changed) != content_hash(frame)
