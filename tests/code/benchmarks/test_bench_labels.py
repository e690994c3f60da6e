"""benchmarks/bench_labels.py: its data plumbing (file selection, gold-label join, the 2016
scoring set's dedupe, Label Studio export, medians and gains) on small files of our own; the
whole story once in --quick mode (e2e: it trains three small models)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pandas as pd
import pytest

from civicsense.monitoring.feedback_log import post_key
from tests_support import ROOT, require_mirror_dir

SPEC = importlib.util.spec_from_file_location("bench_labels", ROOT / "benchmarks" /
                                              "bench_labels.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)
ID = 300_000_000_000_000_000  # a 2013-era tweet id (the readers derive created_at from it)


def write_semeval(path, rows):
    path.write_text("".join(f"{ID + n}\t{label}\t{text}\n" for n, label, text in rows))
    return path


def test_mirror_files_refuse_held_out_test_files_and_absent_ones(tmp_path):
    (tmp_path / "twitter-2013dev-A.txt").write_text("")
    assert bench.mirror_files(["twitter-2013dev-A.txt"], tmp_path) == [
        tmp_path / "twitter-2013dev-A.txt"]
    for name in ("SemEval2017-task4-test.subtask-A.english.txt", "test_text.txt"):
        with pytest.raises(ValueError, match="held-out"):
            bench.mirror_files([name], tmp_path)
    with pytest.raises(FileNotFoundError):
        bench.mirror_files(["twitter-2016dev-A.txt"], tmp_path)


def test_the_benchmark_names_only_training_files_of_the_mirror():
    names = bench.BASE_FILES + bench.TRAFFIC_FILES + bench.SCORING_FILES
    assert not any("2017" in name or "2016test" in name for name in names)
    assert set(bench.BASE_FILES).isdisjoint(bench.SCORING_FILES)


def test_load_gold_keys_posts_by_text_and_drops_texts_with_conflicting_labels(tmp_path):
    source = write_semeval(tmp_path / "a.txt", [
        (1, "positive", "good day"), (2, "positive", "good day"),  # same text, agreeing
        (3, "negative", "bad"), (4, "positive", "bad"),  # same text, disagreeing
        (5, "neutral", '"quoted meh"')])
    gold = bench.load_gold([source])
    assert sorted(gold["text"]) == ["good day", "quoted meh"]  # ingest's clean text
    assert list(gold["post_key"]) == [post_key(t) for t in gold["text"]]
    assert gold.set_index("text").loc["good day", "post_id"] == str(ID + 1)


def test_scoring_set_drops_posts_seen_by_id_or_by_text():
    def frame(rows):
        return pd.DataFrame(rows, columns=["post_id", "text"]).assign(
            post_key=lambda f: f["text"].map(post_key))

    candidates = frame([("1", "new post"), ("2", "trained text"), ("3", "other"),
                        ("4", "fresh")])
    seen = frame([("9", "trained text")]), frame([("3", "a different text, same id")])
    assert list(bench.scoring_set(candidates, *seen)["post_id"]) == ["1", "4"]


def task(text, label="neutral"):
    return {"data": {"text": text, "post_key": post_key(text), "model_version": "1+abc",
                     "topic": "none", "day": "2026-12-03", "reason": "uncertainty"},
            "predictions": [{"model_version": "1+abc", "score": 0.4, "result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices",
                 "value": {"choices": [label]}}]}]}


def test_annotate_writes_the_gold_label_in_label_studio_export_form():
    gold = pd.DataFrame({"text": ["I love it", "I hate it"], "label": ["positive", "negative"]})
    gold["post_key"] = gold["text"].map(post_key)
    tasks = [task("I love it"), task("I hate it", "positive"), task("never seen")]
    tasks[1]["data"].pop("post_key")  # joined by the text's hash then
    export, missing = bench.annotate(tasks, gold)
    assert missing == 1 and len(export) == 2
    choices = [t["annotations"][0]["result"][0]["value"]["choices"] for t in export]
    assert choices == [["positive"], ["negative"]]  # the gold, not the pre-annotation
    assert all(not t["annotations"][0]["was_cancelled"] for t in export)
    assert export[0]["data"]["post_key"] == post_key("I love it")
    assert export[0]["predictions"] == tasks[0]["predictions"]


def test_summarize_takes_medians_and_gains_per_100_labels():
    arms = [{"budget": 500, "strategy": "uncertainty", "seed": s, "macro_recall": r}
            for s, r in enumerate([0.62, 0.60, 0.64])]
    arms += [{"budget": 500, "strategy": "random", "seed": s, "macro_recall": r}
             for s, r in enumerate([0.61, 0.59, 0.70])]
    row = bench.summarize(0.58, arms)["budgets"]["500"]
    assert row["uncertainty"]["median"] == 0.62 and row["random"]["median"] == 0.61
    assert row["uncertainty"]["gain"] == 0.04
    assert row["uncertainty"]["gain_per_100_labels"] == 0.008
    assert row["uncertainty_minus_random"] == 0.01
    text = bench.table(bench.summarize(0.58, arms))
    assert "| 500 | uncertainty | 3 | 0.6200 | +0.0400 | +0.0080 |" in text


@pytest.mark.e2e
def test_quick_mode_tells_the_whole_story(tmp_path):
    require_mirror_dir()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_labels.py"),
                           "--quick", "--home", str(tmp_path)], capture_output=True, text=True,
                          timeout=1500, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "bench-labels.json").read_text())
    assert figures["traffic"]["logged"] == figures["traffic"]["sent"] == 400
    assert figures["drift"]["exit_code"] in (0, 1)
    assert {a["strategy"] for a in figures["arms"]} == {"uncertainty", "random"}
    assert all(a["labels"] == 50 and a["no_gold"] == 0 for a in figures["arms"])
    assert all(a["labels_in_split"]["train"] > 0 for a in figures["arms"])  # random split
    assert len({a["home"] for a in figures["arms"]}) == 2  # each arm its own registry
    assert "| 50 | uncertainty | 1 |" in done.stdout
    if figures["plot"]:  # matplotlib in the venv
        assert (tmp_path / "bench-labels.png").read_bytes()[:4] == b"\x89PNG"
