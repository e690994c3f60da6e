"""Data tests on the real SemEval-2017 Task 4A mirror: exact accounting and the known mess."""

import pandas as pd
import pytest

from civicsense.data.ingest import ingest
from tests_support import require_mirror_dir

# Row counts of the data README, file by file: the 20,632-row test file holds one record that
# spans two physical lines, so it has 20,633 lines.
README_ROWS = {
    "twitter-2013train-A.txt": 9684, "twitter-2013dev-A.txt": 1654,
    "twitter-2013test-A.txt": 3547, "twitter-2014test-A.txt": 1853,
    "twitter-2014sarcasm-A.txt": 86, "twitter-2015train-A.txt": 489,
    "twitter-2015test-A.txt": 2390, "twitter-2016train-A.txt": 6000,
    "twitter-2016dev-A.txt": 1999, "twitter-2016devtest-A.txt": 2000,
    "twitter-2016test-A.txt": 20632,
}


@pytest.fixture(scope="module")
def result():
    return ingest(require_mirror_dir(), progress=False)


def test_exact_accounting(result):
    assert result.by_source == README_ROWS
    assert result.records_read == sum(README_ROWS.values()) == 50_334
    assert result.lines_read == 50_335
    assert result.records_read == len(result.accepted) + len(result.quarantined)


def test_the_two_line_record_is_one_post(result):
    row = result.accepted.set_index("post_id").loc["638435681832960000"]
    assert row["source"] == "twitter-2016test-A.txt"
    assert row["text"].startswith("@SkyNews: Kanye West") and row["text"].endswith("President!")


def test_escapes_and_entities_are_decoded(result):
    texts = result.accepted["text"]
    assert not texts.str.contains(r"\\u[0-9a-fA-F]{4}").any()
    assert not texts.str.contains("&amp;", regex=False).any()
    assert texts.str.contains("’", regex=False).sum() > 1000  # from the 2013 \u2019 escapes


def test_repeated_ids_are_resolved_and_reported(result):
    accepted, quarantined = result.accepted, result.quarantined
    assert accepted["post_id"].is_unique
    conflicting = quarantined[quarantined["reason"] == "conflicting_labels"]
    assert len(conflicting) > 0 and not conflicting["post_id"].isin(accepted["post_id"]).any()
    duplicates = quarantined[quarantined["reason"] == "duplicate_id"]
    assert duplicates["post_id"].isin(accepted["post_id"]).all()
    repeated = set(conflicting["post_id"]) | set(duplicates["post_id"])
    assert len(repeated) == 757  # the data README: 757 ids occur in more than one file


def test_event_times_come_from_snowflake_ids(result):
    created = result.accepted["created_at"]
    assert created.min() >= pd.Timestamp("2011-07-01", tz="UTC")
    assert created.max() <= pd.Timestamp("2016-01-01", tz="UTC")


def test_label_distribution_is_plausible(result):
    shares = result.accepted["label"].value_counts(normalize=True)
    assert set(shares.index) == {"negative", "neutral", "positive"}
    assert 0.1 < shares["negative"] < shares["positive"] < shares["neutral"] < 0.5
