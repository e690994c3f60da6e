"""The terminal view of a long command: one line per step (name, what it produced, duration) and
one live progress bar with an ETA while a step runs; the details go to the log file."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

FULL_DATA_POSTS = 49_486
# Seconds per step of a cold `make run` on the full mirror, measured on this project's 2-core
# machine under load (load average 4.7; README, Quickstart): the ETA of a first run, scaled by
# the sample size. Later runs use this home's own last durations (<home>/logs/step-seconds.json).
FULL_DATA_SECONDS = {"ingest": 9.9, "feature build (Feast)": 273.7, "train (XGBoost)": 177.3,
                     "evaluate": 53.3, "register (MLflow)": 21.2,
                     "tune (Optuna)": 2.1,  # tuning off; on, its own bar shows the trials
                     "encoder (MiniLM)": 650.0}  # its fine-tune bar gives the real ETA
STARTUP_SECONDS = 20.0  # a component's process start and imports, whatever the data size
TICK_SECONDS = 0.5
# A component's own progress bar, as run_capture.phase_of reports it ("fine-tune encoder 12/865").
INNER_PROGRESS = re.compile(r"^(?P<desc>.+) (?P<n>\d+)/(?P<total>\d+)$")
INNER_MIN_STEPS = 3  # inner steps seen before their rate is trusted for an ETA


def expected_seconds(step: str, posts: int, history: dict[str, dict[str, float]]) -> float:
    """How long `step` should take on `posts` posts: this home's last run of the same size, else
    the full-data measurement scaled by size (process start-up is paid whatever the size)."""
    same_size = history.get(str(posts), {})
    if step in same_size:
        return same_size[step]
    full = FULL_DATA_SECONDS.get(step, 30.0)
    if step == "ingest":  # always reads the whole source
        return full
    share = min(posts, FULL_DATA_POSTS) / FULL_DATA_POSTS
    return STARTUP_SECONDS + (full - STARTUP_SECONDS) * share


def load_history(path: Path) -> dict[str, dict[str, float]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def produced(outputs: dict[str, Any]) -> str:
    """What a step produced, in a few words, from its KFP outputs (artifact metadata and
    parameters)."""
    meta = {key: getattr(value, "metadata", {}) for key, value in outputs.items()}
    parts: list[str] = []
    if "snapshot" in meta:
        parts.append(f"{int(meta['snapshot'].get('rows', 0)):,} posts, "
                     f"{int(meta.get('quarantine', {}).get('rows', 0)):,} quarantined, data "
                     f"{meta['snapshot'].get('data_version', '?')}")
    if "encoder" in meta and "enabled" in meta["encoder"]:
        encoder = meta["encoder"]
        parts.append(
            f"fine-tuned on {int(encoder['fine_tuned_posts']):,} posts "
            f"({float(encoder['texts_per_second']):.0f}/s, {encoder['precision']}), its head's "
            f"macro recall {float(encoder['holdout_macro_recall']):.3f} held out, "
            f"{float(encoder['val_macro_recall']):.3f} validation" if encoder["enabled"]
            else "encoder off: lexical features only")
    if "entities" in meta:
        encoder_rows = int(meta["entities"].get("encoder_rows", 0))
        parts.append(f"{int(meta['entities'].get('train_rows', 0)):,} train + "
                     + (f"{encoder_rows:,} encoder + " if encoder_rows else "") +
                     f"{int(meta['entities'].get('validation_rows', 0)):,} validation posts "
                     "in Feast")
    if "model" in meta and "run_id" in meta["model"]:
        parts.append(f"MLflow run {meta['model']['run_id'][:8]}, train macro recall "
                     f"{float(meta['model'].get('train_macro_recall', 0)):.3f}")
    if "report" in meta and "tuned" in meta["report"]:
        tuned = meta["report"]
        parts.append(f"{int(tuned['trials'])} trials, tuning-split macro recall "
                     f"{float(tuned['best_value']):.4f} (defaults "
                     f"{float(tuned['default_value']):.4f})" if tuned["tuned"]
                     else "tuning off: the given parameters")
    if "candidate_score" in outputs:
        champion = outputs.get("champion_version") or ""
        versus = (f" vs champion v{champion} {float(outputs['champion_score']):.4f}" if champion
                  else " (no champion yet)")
        parts.append(f"val macro recall {float(outputs['candidate_score']):.4f}{versus}")
    if "Output" in outputs and isinstance(outputs["Output"], str) and "{" in outputs["Output"]:
        summary = json.loads(outputs["Output"])
        parts.append(f"{summary['model']} v{summary['version']} → "
                     f"{summary['alias'] or 'no alias'} ({summary['reason']})")
    return "; ".join(parts) or ", ".join(sorted(outputs)) or "done"


class RunConsole:
    """A RunObserver (civicsense.orchestration.run_capture) drawing the steps on the terminal. The
    bar is live only on a terminal; its ETA is the step's expected duration minus the time
    spent, or, while the step shows a progress bar of its own (the encoder's fine-tune, the
    booster's rounds), that bar's remaining steps at its measured rate."""

    def __init__(self, out: TextIO, posts: int, history_path: Path, live: bool | None = None):
        self.out, self.posts, self.history_path = out, posts, history_path
        self.live = out.isatty() if live is None else live
        self.history = load_history(history_path)
        self.steps: list[str] = []
        self.bar: tqdm | None = None
        self.phase = ""
        self.started = 0.0
        self.expected = 1.0
        self._inner: tuple[str, float, int] | None = None  # (desc, first seen, n then)
        self._inner_eta: tuple[str, float] | None = None  # (desc, seconds left)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def echo(self, text: str) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.clear()
            self.out.write(text + "\n")
            self.out.flush()
            if self.bar is not None:
                self.bar.refresh()

    def run_started(self, steps: list[str], log_path: Path) -> None:
        self.steps = steps
        self.echo(f"full log: {log_path}")

    def step_started(self, name: str) -> None:
        self.phase, self.started = "starting", time.perf_counter()
        self._inner = self._inner_eta = None
        self.expected = max(1.0, expected_seconds(name, self.posts, self.history))
        if not self.live:
            return
        with self._lock:
            self.bar = tqdm(total=round(self.expected, 1), file=self.out, leave=False,
                            dynamic_ncols=True, bar_format=self._format(name, 0.0))
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, args=(name,), daemon=True)
        self._ticker.start()

    def step_phase(self, name: str, phase: str) -> None:
        self.phase = phase
        inner = INNER_PROGRESS.match(phase)
        if inner is None:
            self._inner = self._inner_eta = None
            return
        desc, n, total = inner["desc"], int(inner["n"]), int(inner["total"])
        now = time.perf_counter()
        if self._inner is None or self._inner[0] != desc or n < self._inner[2]:
            self._inner, self._inner_eta = (desc, now, n), None
            return
        _, since, first = self._inner
        if n - first >= INNER_MIN_STEPS:
            self._inner_eta = (desc, (now - since) / (n - first) * (total - n))

    def step_finished(self, name: str, ok: bool, outputs: dict[str, Any], seconds: float,
                      cached: bool) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
        if ok and not cached:
            self._remember(name, seconds)
        index = self.steps.index(name) + 1 if name in self.steps else 0
        what = ("FAILED (see the full log)" if not ok else
                ("cached: " if cached else "") + produced(outputs))
        self.echo(f"[{index}/{len(self.steps)}] {name:<22} {seconds:6.1f} s  {what}")

    def _format(self, name: str, elapsed: float) -> str:
        left = self.expected - elapsed
        eta = f"ETA {_clock(left)}" if left > 0 else "ETA ? (slower than expected)"
        if self._inner_eta is not None:
            eta = f"{self._inner_eta[0]} ETA {_clock(self._inner_eta[1])}"
        phase = self.phase.replace("{", "{{").replace("}", "}}")[:60]
        return (f"  {name[:22]:<22} {{percentage:3.0f}}%|{{bar:20}}| {_clock(elapsed)} "
                f"elapsed, {eta} · {phase}")

    def _tick(self, name: str) -> None:
        while not self._stop.wait(TICK_SECONDS):
            elapsed = time.perf_counter() - self.started
            with self._lock:
                if self.bar is None:
                    return
                self.bar.bar_format = self._format(name, elapsed)
                self.bar.n = round(min(elapsed, 0.99 * self.expected), 1)
                self.bar.refresh()

    def _remember(self, name: str, seconds: float) -> None:
        self.history.setdefault(str(self.posts), {})[name] = round(seconds, 1)
        try:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            self.history_path.write_text(json.dumps(self.history, indent=2))
        except OSError:  # the ETA of the next run is a nicety, never a failure
            pass


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
