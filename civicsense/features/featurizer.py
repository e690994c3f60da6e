"""The one featurizer: the only place text becomes numbers, for training and serving alike."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from civicsense import LABELS

if TYPE_CHECKING:
    from civicsense.features.encoder.runtime import OnnxEncoder

URL = re.compile(r"https?://\S+|www\.\S+")
MENTION = re.compile(r"@\w+")
EMOJI = r"[\U0001F300-\U0001FAFF\u2600-\u27BF]"
POSITIVE_EMOTICON = r"[:;=]-?[)D\]pP]|<3"
NEGATIVE_EMOTICON = r"[:;=]'?-?[(/\[]"
NEGATION = r"(?i)\b(?:not|no|never|nothing|nobody|cannot|cant|dont|wont|isnt|\w+n't)\b"

# Cheap, stateless, human-readable descriptors: model inputs, and what the drift monitor watches.
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "n_chars", "n_words", "n_exclamations", "n_questions", "upper_ratio", "n_emoji",
    "n_positive_emoticons", "n_negative_emoticons", "n_negations", "n_hashtags",
    "n_mentions", "n_urls", "vader_negative", "vader_neutral", "vader_positive",
    "vader_compound",
)
LEXICAL_NAMES: tuple[str, ...] = tuple(f"lexical_{label}" for label in LABELS)
# The fine-tuned encoder's outputs (civicsense.features.encoder): its head's probabilities and
# its mean-pooled sentence embedding (all-MiniLM-L6-v2: 384 wide).
EMBEDDING_DIM = 384
ENCODER_NAMES: tuple[str, ...] = (*(f"encoder_{label}" for label in LABELS),
                                  *(f"embedding_{i:03d}" for i in range(EMBEDDING_DIM)))
# Feast stores every feature as its own Float32 column: its file offline store hands list
# columns to Dask, which tokenizes them by pickling row by row, and Array(Float32) views made
# each point-in-time join of the full data cost 50-90 s. The encoder's block is optional: a
# featurizer without it stores NaN columns, and a block NaN throughout is read back as absent.
OPTIONAL_BLOCKS: dict[str, tuple[str, ...]] = {"encoder": ENCODER_NAMES}
# The Feast feature service holding every feature the model reads (feature_repo/definitions.py).
FEATURE_SERVICE = "civicsense_sentiment"


def normalize_for_tokens(text: str) -> str:
    """Lower-case text with URLs and user mentions folded into placeholder tokens."""
    return MENTION.sub(" @user ", URL.sub(" http ", text)).lower()


@lru_cache(maxsize=1)
def _vader():
    # vaderSentiment's own analyzer is quadratic in tokens (2,000 emoji: seconds); this one
    # gives the same scores in linear time (civicsense.features.vader_linear).
    from civicsense.features.vader_linear import LinearSentimentAnalyzer

    return LinearSentimentAnalyzer()


def describe(texts: Sequence[str]) -> pd.DataFrame:
    """The stateless descriptors of each text, one float32 column per DESCRIPTOR_NAMES entry."""
    series = pd.Series(list(texts), dtype="object").astype(str)
    lengths = series.str.len()
    vader = _vader()
    scores = np.array(
        [list(vader.polarity_scores(text).values()) for text in series], dtype=np.float32
    ).reshape(len(series), 4)
    frame = pd.DataFrame(
        {
            "n_chars": lengths,
            "n_words": series.str.split().str.len(),
            "n_exclamations": series.str.count("!"),
            "n_questions": series.str.count(r"\?"),
            "upper_ratio": series.str.count(r"[A-Z]") / lengths.clip(lower=1),
            "n_emoji": series.str.count(EMOJI),
            "n_positive_emoticons": series.str.count(POSITIVE_EMOTICON),
            "n_negative_emoticons": series.str.count(NEGATIVE_EMOTICON),
            "n_negations": series.str.count(NEGATION),
            "n_hashtags": series.str.count(r"#\w+"),
            "n_mentions": series.str.count(MENTION.pattern),
            "n_urls": series.str.count(URL.pattern),
            "vader_negative": scores[:, 0],
            "vader_neutral": scores[:, 1],
            "vader_positive": scores[:, 2],
            "vader_compound": scores[:, 3],
        }
    )
    return frame.fillna(0).astype(np.float32)


@dataclass
class LexicalScorer:
    """Word and character n-gram TF-IDF read by a linear model, reduced to one score per label.

    It is fitted on training text only. Training rows get out-of-fold scores (stacking), so the
    tree model downstream learns how far to trust them on text the scorer has not seen."""

    word_features: int = 50_000
    char_features: int = 100_000
    alpha: float = 2e-5
    folds: int = 5
    seed: int = 0
    word_vectorizer: TfidfVectorizer | None = field(default=None, repr=False)
    char_vectorizer: TfidfVectorizer | None = field(default=None, repr=False)
    classifier: SGDClassifier | None = field(default=None, repr=False)

    def _classifier(self) -> SGDClassifier:
        return SGDClassifier(loss="log_loss", alpha=self.alpha, class_weight="balanced",
                             max_iter=30, tol=None, random_state=self.seed)

    def _vectorize(self, texts: Sequence[str]) -> csr_matrix:
        assert self.word_vectorizer is not None and self.char_vectorizer is not None
        return hstack([self.word_vectorizer.transform(texts),
                       self.char_vectorizer.transform(texts)]).tocsr()

    def fit_oof(self, texts: Sequence[str], labels: np.ndarray) -> np.ndarray:
        """Fit on all of `texts`; return out-of-fold scores for those same texts."""
        self.word_vectorizer = TfidfVectorizer(
            preprocessor=normalize_for_tokens, ngram_range=(1, 2), min_df=2,
            sublinear_tf=True, max_features=self.word_features, dtype=np.float32)
        self.char_vectorizer = TfidfVectorizer(
            preprocessor=normalize_for_tokens, analyzer="char_wb", ngram_range=(2, 5), min_df=3,
            sublinear_tf=True, max_features=self.char_features, dtype=np.float32)
        self.word_vectorizer.fit(texts)
        self.char_vectorizer.fit(texts)
        matrix = self._vectorize(texts)
        folds = min(self.folds, int(np.bincount(labels, minlength=len(LABELS)).min()))
        if folds >= 2:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
            oof = cross_val_predict(self._classifier(), matrix, labels, cv=splitter,
                                    method="predict_proba", n_jobs=min(2, folds))
        else:  # too few examples of a label to hold any out: in-sample scores, said in docs
            oof = None
        self.classifier = self._classifier().fit(matrix, labels)
        if oof is None:
            oof = self.classifier.predict_proba(matrix)
        return self._align(oof, self.classifier.classes_)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError("LexicalScorer is not fitted")
        return self._align(self.classifier.predict_proba(self._vectorize(texts)),
                           self.classifier.classes_)

    @staticmethod
    def _align(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Scores in LABELS order even when a label was absent from the training data."""
        full = np.zeros((probabilities.shape[0], len(LABELS)), dtype=np.float32)
        full[:, classes] = probabilities
        return full


@dataclass
class Featurizer:
    """Descriptors plus fitted lexical scores (plus, with an encoder, the fine-tuned encoder's
    probabilities and embedding), as one flat float32 frame in `feature_names` order.

    The encoder is fitted before the featurizer (the pipeline's encoder step), on a slice of the
    training split that the booster downstream never trains on: its outputs are in-sample
    there (the feature build stores them as NaN). It travels inside the featurizer
    (OnnxEncoder.embedded), so serving needs no files."""

    lexical: LexicalScorer = field(default_factory=LexicalScorer)
    encoder: OnnxEncoder | None = None

    def __setstate__(self, state: dict) -> None:
        state.setdefault("encoder", None)  # featurizers pickled before the encoder existed
        self.__dict__.update(state)

    @property
    def feature_names(self) -> list[str]:
        encoder = ENCODER_NAMES if self.encoder is not None else ()
        return [*DESCRIPTOR_NAMES, *LEXICAL_NAMES, *encoder]

    def fit_transform(self, texts: Sequence[str], labels: Sequence[str],
                      encoded: np.ndarray | None = None) -> pd.DataFrame:
        """Fit on training texts and labels; their features (lexical scores out-of-fold).
        `encoded`: this featurizer's encoder outputs for the texts, already computed
        (encoder_matrix), so they are not encoded again."""
        label_ids = encode_labels(labels)
        lexical = self.lexical.fit_oof(list(texts), label_ids)
        return self._frame(texts, lexical, encoded)

    def transform(self, texts: Sequence[str], encoded: np.ndarray | None = None
                  ) -> pd.DataFrame:
        """Features of any texts: the same code path the model server runs."""
        return self._frame(texts, self.lexical.scores(list(texts)), encoded)

    def _frame(self, texts: Sequence[str], lexical: np.ndarray,
               encoded: np.ndarray | None) -> pd.DataFrame:
        frame = describe(texts)
        frame[list(LEXICAL_NAMES)] = lexical
        if self.encoder is not None:
            if encoded is None:
                encoded = encoder_matrix(*self.encoder.encode(list(texts)))
            if encoded.shape != (len(frame), len(ENCODER_NAMES)):
                raise ValueError(f"the encoder's outputs are {encoded.shape[1]} wide, the "
                                 f"features expect {len(ENCODER_NAMES)}")
            frame = pd.concat([frame, pd.DataFrame(encoded, columns=list(ENCODER_NAMES),
                                                   index=frame.index)], axis=1)
        return frame[self.feature_names]


def encoder_matrix(embeddings: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The encoder's outputs as feature columns, in ENCODER_NAMES order (float32)."""
    return np.hstack([probabilities, embeddings]).astype(np.float32)


def encode_labels(labels: Sequence[str]) -> np.ndarray:
    """Label names to ids in LABELS order; an unknown label is an error, not a silent class."""
    index = {label: i for i, label in enumerate(LABELS)}
    try:
        return np.array([index[label] for label in labels], dtype=np.int64)
    except KeyError as error:
        raise ValueError(f"unknown label {error.args[0]!r}; expected one of {LABELS}") from None


def to_feast_columns(features: pd.DataFrame) -> pd.DataFrame:
    """Flat features to Feast's layout: one float32 column per feature, an optional block the
    features lack (e.g. no encoder) as NaN columns."""
    stored = [features[[*DESCRIPTOR_NAMES, *LEXICAL_NAMES]].astype(np.float32)]
    for block, names in OPTIONAL_BLOCKS.items():
        present = [name in features.columns for name in names]
        if any(present) and not all(present):
            raise ValueError(f"features hold part of the {block} block")
        stored.append(features[list(names)].astype(np.float32) if all(present) else
                      pd.DataFrame(np.nan, index=features.index, columns=list(names),
                                   dtype=np.float32))
    return pd.concat(stored, axis=1)


def from_feast_columns(stored: pd.DataFrame) -> pd.DataFrame:
    """Feast's layout back to flat features, the inverse of to_feast_columns: an optional
    block that is NaN throughout is left out."""
    names = [*DESCRIPTOR_NAMES, *LEXICAL_NAMES]
    for block in OPTIONAL_BLOCKS.values():
        if len(stored) and not stored[list(block)].isna().all().all():
            names.extend(block)
    return stored[names].astype(np.float32)
