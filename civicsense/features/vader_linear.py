"""VADER's polarity scores (vaderSentiment 3.3.2) in time linear in the text's length.

vaderSentiment lower-cases the whole token list again for every lexicon word it checks for
negations and idioms, and its "but" rule looks every score up with `list.index`: both are
quadratic in tokens, so one tweet of 2,000 emoji (each one expanded to its description) took
seconds. This is the same algorithm with the lower-cased tokens computed once and the "but"
rule kept exact by an index of positions per value; the scores are identical (see
tests/data/test_vader_linear.py). The rules and constants are vaderSentiment's (MIT licence,
C.J. Hutto); only the bookkeeping differs.
"""

from __future__ import annotations

import heapq

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    SentiText,
    negated,
    scalar_inc_dec,
)


def expand_emoji(text: str, emojis: dict[str, str]) -> str:
    """Each emoji replaced by its description, spaced as vaderSentiment spaces it."""
    parts: list[str] = []
    prev_space = True
    for char in text:
        if char in emojis:
            if not prev_space:
                parts.append(" ")
            parts.append(emojis[char])
            prev_space = False
        else:
            parts.append(char)
            prev_space = char == " "
    return "".join(parts).strip()


def but_check(lower: list[str], sentiments: list[float]) -> list[float]:
    """vaderSentiment's "but" rule, exactly: for each position k in order, the FIRST position j
    whose current score equals the score at k is halved (before the first "but") or raised by
    half (after it). vaderSentiment finds j with `list.index` (quadratic); here a min-heap of
    positions per current value finds it (O(n log n))."""
    if "but" not in lower:
        return sentiments
    but_at = lower.index("but")
    positions: dict[float, list[int]] = {}
    for index, value in enumerate(sentiments):
        positions.setdefault(value, []).append(index)  # ascending: already a heap

    def first(value: float) -> int:
        heap = positions[value]
        while sentiments[heap[0]] != value:  # stale: that position's score has changed
            heapq.heappop(heap)
        return heap[0]

    for k in range(len(sentiments)):
        value = sentiments[k]  # positions >= k still hold their original score
        j = first(value)
        if j == but_at:
            continue
        new = value * 0.5 if j < but_at else value * 1.5
        sentiments[j] = new
        heapq.heappush(positions.setdefault(new, []), j)
    return sentiments


def negation_check(valence: float, lower: list[str], start_i: int, i: int) -> float:
    """vaderSentiment's _negation_check on the already lower-cased tokens."""
    if start_i == 0 and negated([lower[i - 1]]):
        valence = valence * N_SCALAR
    if start_i == 1:
        if lower[i - 2] == "never" and (lower[i - 1] == "so" or lower[i - 1] == "this"):
            valence = valence * 1.25
        elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
            pass
        elif negated([lower[i - 2]]):
            valence = valence * N_SCALAR
    if start_i == 2:
        if (lower[i - 3] == "never" and (lower[i - 2] == "so" or lower[i - 2] == "this")
                or (lower[i - 1] == "so" or lower[i - 1] == "this")):
            valence = valence * 1.25
        elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
            pass
        elif negated([lower[i - 3]]):
            valence = valence * N_SCALAR
    return valence


def special_idioms_check(valence: float, lower: list[str], i: int) -> float:
    """vaderSentiment's _special_idioms_check on the already lower-cased tokens."""
    onezero = f"{lower[i - 1]} {lower[i]}"
    twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
    twoone = f"{lower[i - 2]} {lower[i - 1]}"
    threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
    threetwo = f"{lower[i - 3]} {lower[i - 2]}"
    for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    if len(lower) - 1 > i:
        zeroone = f"{lower[i]} {lower[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if len(lower) - 1 > i + 1:
        zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


class LinearSentimentAnalyzer(SentimentIntensityAnalyzer):
    """SentimentIntensityAnalyzer whose polarity_scores is linear in the text's length (same
    lexicons, same scores)."""

    def polarity_scores(self, text: str) -> dict[str, float]:
        text = expand_emoji(text, self.emojis)
        sentitext = SentiText(text)
        words = sentitext.words_and_emoticons
        lower = [str(word).lower() for word in words]
        sentiments: list[float] = []
        for i, item in enumerate(words):
            if lower[i] in BOOSTER_DICT or (i < len(words) - 1 and lower[i] == "kind"
                                            and lower[i + 1] == "of"):
                sentiments.append(0)
                continue
            sentiments.append(self._valence(sentitext.is_cap_diff, words, lower, item, i))
        sentiments = but_check(lower, sentiments)
        return self.score_valence(sentiments, text)

    def _valence(self, is_cap_diff: bool, words: list[str], lower: list[str], item: str,
                 i: int) -> float:
        """vaderSentiment's sentiment_valence for token i, reading the lower-cased tokens."""
        lexicon = self.lexicon
        item_lower = lower[i]
        if item_lower not in lexicon:
            return 0
        valence = lexicon[item_lower]
        if item_lower == "no" and i != len(words) - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if ((i > 0 and lower[i - 1] == "no") or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ["or", "nor"])):
            valence = lexicon[item_lower] * N_SCALAR
        if item.isupper() and is_cap_diff:
            valence = valence + C_INCR if valence > 0 else valence - C_INCR
        for start_i in range(3):
            if i > start_i and lower[i - (start_i + 1)] not in lexicon:
                s = scalar_inc_dec(words[i - (start_i + 1)], valence, is_cap_diff)
                if start_i == 1 and s != 0:
                    s = s * 0.95
                if start_i == 2 and s != 0:
                    s = s * 0.9
                valence = valence + s
                valence = negation_check(valence, lower, start_i, i)
                if start_i == 2:
                    valence = special_idioms_check(valence, lower, i)
        return self._least(valence, lower, i)

    def _least(self, valence: float, lower: list[str], i: int) -> float:
        """vaderSentiment's _least_check on the already lower-cased tokens."""
        if i > 1 and lower[i - 1] not in self.lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * N_SCALAR
        elif i > 0 and lower[i - 1] not in self.lexicon and lower[i - 1] == "least":
            valence = valence * N_SCALAR
        return valence
