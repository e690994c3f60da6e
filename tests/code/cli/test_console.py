"""The terminal view of `civicsense run`: phases read from KFP's stream, what each step
produced, ETAs; and, on the session's real run in a pseudo-terminal, the whole screen."""

import json
import re
from pathlib import Path

import pytest
from kfp import dsl
from terminal_support import screen_lines

from civicsense.cli.console import FULL_DATA_POSTS, RunConsole, expected_seconds, produced
from civicsense.orchestration.run_capture import LineRouter, display_names, phase_of


def test_phases_are_component_messages_and_bars_not_kfp_chatter():
    assert phase_of("    [KFP Executor 2026-12-02 14:01:14,498 INFO]: fitting the featurizer on "
                    "800 training posts") == "fitting the featurizer on 800 training posts"
    assert phase_of("    train xgboost:  42%|████▏     | 168/400 [00:05<00:07, 31.2round/s]"
                    ) == "train xgboost 168/400"
    assert phase_of("[KFP Executor 2026-12-02 14:02:09,861 INFO]: Registry cache expired, so "
                    "refreshing") is None
    assert phase_of('        "inputs": {') is None


class Recorder:
    def __init__(self):
        self.events = []

    def step_phase(self, name, phase):
        self.events.append((name, phase))


def test_router_logs_everything_and_reports_phases_of_the_running_step(tmp_path):
    log = (tmp_path / "run.log").open("w")
    recorder = Recorder()
    router = LineRouter(log, recorder)
    router.write("\x1b[96m'ingest-op'\x1b[0m before any step\n")
    router.current = "train (XGBoost)"
    router.write("train xgboost:  10%|█ | 40/400 [00:01<00:09]\rtrain xgboost:  20%|██ | 80/4")
    router.write("00 [00:02<00:08]\n")
    log.close()
    assert recorder.events == [("train (XGBoost)", "train xgboost 40/400"),
                               ("train (XGBoost)", "train xgboost 80/400")]
    text = (tmp_path / "run.log").read_text()
    assert "'ingest-op' before any step" in text and "\x1b" not in text


def test_steps_come_in_the_order_they_run():
    from pipelines.training import training_pipeline

    assert list(display_names(training_pipeline).values()) == [
        "ingest", "encoder (MiniLM)", "feature build (Feast)", "tune (Optuna)",
        "train (XGBoost)", "evaluate", "register (MLflow)"]


def test_produced_names_what_each_step_made():
    snapshot, quarantine = dsl.Dataset(name="s"), dsl.Dataset(name="q")
    snapshot.metadata, quarantine.metadata = {"rows": 49486.0, "data_version": "sha256:ab"}, {
        "rows": 848.0}
    assert produced({"snapshot": snapshot, "quarantine": quarantine, "Output": "sha256:ab"}) == (
        "49,486 posts, 848 quarantined, data sha256:ab")
    assert produced({"candidate_score": 0.61234, "champion_score": 0.6, "champion_version": "3"}
                    ) == "val macro recall 0.6123 vs champion v3 0.6000"
    summary = {"model": "m", "version": "2", "alias": None, "reason": "does not beat champion"}
    assert produced({"Output": json.dumps(summary)}) == "m v2 → no alias (does not beat champion)"
    report = dsl.HTML(name="report")
    report.metadata = {"tuned": True, "trials": 20.0, "best_value": 0.655, "default_value": 0.641}
    assert produced({"report": report, "n_estimators": 650}) == (
        "20 trials, tuning-split macro recall 0.6550 (defaults 0.6410)")
    report.metadata = {"tuned": False}
    assert produced({"report": report}) == "tuning off: the given parameters"


def test_eta_is_the_last_run_of_that_size_else_the_full_data_scaled():
    history = {"4000": {"train (XGBoost)": 61.5}}
    assert expected_seconds("train (XGBoost)", 4000, history) == 61.5
    full = expected_seconds("train (XGBoost)", FULL_DATA_POSTS, {})
    small = expected_seconds("train (XGBoost)", 1000, {})
    assert small < full and small > 10


def test_console_prints_one_line_per_step_and_remembers_durations(tmp_path):
    import io

    out = io.StringIO()
    console = RunConsole(out, 1000, tmp_path / "step-seconds.json", live=True)
    console.run_started(["ingest", "train"], tmp_path / "run.log")
    console.step_started("ingest")
    console.step_phase("ingest", "ingest 3/11")
    console.step_finished("ingest", True, {}, 1.25, cached=False)
    console.step_started("train")
    console.step_finished("train", False, {}, 2.0, cached=False)
    text = out.getvalue()
    assert f"full log: {tmp_path / 'run.log'}" in text
    assert "[1/2] ingest" in text and "1.2 s" in text
    assert "[2/2] train" in text and "FAILED (see the full log)" in text
    assert json.loads((tmp_path / "step-seconds.json").read_text()) == {"1000": {"ingest": 1.2}}


def test_a_steps_own_progress_bar_drives_its_eta(tmp_path, monkeypatch):
    import io

    from civicsense.cli import console as console_module

    clock = iter([0.0, 10.0, 12.0, 30.0, 31.0])
    monkeypatch.setattr(console_module.time, "perf_counter", lambda: next(clock))
    console = RunConsole(io.StringIO(), 1000, tmp_path / "s.json", live=False)
    console.step_started("encoder (MiniLM)")  # t=0
    console.step_phase("encoder (MiniLM)", "fine-tuning the encoder on 700 posts")
    console.step_phase("encoder (MiniLM)", "fine-tune encoder 10/110")  # t=10: rate unknown
    console.step_phase("encoder (MiniLM)", "fine-tune encoder 11/110")  # t=12: too few steps
    assert console._inner_eta is None
    console.step_phase("encoder (MiniLM)", "fine-tune encoder 20/110")  # t=30: 2 s a step
    assert console._inner_eta == ("fine-tune encoder", pytest.approx(180.0))
    assert "fine-tune encoder ETA 3:00" in console._format("encoder (MiniLM)", 30.0)
    console.step_phase("encoder (MiniLM)", "exporting the encoder to ONNX")  # t=31
    assert "fine-tune" not in console._format("encoder (MiniLM)", 31.0)


def terminal_of(trained_home) -> tuple[list[str], str]:
    settings, _ = trained_home
    home = Path(settings.home_dir)
    raw = (home.parent / f"{home.name}-terminal.out").read_bytes().decode()
    return screen_lines(raw), raw


def test_a_real_run_fits_on_one_screen_with_a_line_per_step(trained_home):
    settings, summary = trained_home
    lines, raw = terminal_of(trained_home)
    assert len(lines) <= 30, "\n".join(lines)
    steps = [line for line in lines if re.match(r"\[\d/7\] ", line)]
    assert [line.split()[1] for line in steps] == ["ingest", "encoder", "feature", "tune",
                                                   "train", "evaluate", "register"]
    assert all(re.search(r"\d+\.\d s  \S", line) for line in steps)
    assert "posts, " in steps[0] and "its head's macro recall" in steps[1]
    assert "validation posts in Feast" in steps[2]
    assert "tuning off" in steps[3]
    assert f"v{summary['version']} → champion" in steps[6]
    assert any(line.startswith("pipeline took ") for line in lines)
    # KFP's per-task JSON and the components' chatter stayed out of the terminal …
    assert '"executorInput"' not in raw and "Got executor_input" not in raw
    assert "Registry cache expired" not in raw and "Warning" not in raw
    # … while a live bar with an ETA redrew itself on each step.
    assert raw.count("\r") > 20 and "ETA " in raw


def test_the_log_file_has_the_details(trained_home):
    lines, _ = terminal_of(trained_home)
    log_line = next(line for line in lines if line.startswith("full log: "))
    log = Path(log_line.removeprefix("full log: ")).read_text()
    settings, _ = trained_home
    assert Path(log_line.removeprefix("full log: ")).parent == settings.home_dir / "logs"
    assert "Got executor_input" in log and "Registry cache expired" in log
    assert "Task 'register-op' finished with status SUCCESS" in log
    assert "summary: {" in log


def test_produced_names_what_the_encoder_step_made():
    on, off = dsl.Model(name="encoder"), dsl.Model(name="encoder")
    on.metadata.update({"enabled": True, "fine_tuned_posts": 27720, "texts_per_second": 58.6,
                        "precision": "int8", "holdout_macro_recall": 0.6712,
                        "val_macro_recall": 0.6651})
    off.metadata["enabled"] = False
    assert produced({"encoder": on, "Output": "abc"}) == (
        "fine-tuned on 27,720 posts (59/s, int8), its head's macro recall 0.671 held out, "
        "0.665 validation")
    assert produced({"encoder": off, "Output": ""}) == "encoder off: lexical features only"
    entities = dsl.Dataset(name="entities")
    entities.metadata.update({"train_rows": 100, "encoder_rows": 230, "validation_rows": 80})
    assert produced({"entities": entities}).startswith("100 train + 230 encoder + 80 validation")
