"""Feedback is never trusted blindly: only credentialed feedback counts; a flood from one
credential, many credentials from one peer, or a burst on one day make no label; enough
distinct credentials from distinct peers over distinct days (a strict majority) make one; and
consensus labels reach training only when switched on, capped at a share of the training set."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from labeling_support import NOW, feedback

from civicsense.labeling.snapshots import (
    CONSENSUS,
    confirmed_sources,
    consensus_limit,
    list_snapshots,
    refresh_consensus,
)
from civicsense.labeling.trust import (
    CONSENSUS_COLUMNS,
    CREDENTIALED_CLIENT,
    TrustRule,
    capped,
    consensus,
)
from civicsense.monitoring import feedback_intake
from civicsense.monitoring.feedback_log import post_key

POST = "the pension reform is a disgrace"
RULE = TrustRule(min_clients=3, min_peers=3, min_days=2)


def reader(install: int, peer: int | None = None) -> str:
    """A credentialed client id: install id `install` posting from peer `peer` (its own
    peer unless given)."""
    return feedback_intake.credentialed_client(f"{install:016x}",
                                               f"{install if peer is None else peer:012x}")


def _rows(*votes: tuple[str, str, int], text: str = POST) -> pd.DataFrame:
    """Feedback records (client, label, day offset), a second apart."""
    start = pd.Timestamp("2026-11-01", tz="UTC")
    return pd.DataFrame([{"time": start + pd.Timedelta(days=day, seconds=i),
                          "post_key": post_key(text), "text": text, "label": label,
                          "client_id": client}
                         for i, (client, label, day) in enumerate(votes)])


def test_the_trust_rule_reads_the_ids_the_intake_makes():
    assert CREDENTIALED_CLIENT.pattern == feedback_intake.CREDENTIALED_CLIENT.pattern


def test_three_credentials_from_three_peers_over_two_days_make_one_label():
    agreed = consensus(_rows((reader(1), "negative", 0), (reader(2), "negative", 0),
                             (reader(3), "negative", 1)), RULE)
    assert list(agreed.columns) == CONSENSUS_COLUMNS
    assert agreed[["label", "clients", "peers", "days", "total_clients"]].values.tolist() == [
        ["negative", 3, 3, 2, 3]]


def test_claimed_client_ids_never_count():
    sockpuppets = _rows(*[(f"sockpuppet_{i:04d}", "negative", i % 2) for i in range(30)])
    assert consensus(sockpuppets, TrustRule(1, 1, 1)).empty


def test_one_credentials_flood_counts_once():
    flood = _rows(*[(reader(1), "negative", day) for day in range(3) for _ in range(300)])
    assert consensus(flood, RULE).empty
    assert consensus(flood, TrustRule(2, 1, 1)).empty
    assert len(consensus(flood, TrustRule(1, 1, 1))) == 1  # trusts any one credential: tests only


def test_many_credentials_from_one_peer_count_as_one_peer():
    one_peer = _rows(*[(reader(i, peer=99), "negative", i % 3) for i in range(1, 20)])
    assert consensus(one_peer, RULE).empty
    assert consensus(one_peer, TrustRule(3, 1, 2))["clients"].tolist() == [19]


def test_agreement_on_one_day_is_not_enough():
    one_day = _rows(*[(reader(i), "negative", 0) for i in range(1, 20)])
    assert consensus(one_day, RULE).empty
    assert len(consensus(one_day, TrustRule(3, 3, 1))) == 1


def test_agreeing_credentials_must_be_a_strict_majority():
    split = _rows(*[(reader(i), "negative", i % 2) for i in range(1, 4)],
                  *[(reader(i), "positive", i % 2) for i in range(4, 7)])
    assert consensus(split, RULE).empty
    more = _rows(*[(reader(i), "negative", i % 2) for i in range(1, 5)],
                 *[(reader(i), "positive", i % 2) for i in range(5, 8)])
    assert consensus(more, RULE)["label"].tolist() == ["negative"]


def test_an_install_counts_once_with_its_latest_label_from_any_peer():
    votes = _rows((reader(1), "positive", 0), (reader(2), "negative", 0),
                  (reader(3), "negative", 1), (reader(1, peer=7), "negative", 1))
    agreed = consensus(votes, RULE)
    assert agreed[["clients", "total_clients"]].values.tolist() == [[3, 3]]


def test_every_minimum_must_be_positive():
    for bad in ({"min_clients": 0}, {"min_peers": 0}, {"min_days": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrustRule(**bad)


def test_the_cap_keeps_the_best_supported_posts():
    rows = [_rows(*[(reader(i), "negative", i % 2) for i in range(1, n + 1)], text=f"post {n}")
            for n in (3, 5, 4)]
    agreed = consensus(pd.concat(rows, ignore_index=True), RULE)
    assert len(agreed) == 3
    kept = capped(agreed, 2)
    assert sorted(kept["clients"].tolist()) == [4, 5] and kept["post_key"].is_monotonic_increasing
    assert capped(agreed, 0).empty and capped(agreed, 10) is agreed


def _agreeing_log(settings, text: str = POST, label: str = "negative") -> None:
    """Three credentials from three peers over two days agree on `text`."""
    for i, days_ago in ((1, 0), (2, 0), (3, 1)):
        feedback(settings, text, label, reader(i), when=NOW - timedelta(days=days_ago, hours=1))


def test_by_default_consensus_never_reaches_training(civicsense_home):
    settings = civicsense_home
    _agreeing_log(settings)
    assert not settings.feedback_consensus_training
    assert confirmed_sources(settings, training_rows=10_000) == []
    assert list_snapshots(settings) == []


def test_switched_on_consensus_makes_a_snapshot_within_its_share(civicsense_home):
    settings = civicsense_home.model_copy(update={"feedback_consensus_training": True})
    _agreeing_log(settings)
    feedback(settings, POST, "negative", "flooder-0123456789", n=1000)  # no credential: no vote
    feedback(settings, "another post", "positive", reader(1))  # one voice: no label
    # The cap: 5% of the training set's other rows; unknown base data: of the annotated labels.
    assert consensus_limit(settings) == 0 and confirmed_sources(settings) == []
    assert consensus_limit(settings, 19) == 0 and consensus_limit(settings, 20) == 1
    sources = confirmed_sources(settings, training_rows=20)
    assert len(sources) == 1
    rows = pd.read_parquet(sources[0])
    assert rows[["post_id", "label", "source"]].values.tolist() == [
        [post_key(POST), "negative", CONSENSUS]]
    (snapshot,) = list_snapshots(settings)
    assert snapshot.kind == CONSENSUS and snapshot.rows == 1 and snapshot.path == sources[0]
    assert confirmed_sources(settings, training_rows=20) == sources  # same feedback, same version
    assert refresh_consensus(settings, training_rows=19) is None
