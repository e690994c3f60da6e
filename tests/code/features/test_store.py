"""Feature store builds: a later build for other data does not change what train reads for an
earlier (KFP-cached) build's entity rows."""

import numpy as np
import pandas as pd
import pytest

from civicsense.features.store import build_features, build_key, training_frame
from civicsense.settings import Settings

WORDS = {"positive": ["great", "love", "happy", "win"], "negative": ["awful", "hate", "sad",
         "lose"], "neutral": ["today", "vote", "meeting", "report"]}


def snapshot(seed: int, n: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = [("positive", "negative", "neutral")[i % 3] for i in range(n)]
    texts = [" ".join(rng.choice(WORDS[label], 3)) + f" post {seed}-{i}"
             for i, label in enumerate(labels)]
    return pd.DataFrame({
        "post_id": [f"p{i}" for i in range(n)],  # the same ids in every snapshot
        "created_at": pd.date_range("2015-01-01", periods=n, freq="h", tz="UTC"),
        "text": texts, "label": labels, "source": "test"})


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("store-home"))
    first = build_features(snapshot(1), settings, validation_fraction=0.2)
    first_features = training_frame(settings, first.entities)
    second = build_features(snapshot(2), settings, validation_fraction=0.2)
    return settings, first, first_features, second


def test_an_earlier_builds_entities_read_that_builds_features(two_builds):
    settings, first, first_features, second = two_builds
    assert build_key(first.entities) != build_key(second.entities)
    second_features = training_frame(settings, second.entities)
    assert not second_features.equals(first_features)  # other texts: other features
    pd.testing.assert_frame_equal(training_frame(settings, first.entities), first_features)


def test_a_subset_reads_its_whole_builds_features(two_builds):
    settings, first, first_features, _ = two_builds
    is_train = (first.entities["split"] == "train").to_numpy()
    subset = first.entities[is_train].reset_index(drop=True)
    training_frame(settings, snapshot(2).assign(split="train"))  # unrelated rows: no copy
    got = training_frame(settings, subset, build=first.entities)
    pd.testing.assert_frame_equal(got, first_features[is_train].reset_index(drop=True))


def test_the_key_survives_a_parquet_round_trip(two_builds, tmp_path):
    _, first, _, _ = two_builds
    path = tmp_path / "entities.parquet"
    first.entities.to_parquet(path, index=False)
    assert build_key(pd.read_parquet(path)) == build_key(first.entities)
