"""The linear VADER: vaderSentiment's scores on tricky cases, in time linear in the tokens."""

import time

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from civicsense.features.featurizer import describe
from civicsense.features.vader_linear import LinearSentimentAnalyzer, but_check

CASES = ["I don't like it, never again :(", "not so good but never this bad", "kind of ok",
         "the shit!!!", "at least it works", "without doubt the best", "no no no good",
         "VERY GOOD but bad", "yeah right", "😊😊 but 😡", "", "   ", "BUT but BUT good",
         "It is not bad... but it isn't great either?? ok!!!!!"]


@pytest.fixture(scope="module")
def analyzers():
    return SentimentIntensityAnalyzer(), LinearSentimentAnalyzer()


@pytest.mark.parametrize("text", CASES)
def test_same_scores_as_vader(analyzers, text):
    reference, linear = analyzers
    assert linear.polarity_scores(text) == reference.polarity_scores(text)


def test_but_check_matches_vaders_first_equal_value_rule():
    # vaderSentiment rewrites the FIRST position holding each value (list.index): duplicates
    # before "but" are halved once per occurrence, at the first position.
    lower = ["a", "b", "but", "c", "d"]
    expected = SentimentIntensityAnalyzer._but_check(lower, [2.0, 2.0, 0, 1.0, 2.0])
    assert but_check(lower, [2.0, 2.0, 0, 1.0, 2.0]) == expected
    assert but_check(["x"], [1.0]) == [1.0]


def _best_time(analyzer, text: str, repeats: int = 7) -> float:
    # CPU time of this process, best of several: other processes on a shared machine do not
    # inflate it the way they inflate wall-clock time.
    times = []
    for _ in range(repeats):
        start = time.process_time()
        analyzer.polarity_scores(text)
        times.append(time.process_time() - start)
    return min(times)


def test_cost_grows_linearly_with_the_number_of_emoji(analyzers):
    # 8x the emoji: linear costs ~8x, vaderSentiment's quadratic checks ~64x. A ratio, not a
    # wall-clock threshold: it holds on a loaded machine too (benchmarks/bench_featurize.py
    # prints the times).
    _, linear = analyzers
    small, large = "😀" * 250, "😀" * 2000
    ratio = _best_time(linear, large) / _best_time(linear, small)
    assert ratio < 24, ratio


def test_a_2000_emoji_text_is_featurized_like_any_other():
    frame = describe(["😀" * 2000, "plain text"])
    assert frame.loc[0, "n_emoji"] == 2000 and frame.loc[0, "vader_positive"] > 0.5
