"""Unit tests of the CheckList-style behaviour suites, on a keyword model built here."""

import pandas as pd
import pytest

from civicsense.training.behaviour import (
    SUITES,
    Case,
    behaviour_failures,
    check_case,
    elongate,
    run_suites,
    swap_typo,
)

POSITIVE_WORDS = ("good", "great", "wonderful", "amazing", "excellent", "😍", "😊")
NEGATIVE_WORDS = ("bad", "terrible", "awful", "horrible", "disgusting", "😡", "😢")


def keyword_model(texts):
    """Positive/negative by keyword, "not" flips, everything else neutral."""
    rows = []
    for text in texts:
        lower = text.lower()
        score = sum(w in lower for w in POSITIVE_WORDS) - sum(w in lower for w in NEGATIVE_WORDS)
        if " not " in lower:
            score = -score
        label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
        p = {"negative": 0.1, "neutral": 0.1, "positive": 0.1}
        p[label] = 0.8
        rows.append({"label": label, **{f"p_{k}": v for k, v in p.items()}})
    return pd.DataFrame(rows)


def test_elongate_and_typo():
    assert elongate("good") == "gooooood" and elongate("great") == "greaaaaat"
    assert swap_typo("amazing") == "amzaing" and swap_typo("bad") == "bad"


def test_every_suite_has_templated_cases_with_bases_where_pairwise():
    for name, make in SUITES.items():
        cases = make()
        assert len(cases) >= 20, name
        for case in cases:
            pairwise = any(r.split(":")[0] in {"same", "less", "not_less"} for r in case.rules)
            assert (case.base is not None) == pairwise, case


@pytest.mark.parametrize("rules,row,base,ok", [
    (("is:positive",), {"label": "positive"}, None, True),
    (("is_not:positive",), {"label": "positive"}, None, False),
    (("same:",), {"label": "neutral"}, {"label": "positive"}, False),
    (("less:positive",), {"label": "x", "p_positive": 0.2}, {"label": "x", "p_positive": 0.7},
     True),
    (("not_less:negative",), {"label": "x", "p_negative": 0.695},
     {"label": "x", "p_negative": 0.7}, True),
    (("not_less:negative",), {"label": "x", "p_negative": 0.5},
     {"label": "x", "p_negative": 0.7}, False),
])
def test_check_case_rules(rules, row, base, ok):
    assert check_case(Case("t", rules, "b" if base else None), row, base) is ok


def test_run_suites_scores_the_keyword_model():
    results = {r.name: r for r in run_suites(keyword_model, {"typos_elongations": 0.9})}
    assert results["negation"].pass_rate == 1.0
    assert results["neutral_facts"].pass_rate == 1.0
    assert results["emoji_only"].pass_rate == pytest.approx(4 / 16)  # knows 2 of 8 each side
    typos = results["typos_elongations"]
    assert typos.pass_rate < 0.9 and not typos.ok and typos.failures
    assert results["negation"].min_pass_rate == 1.0  # unconfigured: every case must pass
    reasons = behaviour_failures([r.to_dict() for r in results.values()])
    assert any(reason.startswith("behaviour typos_elongations") for reason in reasons)
    assert not any("negation" in reason for reason in reasons)


def test_run_suites_predicts_in_one_batch_of_unique_texts():
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return keyword_model(texts)

    run_suites(counting, {})
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0]))
