"""`make bench-labels`: do new labels make the retrained model better on drifted traffic?

The story of issue 14 replayed with the mirror's own gold labels standing in for annotators:
  1. a champion trained on the 2013 SemEval files only (`civicsense run --data <links>`)
  2. the 2015 files sent through the running server (`civicsense serve`) as traffic: the payload
     log fills
  3. `civicsense monitor --no-trigger` on that window: the drift share
  4. for each budget, strategy (uncertainty, random) and seed: `export_tasks` picks the posts,
     the mirror's gold labels for them (joined by post_key) make a Label Studio JSON export,
     `import_labels` turns it into a labelled snapshot in an arm's own home, and the real
     pipeline retrains on the 2013 files + that snapshot (`civicsense run --labels`)
  5. old and every new model scored on 2016 posts (train/dev/devtest) that none trained on:
     deduplicated by tweet id and by text against the 2013 and 2015 files (macro-averaged
     recall, the primary metric)
Medians over seeds, the gain of uncertainty over random sampling, the gain per 100 labels: a
table on stdout, JSON (and a plot when matplotlib is in the venv) under the bench's home.
Never the SemEval-2017 test set (it is not in the mirror; the file names below are fixed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from civicsense.settings import MIRROR_DATA, Settings

BASE_FILES = ("twitter-2013train-A.txt", "twitter-2013dev-A.txt")
TRAFFIC_FILES = ("twitter-2015train-A.txt", "twitter-2015test-A.txt")
SCORING_FILES = ("twitter-2016train-A.txt", "twitter-2016dev-A.txt", "twitter-2016devtest-A.txt")
QUICK_BASE_FILES = ("twitter-2013dev-A.txt",)  # --quick: a small base, seconds to train
STRATEGIES = ("uncertainty", "random")
ANNOTATOR = "mirror-gold"
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------- data plumbing (unit-tested)

def mirror_files(names: Sequence[str], mirror: Path = MIRROR_DATA) -> list[Path]:
    """The named mirror files, refusing anything that could be the SemEval-2017 test set."""
    paths = []
    for name in names:
        if "2017" in name or name.startswith("test_"):  # SemEval-2017 / TweetEval test
            raise ValueError(f"{name}: a held-out test file; this benchmark never reads it")
        path = mirror / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not in the data mirror")
        paths.append(path)
    return paths


def link_files(paths: Iterable[Path], folder: Path) -> Path:
    """A folder of symlinks to exactly these files (what `civicsense run --data` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        (folder / path.name).unlink(missing_ok=True)  # a resumed bench home links again
        (folder / path.name).symlink_to(path.resolve())
    return folder


def load_gold(paths: Sequence[Path]) -> pd.DataFrame:
    """The accepted rows of these files as ingest reads them (clean text, id-derived time) plus
    `post_key` (the loop's identity of a post: its text's hash). A text carried by several
    rows keeps one row when they agree on the label and none when they disagree."""
    from civicsense.data.ingest import ingest
    from civicsense.monitoring.feedback_log import post_key

    with tempfile.TemporaryDirectory() as folder:
        frame = ingest(link_files(paths, Path(folder)), progress=False).accepted
    frame = frame.assign(post_key=[post_key(text) for text in frame["text"]])
    labels = frame.groupby("post_key")["label"].nunique()
    agreed = frame[frame["post_key"].map(labels) == 1]
    return agreed.drop_duplicates("post_key").reset_index(drop=True)


def scoring_set(candidates: pd.DataFrame, *seen: pd.DataFrame) -> pd.DataFrame:
    """`candidates` minus every post whose tweet id or text (post_key) occurs in a `seen` frame."""
    ids = set().union(*(set(frame["post_id"]) for frame in seen))
    keys = set().union(*(set(frame["post_key"]) for frame in seen))
    keep = ~candidates["post_id"].isin(ids) & ~candidates["post_key"].isin(keys)
    return candidates[keep].reset_index(drop=True)


def annotate(tasks: Sequence[Mapping], gold: pd.DataFrame, annotator: str = ANNOTATOR
             ) -> tuple[list[dict], int]:
    """Label Studio's JSON export of `tasks` (its import format) annotated with the gold label
    of each task's post (by data.post_key, else the hash of data.text); tasks without a gold
    label are left out. Returns the export and how many were left out."""
    from civicsense.monitoring.feedback_log import post_key

    label_of = dict(zip(gold["post_key"], gold["label"], strict=True))
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    export, missing = [], 0
    for number, task in enumerate(tasks, start=1):
        data = dict(task["data"])
        label = label_of.get(data.get("post_key") or post_key(data["text"]))
        if label is None:
            missing += 1
            continue
        result = [{"id": f"r{number}", "from_name": "sentiment", "to_name": "text",
                   "type": "choices", "origin": "manual", "value": {"choices": [label]}}]
        export.append({
            "id": number, "data": data, "meta": {}, "project": 1, "inner_id": number,
            "created_at": now, "updated_at": now, "total_annotations": 1,
            "cancelled_annotations": 0, "total_predictions": len(task.get("predictions", [])),
            "predictions": list(task.get("predictions", [])), "drafts": [],
            "annotations": [{"id": number, "completed_by": {"id": 1, "email": annotator},
                             "result": result, "was_cancelled": False, "ground_truth": False,
                             "created_at": now, "updated_at": now, "lead_time": 1.0,
                             "task": number, "project": 1}]})
    return export, missing


def labels_in_split(home: Path, label_keys: set[str]) -> dict[str, int]:
    """How many labelled posts the latest pipeline run in `home` put in its train and its
    validation split (from feature build's entity rows), and how many the plain time split
    (latest 20% by created_at, before sample_and_split) would have put in train."""
    from civicsense.data.split import assign_split

    runs = sorted((home / "pipeline-runs").glob("civicsense-training-*/feature-build-op/entities"),
                  key=lambda path: path.stat().st_mtime)
    if not runs:
        return {}
    entities = pd.read_parquet(runs[-1], columns=["post_id", "created_at", "split"])
    labelled = entities["post_id"].isin(label_keys)
    counts = entities[labelled]["split"].value_counts()
    by_time = assign_split(entities, "time", 0.2)
    return {"train": int(counts.get("train", 0)), "validation": int(counts.get("validation", 0)),
            "train_if_time_split": int((labelled & (by_time == "train")).sum())}


def labels_key(snapshot_file: Path) -> str:
    """The labels a snapshot holds (post, label, text), whatever their times: two arms with the
    same labels train the same model (training is seeded), so the second reuses the first's."""
    import hashlib

    frame = pd.read_parquet(snapshot_file, columns=["post_id", "label", "text"])
    rows = sorted(zip(frame["post_id"], frame["label"], frame["text"], strict=True))
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def summarize(old: float, arms: Sequence[Mapping]) -> dict:
    """Medians over seeds per (budget, strategy), their gains over the old champion, the gain
    of uncertainty over random sampling and each gain per 100 labels. `arms` rows hold
    budget, strategy, seed, macro_recall."""
    out: dict = {"old_champion": round(old, 4), "budgets": {}}
    for budget in sorted({arm["budget"] for arm in arms}):
        row: dict = {}
        for strategy in STRATEGIES:
            scores = [a["macro_recall"] for a in arms
                      if a["budget"] == budget and a["strategy"] == strategy]
            if not scores:
                continue
            median = statistics.median(scores)
            row[strategy] = {"seeds": len(scores), "scores": [round(s, 4) for s in scores],
                             "median": round(median, 4), "gain": round(median - old, 4),
                             "gain_per_100_labels": round((median - old) * 100 / budget, 4)}
        if len(row) == len(STRATEGIES):
            diff = row["uncertainty"]["median"] - row["random"]["median"]
            row["uncertainty_minus_random"] = round(diff, 4)
            row["uncertainty_minus_random_per_100_labels"] = round(diff * 100 / budget, 4)
        out["budgets"][str(budget)] = row
    return out


def table(summary: Mapping) -> str:
    """The figures as a Markdown table (what the README carries)."""
    lines = ["| budget | strategy | seeds | macro recall (median) | gain vs old | "
             "gain / 100 labels |", "| --- | --- | --- | --- | --- | --- |",
             f"| 0 | old champion (2013 only) | - | {summary['old_champion']:.4f} | - | - |"]
    for budget, row in summary["budgets"].items():
        for strategy in STRATEGIES:
            if strategy in row:
                cell = row[strategy]
                lines.append(f"| {budget} | {strategy} | {cell['seeds']} | {cell['median']:.4f} "
                             f"| {cell['gain']:+.4f} | {cell['gain_per_100_labels']:+.4f} |")
        if "uncertainty_minus_random" in row:
            lines.append(f"| {budget} | uncertainty − random | | | "
                         f"{row['uncertainty_minus_random']:+.4f} | "
                         f"{row['uncertainty_minus_random_per_100_labels']:+.4f} |")
    return "\n".join(lines)


def plot(summary: Mapping, arms: Sequence[Mapping], path: Path) -> bool:
    """Macro recall per seed and median per strategy against the budget; False without
    matplotlib in the venv."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.axhline(summary["old_champion"], color="grey", linestyle="--", label="old champion")
    for strategy, colour in zip(STRATEGIES, ("tab:blue", "tab:orange"), strict=True):
        own = [a for a in arms if a["strategy"] == strategy]
        axes.scatter([a["budget"] for a in own], [a["macro_recall"] for a in own],
                     color=colour, alpha=0.4, s=18)
        budgets = sorted(int(b) for b, row in summary["budgets"].items() if strategy in row)
        medians = [summary["budgets"][str(b)][strategy]["median"] for b in budgets]
        axes.plot([0, *budgets], [summary["old_champion"], *medians], marker="o",
                  color=colour, label=f"{strategy} (median)")
    axes.set_xlabel("labels added (budget)")
    axes.set_ylabel("macro recall, unseen 2016 posts")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


# ---------------------------------------------------------------- the story (real processes)

def civicsense(args: list[str], home: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`civicsense ARGS` with its own CIVICSENSE_HOME; its output kept in <home>/../*.log."""
    env = {**os.environ, "CIVICSENSE_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    say(f"$ CIVICSENSE_HOME={home} civicsense {' '.join(args)}")
    done = subprocess.run([str(BIN / "civicsense"), *args], env=env, capture_output=True,
                          text=True)
    home.mkdir(parents=True, exist_ok=True)
    with (home.parent / f"{home.name}-{args[0]}.log").open("a") as log:
        log.write(f"$ civicsense {' '.join(args)}\n{done.stdout}\n{done.stderr}\n")
    if check and done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"civicsense {args[0]} failed ({done.returncode})")
    return done


def kept(path: Path, make) -> dict:
    """The figures saved at `path` by an earlier run of this bench home, else make() saved."""
    if path.exists():
        say(f"   (kept from an earlier run of this bench home: {path.name})")
        return json.loads(path.read_text())
    figures = make()
    path.write_text(json.dumps(figures, indent=2, default=str))
    return figures


def train(data: Path, home: Path, run_args: Sequence[str], labels: bool = False) -> dict:
    """One real pipeline run (`civicsense run`) in `home`; its summary and duration."""
    summary = home.parent / f"{home.name}-summary.json"
    started = time.perf_counter()
    civicsense(["run", "--data", str(data), *(["--labels"] if labels else []), *run_args,
                "--summary-json", str(summary)], home)
    return {**json.loads(summary.read_text()), "seconds": round(time.perf_counter() - started)}


def send_traffic(home: Path, texts: Sequence[str]) -> dict:
    """`civicsense serve` on a free port in `home`; the texts POSTed to it (V1 batches of 32)."""
    from bench_drift import free_port, start_server, stop

    from civicsense.monitoring.replay import replay

    env = {**os.environ, "CIVICSENSE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    port = free_port()
    server = start_server(env, port)
    try:
        sent = replay(list(texts), f"http://127.0.0.1:{port}", Settings().model_name)
        time.sleep(1.5)  # the payload log writes in the background
    finally:
        stop(server)
    return sent


def logged(settings: Settings, since: datetime) -> int:
    from civicsense.monitoring.inference_log import read_log

    return len(read_log(settings.inference_log, settings, since=since))


def score(home: Path, version: str, posts: pd.DataFrame) -> float:
    """Macro-averaged recall of registered `version` in `home`'s registry on `posts`."""
    import mlflow.pyfunc

    from civicsense.training.evaluate import PRIMARY_METRIC, classification_metrics
    from civicsense.training.registry import configure_mlflow

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)  # mlflow.set_tracking_uri exports it: the last home's
    settings = Settings(home=home)
    if not settings.tracking_uri.endswith(f"{home.resolve()}/mlflow.db"):
        raise SystemExit(f"scoring {home}'s model from another registry: {settings.tracking_uri}")
    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    predicted = model.predict(pd.DataFrame({"text": posts["text"].tolist()}))["label"]
    return float(classification_metrics(posts["label"].tolist(), list(predicted))[PRIMARY_METRIC])


def run_arm(base: Settings, arm: Path, budget: int, strategy: str, seed: int, gold: pd.DataFrame,
            data: Path, run_args: Sequence[str], since: datetime, trained: dict) -> dict:
    """Export → gold annotations → Label Studio export → import → retrain, in the arm's home.
    A snapshot already trained on (same data version) reuses that model: training is seeded."""
    from civicsense.labeling.queue import export_tasks
    from civicsense.labeling.snapshots import import_labels

    shutil.rmtree(arm, ignore_errors=True)  # what an interrupted earlier attempt left
    arm.mkdir(parents=True)
    exported = export_tasks(base, budget, strategy=strategy, seed=seed, since=since,
                            out=arm / "tasks.json")
    tasks = json.loads(Path(exported.path).read_text())
    export, missing = annotate(tasks, gold)
    export_file = arm / "label-studio-export.json"
    export_file.write_text(json.dumps(export))
    home = arm / "home"
    # The arm imports as the champion's home would: the served posts' times from its payload log.
    snapshot = import_labels(Settings(home=home, inference_log_uri=base.inference_log),
                             export_file)
    key = labels_key(snapshot.path)
    row = {"budget": budget, "strategy": strategy, "seed": seed, "tasks": len(tasks),
           "by_reason": dict(exported.by_reason), "no_gold": missing,
           "labels": snapshot.rows, "data_version": snapshot.data_version, "labels_key": key}
    if key in trained:
        say(f"   same labels as {trained[key]['arm']}: its model reused")
        return {**row, **{k: trained[key][k] for k in
                          ("version", "home", "seconds", "arm", "labels_in_split")},
                "reused": True}
    summary = train(data, home, run_args, labels=True)
    keys = set(pd.read_parquet(snapshot.path, columns=["post_id"])["post_id"])
    row.update(version=str(summary["version"]), home=str(home), seconds=summary["seconds"],
               arm=arm.name, reused=False, val_macro_recall=summary.get("val_macro_recall"),
               data_versions=summary.get("data_versions"),
               labels_in_split=labels_in_split(home, keys))
    trained[key] = row
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=None,
                        help="Bench folder [a new temp folder]; its homes are fresh.")
    parser.add_argument("--budgets", default="500", help="Comma-separated label budgets [500].")
    parser.add_argument("--seeds", type=int, default=3, help="Seeds per strategy [3].")
    parser.add_argument("--split", default="time", choices=("random", "time"),
                        help="Validation split of every run [time: the pipeline's default, "
                        "which trains on every new label].")
    parser.add_argument("--run-args", default="", help="Extra `civicsense run` options for "
                        "every training run, e.g. '--n-estimators 200'.")
    parser.add_argument("--mirror", type=Path, default=MIRROR_DATA, help="The SemEval folder "
                        "of the data mirror [../shared/data/semeval2017-task4a].")
    parser.add_argument("--report-only", action="store_true", help="Summarize the arms this "
                        "bench home has finished; train nothing more.")
    parser.add_argument("--quick", action="store_true", help="Smoke mode: base 2013dev only, "
                        "400 traffic posts, budget 50, 1 seed, 600 scoring posts, 30 trees, "
                        "no encoder.")
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    seeds, run_args = args.seeds, ["--split", args.split, *args.run_args.split()]
    traffic_limit = score_limit = 0
    base_names = BASE_FILES
    if args.quick:
        base_names, budgets, seeds = QUICK_BASE_FILES, [50], 1
        traffic_limit, score_limit = 400, 600
        run_args = [*run_args, "--n-estimators", "30", "--no-encoder"]
    root = (args.home or Path(tempfile.mkdtemp(prefix="civicsense-bench-labels-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    base_home = root / "champion" / "home"
    os.environ["CIVICSENSE_HOME"] = str(base_home)
    base = Settings(home=base_home)
    total = time.perf_counter()
    figures: dict = {"home": str(root), "quick": args.quick, "base_files": list(base_names),
                     "traffic_files": list(TRAFFIC_FILES), "scoring_files": list(SCORING_FILES),
                     "budgets": budgets, "seeds": seeds, "run_args": run_args,
                     "started": datetime.now(UTC).isoformat()}
    say(f"bench home {root}; budgets {budgets}, {seeds} seed(s), run options {run_args or 'none'}")

    base_paths = mirror_files(base_names, args.mirror)
    data = link_files(base_paths, root / "data-2013")
    trained_on = load_gold(base_paths)
    traffic = load_gold(mirror_files(TRAFFIC_FILES, args.mirror))
    traffic = scoring_set(traffic, trained_on)  # only posts the champion never trained on
    if traffic_limit:
        traffic = traffic.sample(min(traffic_limit, len(traffic)), random_state=0)
    scoring = scoring_set(load_gold(mirror_files(SCORING_FILES, args.mirror)), trained_on,
                          traffic)
    if score_limit:
        scoring = scoring.sample(min(score_limit, len(scoring)), random_state=0)
    figures["posts"] = {"base": len(trained_on), "traffic": len(traffic), "scoring": len(scoring),
                        "scoring_labels": scoring["label"].value_counts().to_dict()}
    say(f"posts: {len(trained_on)} in the 2013 base, {len(traffic)} 2015 traffic, "
        f"{len(scoring)} unseen 2016 posts for scoring")

    say("1. champion on the 2013 files only")
    champion = kept(root / "champion.json", lambda: train(data, base_home, run_args))
    figures["champion"] = champion
    say(f"   → v{champion['version']} in {champion['seconds']} s, val macro recall "
        f"{champion.get('val_macro_recall')}")

    say(f"2. {len(traffic)} 2015 posts through `civicsense serve`")

    def serve_traffic() -> dict:
        since = datetime.now(UTC)
        return {**send_traffic(base_home, traffic["text"].tolist()), "since": since.isoformat(),
                "logged": logged(base, since)}

    figures["traffic"] = kept(root / "traffic.json", serve_traffic)
    since = datetime.fromisoformat(figures["traffic"]["since"])
    say(f"   → sent {figures['traffic']['sent']}, payload log holds "
        f"{figures['traffic']['logged']}")

    say("3. `civicsense monitor` on that window (no trigger: the arms retrain themselves)")

    def monitor() -> dict:
        done = civicsense(["monitor", "--since", since.isoformat(), "--no-trigger"], base_home,
                          check=False)
        latest = json.loads((Path(base.reports) / "latest.json").read_text())
        return {"exit_code": done.returncode, "drift_detected": latest["drift_detected"],
                "drift_share": round(latest["drift_share"], 3), "records":
                latest["window"]["records"], "n_reference": latest["n_reference"],
                "drifted": sorted(n for n, c in latest["columns"].items() if c["drifted"])}

    drift = figures["drift"] = kept(root / "drift.json", monitor)
    say(f"   → exit {drift['exit_code']}, drift_detected={drift['drift_detected']}, "
        f"drift_share={drift['drift_share']:.3f} ({drift['records']} records vs "
        f"{drift['n_reference']} reference posts)")

    old = score(base_home, str(champion["version"]), scoring)
    say(f"   old champion on the unseen 2016 posts: macro recall {old:.4f}")
    arms, trained = [], {}
    # Seed-major order: an interrupted bench has as many seeds of each strategy, near enough.
    plan = [(b, s, seed) for b in budgets for seed in range(seeds) for s in STRATEGIES]
    say(f"4. {len(plan)} arms (≈ {champion['seconds']} s of training each)")
    for number, (budget, strategy, seed) in enumerate(plan, start=1):
        say(f"   arm {number}/{len(plan)}: budget {budget}, {strategy}, seed {seed}")
        folder = root / "arms" / f"b{budget}-{strategy}-s{seed}"

        def retrain(folder=folder, budget=budget, strategy=strategy, seed=seed) -> dict:
            arm = run_arm(base, folder, budget, strategy, seed, traffic, data, run_args,
                          since, trained)
            return {**arm, "macro_recall": score(Path(arm["home"]), arm["version"], scoring)}

        (root / "arms").mkdir(exist_ok=True)
        if args.report_only and not (root / "arms" / f"{folder.name}.json").exists():
            say("   not run yet (--report-only)")
            continue
        arm = kept(root / "arms" / f"{folder.name}.json", retrain)
        if "labels_key" not in arm:  # kept by an earlier version of this bench
            arm["labels_key"] = labels_key(next(Path(arm["home"]).glob(
                "labels/sha256*/snapshot.parquet")))
        trained.setdefault(arm["labels_key"], arm)
        say(f"   → {arm['labels']} labels ({arm['by_reason']}; in train/validation split: "
            f"{arm['labels_in_split']}), v{arm['version']}, macro recall "
            f"{arm['macro_recall']:.4f} ({arm['macro_recall'] - old:+.4f})")
        arms.append(arm)

    figures["arms"] = arms
    figures["summary"] = summary = summarize(old, arms)
    figures["total_seconds"] = round(time.perf_counter() - total)
    figures["plot"] = str(root / "bench-labels.png") if plot(summary, arms,
                                                              root / "bench-labels.png") else None
    out = root / "bench-labels.json"
    out.write_text(json.dumps(figures, indent=2, default=str))
    print(table(summary))
    say(f"run options: {run_args or 'the pipeline defaults'}; total {figures['total_seconds']} s")
    say(f"figures: {out}; plot: {figures['plot'] or 'skipped (no matplotlib in the venv)'}")


if __name__ == "__main__":
    main()
