"""`python benchmarks/bench_featurize.py`: featurizing adversarial and normal texts, linear VADER
(what the featurizer runs) against vaderSentiment 3.3.2's own analyzer (what it ran before).

Prints the median of --repeats runs for one text of 2,000 emoji (issue 12's target: ≤ 50 ms for
the whole `describe`), 2,000 plain characters, and a tweet; the old analyzer is timed once per
text (it takes seconds on the emoji text)."""

from __future__ import annotations

import argparse
import os
import statistics
import time

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from civicsense.features.featurizer import describe
from civicsense.features.vader_linear import LinearSentimentAnalyzer

TEXTS = {
    "2,000 emoji": "😀" * 2000,
    "2,000 emoji + negations": "not 😀 but " * 200,
    "2,000 plain chars": ("the reform is not bad at all " * 70)[:2000],
    "a tweet": "I don't love this reform, but it is NOT a disaster either!! :) #pensions",
}


def median_ms(function, argument, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args(argv)
    old, linear = SentimentIntensityAnalyzer(), LinearSentimentAnalyzer()
    describe(["warm up"])
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; medians of "
          f"{args.repeats} runs (old VADER: 1 run)")
    print("| text | describe() now | linear VADER | vaderSentiment 3.3.2 |")
    print("|---|---:|---:|---:|")
    for name, text in TEXTS.items():
        assert linear.polarity_scores(text) == old.polarity_scores(text)
        now = median_ms(lambda t: describe([t]), text, args.repeats)
        fast = median_ms(linear.polarity_scores, text, args.repeats)
        slow = median_ms(old.polarity_scores, text, 1)
        print(f"| {name} | {now:.1f} ms | {fast:.1f} ms | {slow:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
