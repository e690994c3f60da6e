"""Unit tests of the train/validation split and the stratified sample."""

import pandas as pd
import pytest

from civicsense.data.split import assign_split, sample_and_split, stratified_sample


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


def snapshot(n_base=40, n_new=5):
    """Base posts from 2015 plus labelled-snapshot rows served later (their time is now)."""
    base = pd.DataFrame({"post_id": [f"b{i}" for i in range(n_base)],
                         "created_at": pd.date_range("2015-01-01", periods=n_base, freq="D",
                                                     tz="UTC"),
                         "label": ["positive", "negative"] * (n_base // 2),
                         "source": "twitter-2015train-A.txt"})
    new = pd.DataFrame({"post_id": [f"t{i}" for i in range(n_new)],
                        "created_at": pd.Timestamp("2026-12-03", tz="UTC"),
                        "label": "neutral", "source": "label-studio:export.json"})
    return pd.concat([base, new], ignore_index=True)


def test_the_time_split_trains_on_every_new_label_and_splits_the_base():
    rows = sample_and_split(snapshot(), "time", 0.25)
    new = rows["post_id"].str.startswith("t")
    assert (rows.loc[new, "split"] == "train").all() and new.sum() == 5
    assert rows.loc[rows["split"] == "validation", "post_id"].tolist() == [
        f"b{i}" for i in range(30, 40)]  # the latest 25% of the base posts


def test_the_sample_thins_the_base_only_and_random_split_is_unchanged():
    rows = sample_and_split(snapshot(), "time", 0.25, sample_size=10)
    assert rows["post_id"].str.startswith("t").sum() == 5
    assert (~rows["post_id"].str.startswith("t")).sum() == 10
    plain = snapshot(n_new=0)
    pd.testing.assert_series_equal(sample_and_split(plain, "random", 0.25, seed=3)["split"],
                                   assign_split(plain, "random", 0.25, seed=3))
    assert sample_and_split(plain, "time", 0.25, sample_size=10)["post_id"].tolist() == \
        stratified_sample(plain, 10)["post_id"].tolist()


def test_training_slice_is_a_seeded_stratified_share_of_training_rows():
    from civicsense.data.split import training_slice

    rows = frame(200).assign(split=["train"] * 150 + ["validation"] * 50)
    mask = training_slice(rows, 0.6, seed=3)
    assert mask.sum() == 90 and not mask[150:].any()  # training rows only
    picked = rows[mask]["label"].value_counts()
    assert picked["positive"] == picked["negative"] == 45  # each label's share
    assert (training_slice(rows, 0.6, seed=3) == mask).all()
    assert not (training_slice(rows, 0.6, seed=4) == mask).all()
    for fraction in (0, 1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            training_slice(rows, fraction)


def test_training_slice_never_takes_new_labels():
    from civicsense.data.merge import LABELLED_SOURCES
    from civicsense.data.split import training_slice

    rows = frame(100).assign(split="train", source=["semeval"] * 80 + [LABELLED_SOURCES[0]] * 20)
    mask = training_slice(rows, 0.5)
    assert mask.sum() == 40 and not mask[80:].any()
