"""Behaviour tests in the style of CheckList: templated suites (negation flips, intensifiers,
emoji-only texts, typos and elongations, neutral facts), run on any model that maps texts to
a label and p_* columns, each suite with a minimum pass rate."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product

import pandas as pd

# A directional check passes when the probability moves the right way, allowing this much noise.
DIRECTION_TOLERANCE = 0.01
NOUNS = ("law", "decision", "new policy", "reform", "vote", "plan")
POSITIVE = ("good", "great", "wonderful", "amazing", "excellent")
NEGATIVE = ("bad", "terrible", "awful", "horrible", "disgusting")
INTENSIFIERS = ("really", "extremely", "so", "incredibly")
POSITIVE_EMOJI = ("😍", "😊", "😀", "❤️", "👍", "🎉", "🥰", "😁")
NEGATIVE_EMOJI = ("😡", "😠", "😢", "😭", "👎", "💔", "🤬", "😞")
BODIES = ("The committee", "Parliament", "The city council", "The senate", "The board")
FACTS = ("{body} meets on {day} at 10am.", "{body} will vote on the budget on {day}.",
         "{body} publishes its report on {day}.", "{body} moved the hearing to {day}.")
DAYS = ("Monday", "Tuesday", "Thursday")


@dataclass(frozen=True)
class Case:
    """One test: the text, its unperturbed base (for pairwise checks), and the rules it must
    meet, each `kind:label` — is, is_not, same (label as the base), less / not_less (p_label
    against the base's)."""

    text: str
    rules: tuple[str, ...]
    base: str | None = None


@dataclass
class SuiteResult:
    name: str
    cases: int
    passed: int
    min_pass_rate: float
    failures: list[str] = field(default_factory=list)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 1.0

    @property
    def ok(self) -> bool:
        return self.pass_rate >= self.min_pass_rate - 1e-9

    def to_dict(self) -> dict:
        return asdict(self) | {"pass_rate": round(self.pass_rate, 4), "ok": self.ok}


def elongate(word: str) -> str:
    """Stretch the word's last vowel (good → goooood), as people type in tweets."""
    for i in range(len(word) - 1, -1, -1):
        if word[i] in "aeiou":
            return word[: i + 1] + word[i] * 4 + word[i + 1:]
    return word + word[-1] * 3


def swap_typo(word: str) -> str:
    """Swap two adjacent letters in the middle of the word (amazing → amzaing)."""
    if len(word) < 4:
        return word
    i = len(word) // 2 - 1
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def negation_cases() -> list[Case]:
    """"The law is good" → "The law is not good": p_positive drops and it is not positive;
    "… is not bad": p_negative drops."""
    cases = [Case(f"The {noun} is not {adj}.", ("less:positive", "is_not:positive"),
                  f"The {noun} is {adj}.") for noun, adj in product(NOUNS, POSITIVE)]
    cases += [Case(f"The {noun} is not {adj}.", ("less:negative",), f"The {noun} is {adj}.")
              for noun, adj in product(NOUNS, NEGATIVE[:3])]
    return cases


def intensifier_cases() -> list[Case]:
    """"The law is good" → "The law is really good": same label, polarity not weaker."""
    cases = []
    for (adjectives, polarity), noun, intensifier in product(
            ((POSITIVE[:3], "positive"), (NEGATIVE[:3], "negative")), NOUNS[:3], INTENSIFIERS):
        for adj in adjectives:
            cases.append(Case(f"The {noun} is {intensifier} {adj}.",
                              ("same:", f"not_less:{polarity}"), f"The {noun} is {adj}."))
    return cases


def emoji_cases() -> list[Case]:
    """Texts of nothing but emoji: 😍😍 is positive, 😡 negative."""
    return [Case(emoji * count, (f"is:{label}",))
            for emojis, label in ((POSITIVE_EMOJI, "positive"), (NEGATIVE_EMOJI, "negative"))
            for emoji in emojis for count in (1, 3)]


def typo_cases() -> list[Case]:
    """Elongations ("soooo good", "terrrrible") and swapped letters keep the label."""
    cases = []
    for noun, adj in product(NOUNS[:4], POSITIVE + NEGATIVE):
        base = f"This {noun} is so {adj}"
        cases.append(Case(f"This {noun} is soooo {elongate(adj)}", ("same:",), base))
        cases.append(Case(f"This {noun} is so {swap_typo(adj)}", ("same:",), base))
    return cases


def neutral_cases() -> list[Case]:
    """Plain facts about institutions and dates are neutral."""
    return [Case(template.format(body=body, day=day), ("is:neutral",))
            for template, body, day in product(FACTS, BODIES, DAYS)]


SUITES: dict[str, Callable[[], list[Case]]] = {
    "negation": negation_cases, "intensifiers": intensifier_cases, "emoji_only": emoji_cases,
    "typos_elongations": typo_cases, "neutral_facts": neutral_cases,
}


def check_case(case: Case, row: Mapping, base: Mapping | None) -> bool:
    """Whether the prediction `row` (label, p_*) meets every rule of `case`."""
    for rule in case.rules:
        kind, _, label = rule.partition(":")
        if kind == "is" and row["label"] != label:
            return False
        if kind == "is_not" and row["label"] == label:
            return False
        if kind == "same" and row["label"] != base["label"]:
            return False
        if kind == "less" and not row[f"p_{label}"] < base[f"p_{label}"]:
            return False
        if kind == "not_less" and row[f"p_{label}"] < base[f"p_{label}"] - DIRECTION_TOLERANCE:
            return False
    return True


def run_suites(predict: Callable[[list[str]], pd.DataFrame],
               min_pass_rates: Mapping[str, float],
               suites: Mapping[str, Callable[[], list[Case]]] | None = None,
               failures_kept: int = 5) -> list[SuiteResult]:
    """Run every suite with one batched `predict` (texts → label and p_* columns); a suite
    without a configured rate must pass every case."""
    suites = SUITES if suites is None else suites
    built = {name: make() for name, make in suites.items()}
    texts = sorted({t for cases in built.values() for c in cases for t in (c.text, c.base) if t})
    frame = predict(texts).reset_index(drop=True)
    rows = {text: frame.iloc[i].to_dict() for i, text in enumerate(texts)}
    results = []
    for name, cases in built.items():
        result = SuiteResult(name, len(cases), 0, float(min_pass_rates.get(name, 1.0)))
        for case in cases:
            base = rows[case.base] if case.base else None
            if check_case(case, rows[case.text], base):
                result.passed += 1
            elif len(result.failures) < failures_kept:
                got = rows[case.text]["label"]
                result.failures.append(f"{case.text!r} → {got}" + (
                    f" (base {case.base!r} → {base['label']})" if base else ""))
        results.append(result)
    return results


def behaviour_failures(results: Sequence[dict]) -> list[str]:
    """Readable reasons for the suites below their minimum pass rate (from to_dict() rows)."""
    return [f"behaviour {r['name']} {r['pass_rate']:.2f} < {r['min_pass_rate']:.2f}"
            for r in results if not r["ok"]]
