"""Unit tests of the error-analysis slices, per-slice macro recall and the worst confusions."""

import pandas as pd
import pytest

from civicsense.training.slices import (
    macro_recall_present_classes,
    slice_masks,
    slice_scores,
    source_year,
    worst_confusions,
)


def frame():
    return pd.DataFrame({
        "text": ["so good :)", "I do not like it at all", "read http://t.co/x #news now",
                 "one two three four five six seven eight nine ten eleven twelve thirteen "
                 "fourteen fifteen sixteen seventeen eighteen nineteen twenty", "great 😍",
                 "it isn't fine"],
        "label": ["positive", "negative", "neutral", "neutral", "positive", "negative"],
        "source": ["twitter-2013train-A.txt", "twitter-2014sarcasm-A.txt",
                   "twitter-2016dev-A.txt", "posts.csv", "twitter-2013dev-A.txt",
                   "twitter-2013dev-A.txt"],
        "created_at": pd.to_datetime(["2013-01-01", "2014-01-01", "2016-01-01", "2012-05-05",
                                      "2013-01-01", "2013-01-01"], utc=True),
    })


def test_each_slice_selects_its_posts():
    masks = {name: mask.tolist() for name, mask in slice_masks(frame()).items()}
    assert masks["all"] == [True] * 6
    assert masks["emoji"] == [True, False, False, False, True, False]
    assert masks["negation"] == [False, True, False, False, False, True]
    assert masks["url"] == [False, False, True, False, False, False]
    assert masks["hashtag"] == [False, False, True, False, False, False]
    assert masks["long"] == [False, False, False, True, False, False]
    assert masks["short"] == [True, True, True, False, True, True]
    assert masks["sarcasm"] == [False, True, False, False, False, False]
    assert masks["year:2013"] == [True, False, False, False, True, True]
    assert masks["year:2012"] == [False, False, False, True, False, False]  # from created_at


def test_no_source_column_means_no_sarcasm_slice_and_years_from_time():
    masks = slice_masks(frame().drop(columns=["source"]))
    assert "sarcasm" not in masks and masks["year:2016"].sum() == 1


@pytest.mark.parametrize("source,created,year", [
    ("twitter-2015train-A.txt", None, "2015"),
    ("posts.csv", pd.Timestamp("2011-03-01", tz="UTC"), "2011"),
    (None, pd.Timestamp("1970-01-01", tz="UTC"), "unknown"),
])
def test_source_year(source, created, year):
    assert source_year(source, created) == year


def test_macro_recall_ignores_absent_classes():
    assert macro_recall_present_classes(["positive", "positive"],
                                        ["positive", "neutral"]) == pytest.approx(0.5)
    assert macro_recall_present_classes([], []) is None


def test_slice_scores_compare_candidate_and_champion():
    data = frame()
    candidate = data["label"].tolist()
    champion = ["neutral"] * 6
    scores = {s.name: s for s in slice_scores(data, candidate, champion)}
    assert scores["all"].n == 6 and scores["all"].candidate == 1.0
    assert scores["all"].champion == pytest.approx(1 / 3)
    assert scores["negation"].delta == pytest.approx(1.0)
    assert scores["emoji"].champion == 0.0
    assert slice_scores(data, candidate)[0].champion is None


def test_worst_confusions_rank_pairs_and_most_confident_examples():
    data = pd.DataFrame({"text": list("abcdef"),
                         "label": ["positive", "positive", "positive", "negative", "neutral",
                                   "neutral"]})
    predictions = pd.DataFrame({
        "label": ["neutral", "neutral", "positive", "neutral", "neutral", "negative"],
        "p_negative": [0.1, 0.1, 0.1, 0.2, 0.1, 0.6],
        "p_neutral": [0.6, 0.8, 0.1, 0.7, 0.8, 0.3],
        "p_positive": [0.3, 0.1, 0.8, 0.1, 0.1, 0.1]})
    worst = worst_confusions(data, predictions, top=2, examples=5)
    assert (worst[0]["true"], worst[0]["predicted"], worst[0]["count"]) == (
        "positive", "neutral", 2)
    assert [e["text"] for e in worst[0]["examples"]] == ["b", "a"]  # most confident first
    assert len(worst) == 2 and worst[1]["count"] == 1
