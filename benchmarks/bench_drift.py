"""`make demo-drift` / `make bench-drift`: the monitoring loop on real shifts of the mirror.

demo (both targets): the time-shift story, end to end on this machine
  1. train a champion on the 2013 SemEval files only (a temp folder of symlinks, never the repo)
  2. serve it (`civicsense serve`, payload log on)
  3. replay the 2015 files through the server as traffic
  4. `civicsense monitor` on that window → drift → a triggered `civicsense run` on the full mirror
     (the configured data source), waited for → a new version aliased challenger
  5. a second `civicsense monitor` at once → skipped (cooldown): the trigger is idempotent
  6. both versions scored: on the new run's validation posts (the gate's numbers: neither model
     trained on them) and on the 2015 replay traffic (in-sample for the new model: shown, not
     used as evidence)
bench (`--bench`), before step 3 on the same champion:
  - no false alarm: the champion's reference (its validation posts, latest 20% of 2013, never
    trained on) split at random into two disjoint halves: half A is the reference, 20 windows of
    WINDOW posts drawn (seeded, without replacement within a window) from half B are "traffic"
    with the champion's own predictions. Count windows flagged as drift (goal: <= 1 of 20).
  - topic shift: TweetEval stance tweets (abortion, atheism, climate, feminism, Hillary
    Clinton) replayed through the server, `civicsense monitor --no-trigger` on that window.
Prints each step; writes the figures to <home>/bench-drift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from civicsense.settings import MIRROR_DATA, Settings

STANCE = MIRROR_DATA.parent / "tweeteval-stance"
RECENT = ("twitter-2015test-A.txt", "twitter-2015train-A.txt")
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def civicsense(args: list[str], env: dict, check: bool = True,
               quiet: bool = False) -> subprocess.CompletedProcess:
    command = [str(BIN / "civicsense"), *args]
    say("$ civicsense " + " ".join(args))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if not quiet:
        print(done.stdout.rstrip(), flush=True)
    if check and done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"civicsense {args[0]} failed ({done.returncode})")
    return done


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(env: dict, port: int) -> subprocess.Popen:
    import requests

    say(f"$ civicsense serve --port {port}")
    server = subprocess.Popen([str(BIN / "civicsense"), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    for _ in range(240):
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).ok:
                return server
        except requests.RequestException:
            pass
        if server.poll() is not None:
            raise SystemExit("the server exited")
        time.sleep(0.5)
    raise SystemExit("the server did not become ready")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def false_alarms(settings: Settings, windows: int, size: int) -> dict:
    from civicsense.monitoring.drift import detect_drift, load_reference

    reference = load_reference(settings)
    order = np.random.default_rng(0).permutation(len(reference))
    half_a = reference.iloc[order[: len(order) // 2]]
    half_b = reference.iloc[order[len(order) // 2:]]
    size = min(size, len(half_b))
    shares, flagged, seen = [], 0, {}
    started = time.perf_counter()
    for seed in range(windows):
        window = half_b.sample(size, random_state=seed)
        result = detect_drift(half_a, window, settings)
        shares.append(round(result.drift_share, 3))
        flagged += result.drift_detected
        for name, column in result.columns.items():
            seen[name] = seen.get(name, 0) + column.drifted
        say(f"  window {seed + 1:2d}/{windows}: drift_share {result.drift_share:.3f} "
            f"{'DRIFT' if result.drift_detected else 'no drift'}")
    return {"windows": windows, "window_size": size, "reference_size": len(half_a),
            "flagged": int(flagged), "drift_shares": shares, "max_drift_share": max(shares),
            "columns_drifted_in_windows": {k: v for k, v in sorted(seen.items()) if v},
            "seconds_per_check": round((time.perf_counter() - started) / windows, 1)}


def shift_windows(settings: Settings, since: str, windows: int, size: int) -> dict:
    """Sensitivity: windows of `size` records of the replayed traffic (from the inference log)
    against the champion's full reference, as the monitor compares them."""
    from civicsense.monitoring.drift import detect_drift, load_reference
    from civicsense.monitoring.inference_log import read_log

    reference = load_reference(settings)
    traffic = read_log(settings.inference_log, settings, since=datetime.fromisoformat(since))
    size = min(size, len(traffic))
    shares = [detect_drift(reference, traffic.sample(size, random_state=seed), settings)
              for seed in range(windows)]
    return {"windows": windows, "window_size": size,
            "flagged": sum(r.drift_detected for r in shares),
            "drift_shares": [round(r.drift_share, 3) for r in shares],
            "min_drift_share": round(min(r.drift_share for r in shares), 3)}


def monitor_summary(settings: Settings) -> dict:
    return json.loads((Path(settings.reports) / "latest.json").read_text())


def score_versions(settings: Settings, versions: dict[str, str], posts) -> dict:
    import mlflow.pyfunc
    import pandas as pd

    from civicsense.training.evaluate import PRIMARY_METRIC, classification_metrics
    from civicsense.training.registry import configure_mlflow

    configure_mlflow(settings)
    scores = {}
    for role, version in versions.items():
        model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
        predicted = model.predict(pd.DataFrame({"text": posts["text"].tolist()}))["label"]
        scores[role] = round(classification_metrics(posts["label"].tolist(),
                                                    list(predicted))[PRIMARY_METRIC], 4)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", action="store_true", help="Also the false-alarm and "
                        "topic-shift checks.")
    parser.add_argument("--home", type=Path, default=None, help="State directory [a new temp "
                        "folder]; never reuse one holding a real registry.")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--window-size", type=int, default=500)
    parser.add_argument("--topic-limit", type=int, default=1000)
    args = parser.parse_args()
    if not MIRROR_DATA.is_dir():
        raise SystemExit(f"data mirror absent: {MIRROR_DATA}")
    workdir = Path(tempfile.mkdtemp(prefix="civicsense-drift-"))
    home = (args.home or workdir / "home").resolve()
    only_2013 = workdir / "semeval-2013"
    only_2013.mkdir()
    for path in sorted(MIRROR_DATA.glob("twitter-2013*.txt")):
        (only_2013 / path.name).symlink_to(path)
    env = {**os.environ, "CIVICSENSE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["CIVICSENSE_DATA"] = str(MIRROR_DATA)  # where newly labelled data lands: the full mirror
    os.environ.update({k: env[k] for k in ("CIVICSENSE_HOME", "CIVICSENSE_DATA")})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    settings = Settings()
    figures: dict = {"home": str(home)}
    total = time.perf_counter()

    say(f"1. train the champion on 2013 only ({only_2013}: "
        f"{', '.join(p.name for p in sorted(only_2013.iterdir()))})")
    started = time.perf_counter()
    civicsense(["run", "--data", str(only_2013), "--summary-json", str(workdir / "v1.json")],
               env, quiet=True)
    first = json.loads((workdir / "v1.json").read_text())
    figures["champion_2013"] = {**first, "seconds": round(time.perf_counter() - started)}
    say(f"   → {first['model']} v{first['version']} alias={first['alias']} "
        f"(macro recall {first.get('val_macro_recall')} on the latest 20% of 2013)")

    if args.bench:
        say(f"2. no false alarm: {args.windows} windows from the champion's own period")
        figures["false_alarm"] = false_alarms(settings, args.windows, args.window_size)
        fa = figures["false_alarm"]
        say(f"   → {fa['flagged']}/{fa['windows']} windows flagged (goal <= 1)")

    port = free_port()
    server = start_server(env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        if args.bench:
            say(f"3. topic shift: {args.topic_limit} TweetEval stance tweets as traffic")
            since = datetime.now(UTC).isoformat()
            civicsense(["replay", str(STANCE), "--url", url, "--limit", str(args.topic_limit)],
                       env)
            time.sleep(1.5)  # the payload log writes in the background
            done = civicsense(["monitor", "--since", since, "--no-trigger"], env, check=False)
            summary = monitor_summary(settings)
            figures["topic_shift"] = {"exit_code": done.returncode, **_brief(summary)}
            say(f"   → exit {done.returncode}, drift_detected={summary['drift_detected']}, "
                f"drift_share={summary['drift_share']:.3f}")

        say("4. time shift: the 2015 files replayed as traffic")
        since = datetime.now(UTC).isoformat()
        civicsense(["replay", *[str(MIRROR_DATA / name) for name in RECENT], "--url", url], env)
        time.sleep(1.5)
    finally:
        stop(server)
    if args.bench:
        say(f"   sensitivity: {args.windows} windows of {args.window_size} of these records")
        figures["time_shift_windows"] = shift_windows(settings, since, args.windows,
                                                      args.window_size)
        say(f"   → {figures['time_shift_windows']['flagged']}/{args.windows} windows flagged")
    say("5. the monitor on that window (drift → a retraining run on the full mirror, waited for)")
    started = time.perf_counter()
    done = civicsense(["monitor", "--since", since, "--wait"], env, check=False)
    summary = monitor_summary(settings)
    figures["time_shift"] = {"exit_code": done.returncode, **_brief(summary),
                             "monitor_and_retrain_seconds": round(time.perf_counter() - started)}
    from civicsense.monitoring.trigger import read_decisions, read_state

    state = read_state(settings)
    run_summary_path = Path(state.get("run", {}).get("summary_json", "/nonexistent"))
    if done.returncode != 1 or not run_summary_path.exists():
        figures["time_shift"]["retrain"] = None
        say("   → no retraining run completed (see the output above)")
    else:
        second = json.loads(run_summary_path.read_text())
        figures["time_shift"]["retrain"] = second
        say(f"   → new {second['model']} v{second['version']} alias={second['alias']} "
            f"({second['reason']})")
        say("6. the monitor again at once: the trigger must not start a second run")
        again = civicsense(["monitor", "--since", since], env, check=False, quiet=True)
        last = read_decisions(settings)[-1]
        figures["time_shift"]["second_monitor"] = {"exit_code": again.returncode,
                                                   "decision": last["decision"],
                                                   "reason": last["reason"]}
        say(f"   → exit {again.returncode}, decision {last['decision']}: {last['reason']}")
        say("7. both versions on the 2015 tweets (labelled) the server saw")
        from civicsense.monitoring.replay import load_posts

        recent = load_posts([MIRROR_DATA / name for name in RECENT])
        recent = recent[recent["label"].isin(["negative", "neutral", "positive"])]
        versions = {"champion_2013": first["version"], "challenger_full": second["version"]}
        figures["time_shift"]["macro_recall_on_2015_traffic"] = score_versions(
            settings, versions, recent)
        say(f"   → {figures['time_shift']['macro_recall_on_2015_traffic']} (the new model "
            "trained on these 2015 tweets: in-sample, not evidence)")
        say(f"   → on the new run's validation posts (latest 20% of the mirror, unseen by "
            f"both): challenger {second.get('val_macro_recall')} vs champion "
            f"{second.get('champion_val_macro_recall')}")
    figures["decisions"] = [{k: d.get(k) for k in ("time", "decision", "reason")}
                            for d in read_decisions(settings)]
    figures["total_seconds"] = round(time.perf_counter() - total)
    out = home / "bench-drift.json"
    out.write_text(json.dumps(figures, indent=2, default=str))
    say(f"figures: {out}")
    print(json.dumps({k: v for k, v in figures.items() if k != "decisions"}, indent=2,
                     default=str))


def _brief(summary: dict) -> dict:
    return {"drift_detected": summary["drift_detected"],
            "drift_share": round(summary["drift_share"], 3),
            "records": summary["window"]["records"], "n_reference": summary["n_reference"],
            "drifted": sorted(name for name, c in summary["columns"].items() if c["drifted"])}


if __name__ == "__main__":
    main()
