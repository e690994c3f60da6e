"""Behaviour of the trained champion on obvious cases: polarity, negation, emoji, neutral news."""

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def champion(trained_home):
    import mlflow

    settings, _ = trained_home
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)  # both: earlier tests may have set another
    return mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")


def predict(model, texts):
    return model.predict(pd.DataFrame({"text": texts}))


@pytest.mark.parametrize("text,label", [
    ("I love this, what a wonderful day!", "positive"),
    ("Great news, so happy for everyone :)", "positive"),
    ("Best decision ever, thank you! 😍", "positive"),
    ("I hate this, it is awful and disgusting.", "negative"),
    ("Terrible decision, shame on them :(", "negative"),
    ("The committee meets on Tuesday at 10am.", "neutral"),
    ("Parliament will vote on the climate bill tomorrow", "neutral"),
])
def test_obvious_cases(champion, text, label):
    assert predict(champion, [text])["label"].iloc[0] == label


def test_negation_flips_polarity(champion):
    frame = predict(champion, ["This is good", "This is not good at all", "I don't like it"])
    assert frame["p_positive"].iloc[0] > frame["p_positive"].iloc[1]
    assert frame["label"].tolist()[1:] == ["negative", "negative"]


def test_emoji_carry_sentiment(champion):
    frame = predict(champion, ["the new law 😍😍😍", "the new law 😡😡😡"])
    assert frame["p_positive"].iloc[0] > frame["p_positive"].iloc[1]
    assert frame["p_negative"].iloc[1] > frame["p_negative"].iloc[0]


def test_output_contract(champion):
    frame = predict(champion, ["one", "two", "three"])
    assert list(frame.columns) == ["label", "p_negative", "p_neutral", "p_positive"]
    assert len(frame) == 3
    assert frame[["p_negative", "p_neutral", "p_positive"]].sum(axis=1).round(4).eq(1).all()


def test_batch_equals_one_by_one(champion):
    texts = ["so good", "so bad", "a fact about the senate"]
    batch = predict(champion, texts)
    single = pd.concat([predict(champion, [t]) for t in texts], ignore_index=True)
    pd.testing.assert_frame_equal(batch, single, check_exact=False, atol=1e-6)
