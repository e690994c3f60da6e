"""Feedback is never trusted blindly: a flood from one client makes no label; enough distinct
agreeing clients (a strict majority of the post's clients) make one."""

from __future__ import annotations

import pandas as pd
import pytest
from labeling_support import feedback

from civicsense.labeling.snapshots import (
    CONSENSUS,
    confirmed_sources,
    list_snapshots,
    refresh_consensus,
)
from civicsense.labeling.trust import CONSENSUS_COLUMNS, consensus
from civicsense.monitoring.feedback_log import post_key, read_feedback

POST = "the pension reform is a disgrace"
FLOODER = "flooder-0123456789"


def _rows(*votes: tuple[str, str], text: str = POST) -> pd.DataFrame:
    start = pd.Timestamp("2026-11-01", tz="UTC")
    return pd.DataFrame([{"time": start + pd.Timedelta(seconds=i), "post_key": post_key(text),
                          "text": text, "label": label, "client_id": client}
                         for i, (client, label) in enumerate(votes)])


def test_three_distinct_agreeing_clients_make_one_label():
    agreed = consensus(_rows(("client-aaaa1", "negative"), ("client-bbbb2", "negative"),
                             ("client-cccc3", "negative")), 3)
    assert list(agreed.columns) == CONSENSUS_COLUMNS
    assert agreed[["label", "clients", "total_clients"]].values.tolist() == [["negative", 3, 3]]


def test_one_clients_flood_counts_once():
    flood = _rows(*[(FLOODER, "negative")] * 1000)
    assert consensus(flood, 3).empty
    assert consensus(flood, 2).empty
    assert len(consensus(flood, 1)) == 1  # min_clients=1 trusts any single client: on purpose


def test_agreeing_clients_must_be_a_strict_majority():
    split = _rows(*[(f"client-yes{i}", "negative") for i in range(3)],
                  *[(f"client-no{i}", "positive") for i in range(3)])
    assert consensus(split, 3).empty
    more = _rows(*[(f"client-yes{i}", "negative") for i in range(4)],
                 *[(f"client-no{i}", "positive") for i in range(3)])
    assert consensus(more, 3)["label"].tolist() == ["negative"]


def test_a_client_that_changes_its_mind_counts_with_its_latest_label():
    votes = _rows(("client-aaaa1", "positive"), ("client-bbbb2", "negative"),
                  ("client-cccc3", "negative"), ("client-aaaa1", "negative"))
    assert consensus(votes, 3)["clients"].tolist() == [3]


def test_min_clients_must_be_positive():
    with pytest.raises(ValueError, match="min_clients"):
        consensus(_rows(("client-aaaa1", "negative")), 0)


def test_a_logged_flood_from_one_client_yields_an_empty_consensus(civicsense_home):
    settings = civicsense_home
    feedback(settings, POST, "negative", FLOODER, n=1000)
    assert len(read_feedback(settings.feedback_log, settings)) == 1000
    assert settings.feedback_min_clients == 3
    assert refresh_consensus(settings) is None
    assert confirmed_sources(settings) == []
    assert list_snapshots(settings) == []


def test_three_logged_clients_make_a_consensus_snapshot(civicsense_home):
    settings = civicsense_home
    feedback(settings, POST, "negative", FLOODER, n=1000)  # the flood is one voice of four
    for client in ("client-aaaa1", "client-bbbb2", "client-cccc3"):
        feedback(settings, POST, "negative", client)
    feedback(settings, "another post", "positive", "client-aaaa1")  # one voice: no label
    sources = confirmed_sources(settings)
    assert len(sources) == 1
    rows = pd.read_parquet(sources[0])
    assert rows[["post_id", "label", "source"]].values.tolist() == [
        [post_key(POST), "negative", CONSENSUS]]
    (snapshot,) = list_snapshots(settings)
    assert snapshot.kind == CONSENSUS and snapshot.rows == 1 and snapshot.path == sources[0]
    assert confirmed_sources(settings) == sources  # same feedback, same version
