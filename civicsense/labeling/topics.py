"""The reform topics a post belongs to: the extension's default topics and its matching rule,
in Python, so the labeling queue can spread its picks across the topics readers see.

The keyword lists are the ones in extension/lib/settings.js (DEFAULT_TOPICS) and the rule is
extension/lib/topics.js's: case-insensitive whole words, curly apostrophes and dashes
normalized, a trailing `*` matching any ending. tests/code/labeling/test_topics.py keeps the
two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

NO_TOPIC = "none"


@dataclass(frozen=True)
class Topic:
    id: str
    name: str
    keywords: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic("abortion", "Abortion", (
        "abortion*", "pro-life", "prolife", "pro-choice", "prochoice", "roe v wade",
        "roe v. wade", "planned parenthood", "unborn", "fetus", "reproductive rights",
        "bodily autonomy")),
    Topic("climate", "Climate", (
        "climate", "global warming", "carbon", "emissions", "fossil fuel*", "renewable*",
        "greenhouse", "paris agreement", "net zero", "heatwave*", "solar", "wind farm*")),
    Topic("feminism", "Feminism", (
        "feminis*", "gender equality", "women's rights", "misogyn*", "patriarchy",
        "equal pay", "gender pay gap", "#metoo", "metoo", "sexism", "sexist")),
    Topic("religion", "Atheism/religion", (
        "atheis*", "religion*", "religious", "god", "church*", "faith", "secular*",
        "bible", "prayer*", "pray", "christian*", "muslim*", "islam", "theology")),
    Topic("elections", "Elections", (
        "election*", "vote", "votes", "voting", "voter*", "ballot*", "candidate*",
        "campaign*", "polling", "democrat*", "republican*", "electoral", "referendum")),
)

_APOSTROPHES = re.compile("[\u2018\u2019\u02bc]")
_DASHES = re.compile("[\u2010-\u2015]")
# JS's (?<![\p{L}\p{N}]) / (?![\p{L}\p{N}]): not preceded / followed by a letter or digit.
_NOT_AFTER_WORD, _NOT_BEFORE_WORD = r"(?<![^\W_])", r"(?![^\W_])"


def normalize_text(text: str) -> str:
    """Lower case, the same apostrophe and dash everywhere ("women’s" matches "women's")."""
    return _DASHES.sub("-", _APOSTROPHES.sub("'", str(text).lower()))


def _keyword_body(keyword: str) -> str:
    k = normalize_text(keyword).strip()
    prefix = k.endswith("*")
    if prefix:
        k = k[:-1]
    body = r"\s+".join(re.escape(word) for word in k.split())
    return body + ("" if prefix else _NOT_BEFORE_WORD)


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """One keyword's pattern: whole words (any whitespace between them), `*` = any ending."""
    return re.compile(_NOT_AFTER_WORD + _keyword_body(keyword))


@cache
def _compiled() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """One pattern per topic: any of its keywords (the same rule, one search per topic)."""
    return tuple((t.id, re.compile(_NOT_AFTER_WORD + "(?:" + "|".join(
        _keyword_body(k) for k in t.keywords) + ")")) for t in TOPICS)


def match_topics(text: str) -> list[str]:
    """The ids of the topics the text mentions, in TOPICS order (empty: none)."""
    norm = normalize_text(text)
    return [tid for tid, pattern in _compiled() if pattern.search(norm)]


def primary_topic(text: str) -> str:
    """The first topic the text mentions, or NO_TOPIC: the stratum the queue spreads over."""
    found = match_topics(text)
    return found[0] if found else NO_TOPIC
