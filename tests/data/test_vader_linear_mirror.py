"""The linear VADER gives vaderSentiment 3.3.2's scores exactly, on every text of the mirror."""

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from civicsense.data.ingest import ingest
from civicsense.features.vader_linear import LinearSentimentAnalyzer
from tests_support import require_mirror_dir


@pytest.fixture(scope="module")
def texts() -> list[str]:
    accepted = ingest(require_mirror_dir(), progress=False).accepted
    return accepted["text"].astype(str).tolist()


def test_same_scores_as_vader_on_the_whole_mirror(texts):
    assert len(texts) > 49_000
    reference, linear = SentimentIntensityAnalyzer(), LinearSentimentAnalyzer()
    differing = [text for text in texts
                 if linear.polarity_scores(text) != reference.polarity_scores(text)]
    assert differing == []  # exact: same floats, same rounding


def test_same_scores_on_texts_with_but_and_repeated_scores(texts):
    # The "but" rule is where the bookkeeping differs most: repeated values around a "but".
    reference, linear = SentimentIntensityAnalyzer(), LinearSentimentAnalyzer()
    with_but = [text for text in texts if " but " in text.lower()]
    assert len(with_but) > 1000
    crafted = ["good good but good good", "bad but bad but good", "not good but not bad",
               "but good great good", "good great but", "no no but no", "ok 😊😊 but 😡 ok 😊"]
    for text in with_but + crafted:
        assert linear.polarity_scores(text) == reference.polarity_scores(text), text
