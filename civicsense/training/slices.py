"""Error analysis slices: which validation posts fall in each slice (length, emoji, negation,
URLs/hashtags, sarcasm file, source year), per-slice macro recall, and the worst confusions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import recall_score

from civicsense import LABELS

SHORT_WORDS, LONG_WORDS = 10, 20  # short: fewer words than this; long: at least this many
SARCASM_SOURCE = "twitter-2014sarcasm-A"  # the mirror's sarcasm file (ingest keeps its name)
# Emoji, or the emoticons tweets used before them (":)", ":-(", ":D", ";)", ":/", "<3").
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F]"
                   r"|(?<!\w)[:;=]-?[()DPp/\\|](?!\w)|<3")
NEGATION = re.compile(r"\b(?:not|no|never|nothing|nobody|none|neither|nor|cannot|without)\b"
                      r"|n't\b|n’t\b", re.IGNORECASE)
URL = re.compile(r"https?://|www\.", re.IGNORECASE)
HASHTAG = re.compile(r"(?<!\w)#\w+")
YEAR = re.compile(r"(20\d\d)")


@dataclass
class SliceScore:
    """One slice: how many posts, the candidate's and champion's macro recall on them."""

    name: str
    n: int
    candidate: float | None
    champion: float | None

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.champion is None:
            return None
        return self.candidate - self.champion

    def to_dict(self) -> dict:
        return asdict(self)


def source_year(source: str | None, created_at: pd.Timestamp | None) -> str:
    """The year a post's source file names (twitter-2013train-A.txt → 2013), else its time's
    year, else "unknown"."""
    if isinstance(source, str) and (match := YEAR.search(source)):
        return match.group(1)
    if created_at is not None and not pd.isna(created_at) and created_at.year > 1970:
        return str(created_at.year)
    return "unknown"


def slice_masks(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Boolean masks over `frame` (text, optional created_at and source) by slice name; "all"
    first. The sarcasm slice only when the frame has sources, years only for years present."""
    texts = frame["text"].astype(str)
    words = texts.str.split().str.len().fillna(0).to_numpy()
    masks = {
        "all": np.ones(len(frame), dtype=bool),
        "short": words < SHORT_WORDS,
        "long": words >= LONG_WORDS,
        "emoji": texts.str.contains(EMOJI).to_numpy(),
        "negation": texts.str.contains(NEGATION).to_numpy(),
        "url": texts.str.contains(URL).to_numpy(),
        "hashtag": texts.str.contains(HASHTAG).to_numpy(),
    }
    sources = frame["source"] if "source" in frame else pd.Series([None] * len(frame))
    times = frame["created_at"] if "created_at" in frame else pd.Series([None] * len(frame))
    if "source" in frame:
        masks["sarcasm"] = sources.astype(str).str.contains(SARCASM_SOURCE, regex=False).to_numpy()
    years = np.array([source_year(s, t) for s, t in zip(sources, times, strict=True)])
    for year in sorted(set(years)):
        masks[f"year:{year}"] = years == year
    return masks


def macro_recall_present_classes(y_true: Sequence[str], y_pred: Sequence[str]
                                  ) -> float | None:
    """Macro recall over the labels present in `y_true` (a slice may lack a class: an absent
    class must not count as a recall of 0); None for an empty slice."""
    present = [label for label in LABELS if label in set(y_true)]
    if not present:
        return None
    return float(recall_score(list(y_true), list(y_pred), labels=present, average="macro",
                              zero_division=0))


def slice_scores(frame: pd.DataFrame, candidate: Sequence[str],
                 champion: Sequence[str] | None = None) -> list[SliceScore]:
    """Per slice: n and macro recall of the candidate (and champion, when given) on `frame`'s
    `label` column."""
    truth = frame["label"].to_numpy()
    candidate_labels = np.asarray(candidate)
    champion_labels = None if champion is None else np.asarray(champion)
    scores = []
    for name, mask in slice_masks(frame).items():
        scores.append(SliceScore(
            name, int(mask.sum()),
            macro_recall_present_classes(truth[mask], candidate_labels[mask]),
            None if champion_labels is None
            else macro_recall_present_classes(truth[mask], champion_labels[mask])))
    return scores


def worst_confusions(frame: pd.DataFrame, predictions: pd.DataFrame, top: int = 3,
                     examples: int = 5) -> list[dict]:
    """The `top` most frequent (true, predicted) error pairs, each with its count and the
    `examples` texts the model got wrong most confidently."""
    truth = frame["label"].to_numpy()
    predicted = predictions["label"].to_numpy()
    wrong = truth != predicted
    pairs = pd.Series(list(zip(truth[wrong], predicted[wrong], strict=True)),
                      dtype=object).value_counts()
    texts = frame["text"].astype(str).to_numpy()
    result = []
    for (true_label, predicted_label), count in pairs.head(top).items():
        rows = np.flatnonzero((truth == true_label) & (predicted == predicted_label))
        confidence = predictions[f"p_{predicted_label}"].to_numpy()[rows]
        chosen = rows[np.argsort(-confidence, kind="stable")[:examples]]
        result.append({"true": true_label, "predicted": predicted_label, "count": int(count),
                       "examples": [{"text": texts[i],
                                     "p": round(float(predictions[f"p_{predicted_label}"]
                                                      .iloc[i]), 3)} for i in chosen]})
    return result
