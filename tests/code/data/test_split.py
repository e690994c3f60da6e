"""Unit tests of the train/validation split and the stratified sample."""

import pandas as pd
import pytest

from civicsense.data.split import assign_split, stratified_sample


def frame(n=10):
    return pd.DataFrame({
        "created_at": pd.date_range("2015-01-01", periods=n, freq="D", tz="UTC")[::-1],
        "label": ["positive", "negative"] * (n // 2),
    })


def test_time_split_holds_out_the_latest_posts():
    rows = frame()
    split = assign_split(rows, "time", 0.3)
    latest = rows["created_at"].nlargest(3).index
    assert set(split[split == "validation"].index) == set(latest)


def test_time_split_keeps_file_order_for_equal_times():
    rows = pd.DataFrame({"created_at": [pd.Timestamp(0, tz="UTC")] * 5, "label": ["x"] * 5})
    assert assign_split(rows, "time", 0.4).tolist() == ["train"] * 3 + ["validation"] * 2


def test_random_split_is_seeded():
    rows = frame(100)
    assert assign_split(rows, "random", 0.2, seed=1).equals(assign_split(rows, "random", 0.2, 1))
    assert (assign_split(rows, "random", 0.2) == "validation").sum() == 20


@pytest.mark.parametrize("fraction", [0, 1, 1.5])
def test_bad_fraction_is_an_error(fraction):
    with pytest.raises(ValueError, match="validation_fraction"):
        assign_split(frame(), "time", fraction)


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown split method"):
        assign_split(frame(), "alphabetical")  # type: ignore[arg-type]


def test_stratified_sample_keeps_label_shares_and_order():
    rows = frame(100)
    sample = stratified_sample(rows, 20)
    assert len(sample) == 20 and sample["label"].value_counts().tolist() == [10, 10]
    assert sample.index.is_monotonic_increasing
    assert stratified_sample(rows, 0) is rows
