"""Unit tests of the one featurizer: descriptors, fitted scores, Feast layout round trip."""

import numpy as np
import pandas as pd
import pytest

from civicsense import LABELS
from civicsense.features.featurizer import (
    DESCRIPTOR_NAMES,
    LEXICAL_NAMES,
    Featurizer,
    LexicalScorer,
    describe,
    encode_labels,
    from_feast_columns,
    normalize_for_tokens,
    to_feast_columns,
)

TEXTS = ["I love it :) 😊", "I don't like it, never again :(", "The vote is on Tuesday.",
         "Great news!!! #win", "awful, terrible @someone http://t.co/x", "meeting at noon"] * 4
LABEL_NAMES = ["positive", "negative", "neutral", "positive", "negative", "neutral"] * 4


def test_normalize_folds_urls_and_mentions():
    assert normalize_for_tokens("Hi @Bob see https://x.co/a NOW") == "hi  @user  see  http  now"


def test_describe_counts_cues():
    frame = describe(["I don't like it!! :( 😡", "Plain text."])
    assert list(frame.columns) == list(DESCRIPTOR_NAMES)
    assert frame.dtypes.eq(np.float32).all()
    first = frame.iloc[0]
    assert first["n_exclamations"] == 2 and first["n_negations"] == 1
    assert first["n_negative_emoticons"] == 1 and first["n_emoji"] == 1
    assert frame.iloc[1]["vader_neutral"] == 1.0
    assert describe(["I hate it :("]).iloc[0]["vader_compound"] < 0


def test_describe_of_no_texts_is_empty_but_typed():
    assert describe([]).shape == (0, len(DESCRIPTOR_NAMES))


def test_featurizer_fit_and_transform_agree_on_layout():
    featurizer = Featurizer(LexicalScorer(folds=2))
    train = featurizer.fit_transform(TEXTS, LABEL_NAMES)
    served = featurizer.transform(["what a lovely day", "I hate this"])
    assert list(train.columns) == list(served.columns) == featurizer.feature_names
    lexical = served[list(LEXICAL_NAMES)].to_numpy()
    assert np.allclose(lexical.sum(axis=1), 1.0, atol=1e-5)


def test_fitted_scores_learn_the_labels():
    featurizer = Featurizer(LexicalScorer(folds=2))
    featurizer.fit_transform(TEXTS * 3, LABEL_NAMES * 3)
    scores = featurizer.transform(["I love it :)", "awful, terrible"])[list(LEXICAL_NAMES)]
    assert scores.to_numpy().argmax(axis=1).tolist() == [LABELS.index("positive"),
                                                         LABELS.index("negative")]


def test_transform_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        Featurizer().transform(["x"])


def test_encode_labels_rejects_unknown():
    assert encode_labels(["negative", "positive"]).tolist() == [0, 2]
    with pytest.raises(ValueError, match="unknown label 'mixed'"):
        encode_labels(["mixed"])


def test_feast_layout_round_trip():
    featurizer = Featurizer(LexicalScorer(folds=2))
    flat = featurizer.fit_transform(TEXTS, LABEL_NAMES)
    stored = to_feast_columns(flat)
    assert all(stored[name].dtype == np.float32 for name in stored.columns)
    pd.testing.assert_frame_equal(from_feast_columns(stored), flat)


def test_feast_layout_stores_an_absent_encoder_block_as_nan_columns():
    from civicsense.features.featurizer import ENCODER_NAMES

    flat = Featurizer(LexicalScorer(folds=2)).fit_transform(TEXTS, LABEL_NAMES)
    stored = to_feast_columns(flat)
    assert stored[list(ENCODER_NAMES)].isna().all().all()
    pd.testing.assert_frame_equal(from_feast_columns(stored), flat)
    block = pd.DataFrame(np.tile(np.arange(len(ENCODER_NAMES), dtype=np.float32) / 1000,
                                 (len(flat), 1)), columns=list(ENCODER_NAMES), index=flat.index)
    encoded = pd.concat([flat, block], axis=1)
    encoded.iloc[0, encoded.columns.get_loc(ENCODER_NAMES[0]):] = np.nan  # a post tuned on
    stored = to_feast_columns(encoded)
    pd.testing.assert_frame_equal(from_feast_columns(stored), encoded)
    with pytest.raises(ValueError, match="part of the encoder block"):
        to_feast_columns(encoded.drop(columns=[ENCODER_NAMES[5]]))


def test_a_featurizer_pickled_before_the_encoder_loads_without_one():
    import pickle

    featurizer = Featurizer(LexicalScorer(folds=2))
    featurizer.fit_transform(TEXTS, LABEL_NAMES)
    state = dict(featurizer.__dict__)
    del state["encoder"]
    old = Featurizer.__new__(Featurizer)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.encoder is None and old.feature_names == featurizer.feature_names
