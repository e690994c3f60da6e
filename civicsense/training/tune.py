"""Tune: an Optuna search (seeded TPE, median pruning on boosting rounds) over XGBoost's
parameters, scored by macro recall on a validation split carved from the training split; every
trial is a nested MLflow run under the tune step's run."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import xgboost as xgb
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from optuna.trial import FrozenTrial, TrialState
from sklearn.metrics import recall_score
from tqdm.auto import tqdm

from civicsense import LABELS
from civicsense.data.split import SplitMethod, assign_split
from civicsense.features.featurizer import encode_labels
from civicsense.features.store import training_frame
from civicsense.settings import Settings
from civicsense.training.params import TrainParams
from civicsense.training.registry import configure_mlflow
from civicsense.training.train import fit_booster
from civicsense.training.tune_report import write_report

log = logging.getLogger(__name__)

OBJECTIVE = "inner_val_macro_recall"
# What the search varies: every TrainParams field but the seed.
TUNED = tuple(f.name for f in fields(TrainParams) if f.name != "seed")
SEARCH_SPACE = {
    "n_estimators": "int 100..1000 step 50", "max_depth": "int 2..10",
    "learning_rate": "float 0.01..0.3 log", "subsample": "float 0.5..1.0",
    "colsample_bytree": "float 0.4..1.0", "min_child_weight": "float 0.5..20 log",
    "reg_lambda": "float 0.01..20 log",
}


@dataclass
class TuneResult:
    """The search's outcome: the best parameters (to train with), their score, and every trial."""

    best_params: TrainParams
    best_value: float
    default_value: float  # trial 0 always runs the given (default) parameters
    trials: pd.DataFrame  # number, state, value, seconds, one column per tuned parameter
    run_id: str  # the tune step's MLflow run; the trials are its nested runs
    seconds: float
    report: Path | None  # the HTML report (optimization history + parallel coordinates)


def suggest(trial: optuna.Trial, base: TrainParams, max_rounds: int = 1000) -> TrainParams:
    """The search space: `base` with every tuned field drawn by the trial (boosting rounds from
    100 to max_rounds)."""
    return replace(
        base,
        n_estimators=trial.suggest_int("n_estimators", 100, max(100, max_rounds), step=50),
        max_depth=trial.suggest_int("max_depth", 2, 10),
        learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        subsample=trial.suggest_float("subsample", 0.5, 1.0),
        colsample_bytree=trial.suggest_float("colsample_bytree", 0.4, 1.0),
        min_child_weight=trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
        reg_lambda=trial.suggest_float("reg_lambda", 0.01, 20.0, log=True),
    )


def macro_recall_all_classes(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Macro recall of the most probable class over all three classes, `y` encoded (a class
    absent from `y` counts as a recall of 0, as in evaluate's primary metric)."""
    return float(recall_score(y, probabilities.argmax(axis=1), average="macro",
                              labels=list(range(len(LABELS))), zero_division=0))


class PruneOnRounds(xgb.callback.TrainingCallback):
    """Every `every` boosting rounds: report the validation macro recall to the trial and stop
    the trial when the pruner says so (what optuna-integration's callback does, on our metric)."""

    def __init__(self, trial: optuna.Trial, validation: xgb.DMatrix, y: np.ndarray, every: int):
        self.trial, self.validation, self.y, self.every = trial, validation, y, every

    def after_iteration(self, model, epoch, evals_log) -> bool:
        rounds = epoch + 1
        if rounds % self.every == 0:
            value = macro_recall_all_classes(
                self.y, model.predict(self.validation, iteration_range=(0, rounds)))
            self.trial.report(value, rounds)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at round {rounds} ({value:.4f})")
        return False


def carve_validation(train_rows: pd.DataFrame, method: SplitMethod, fraction: float,
                     seed: int) -> np.ndarray:
    """Which training-split rows the tuner scores on: the latest `fraction` by time (as the
    pipeline's own split), or a seeded random share. A boolean mask in row order."""
    split = assign_split(train_rows.reset_index(drop=True), method, fraction, seed)
    return (split == "validation").to_numpy()


def _log_trial(client: mlflow.MlflowClient, experiment_id: str, parent_id: str,
               trial: FrozenTrial) -> None:
    """One finished trial as a nested run: its parameters, value, state and pruning curve."""
    start = int(trial.datetime_start.timestamp() * 1000)
    end = int((trial.datetime_complete or trial.datetime_start).timestamp() * 1000)
    run = client.create_run(experiment_id, start_time=start, tags={
        MLFLOW_PARENT_RUN_ID: parent_id, MLFLOW_RUN_NAME: f"trial-{trial.number}"})
    metrics = [Metric(f"{OBJECTIVE}_by_round", value, end, int(step))
               for step, value in sorted(trial.intermediate_values.items())]
    if trial.value is not None:
        metrics.append(Metric(OBJECTIVE, trial.value, end, 0))
    client.log_batch(run.info.run_id, metrics=metrics,
                     params=[Param(k, str(v)) for k, v in trial.params.items()],
                     tags=[RunTag("state", trial.state.name),
                           RunTag("trial_number", str(trial.number))])
    client.set_terminated(run.info.run_id, status="FINISHED" if trial.state in (
        TrialState.COMPLETE, TrialState.PRUNED) else "FAILED", end_time=end)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = [{"number": t.number, "state": t.state.name, "value": t.value,
             "seconds": t.duration.total_seconds() if t.duration else None, **t.params}
            for t in study.trials]
    return pd.DataFrame(rows, columns=["number", "state", "value", "seconds", *TUNED])


def tune(
    settings: Settings,
    features: pd.DataFrame,
    labels: pd.Series,
    is_validation: np.ndarray,
    base: TrainParams,
    n_trials: int,
    seed: int = 0,
    timeout: float | None = None,
    out_dir: Path | None = None,
    prune_every: int = 25,
    tags: dict[str, str] | None = None,
    threads: int | None = None,
    max_rounds: int = 1000,
) -> TuneResult:
    """Search XGBoost's parameters: fit on the rows not in `is_validation`, score macro recall
    on those that are. Trial 0 runs `base` (so the best is never worse than it on this split),
    then TPE (seeded) proposes; the median pruner stops a trial whose curve falls below the
    median of earlier trials at the same round. Logged to an MLflow run (``tune``) with one
    nested run per trial, the plots and an HTML report (also written to out_dir)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    mask = np.asarray(is_validation, dtype=bool)
    if mask.all() or not mask.any():
        raise ValueError("the tuner needs rows on both sides of its validation split")
    y_val = encode_labels(labels[mask])
    validation = xgb.DMatrix(features[mask].to_numpy(np.float32),
                             feature_names=list(features.columns))
    fit_x, fit_y = features[~mask], labels[~mask]

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, base, max_rounds)
        booster = fit_booster(fit_x, fit_y, params, threads=threads,
                              callbacks=[PruneOnRounds(trial, validation, y_val, prune_every)])
        return macro_recall_all_classes(y_val, booster.predict(validation))

    study = optuna.create_study(
        direction="maximize", study_name="civicsense-xgboost",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=100))
    study.enqueue_trial({name: getattr(base, name) for name in TUNED})
    client = configure_mlflow(settings)
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"tune-{(tags or {}).get('pipeline_run', 'local')}") as run:
        mlflow.set_tags({**(tags or {}), "objective": OBJECTIVE})
        mlflow.log_params({"n_trials": n_trials, "seed": seed, "timeout": timeout,
                           "sampler": "TPESampler", "pruner": "MedianPruner(5, warmup 100)",
                           "prune_every": prune_every, "max_rounds": max_rounds,
                           "threads": threads or "all", "fit_rows": int((~mask).sum()),
                           "validation_rows": int(mask.sum())})
        mlflow.log_dict({**SEARCH_SPACE, "n_estimators": f"int 100..{max_rounds} step 50"},
                        "search_space.json")
        bar = tqdm(total=n_trials, desc="tune trials", unit="trial")

        def finished(_: optuna.Study, trial: FrozenTrial) -> None:
            _log_trial(client, run.info.experiment_id, run.info.run_id, trial)
            bar.update(1)
            log.info("trial %d %s: %s", trial.number, trial.state.name, trial.value)

        try:
            study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[finished])
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        best = replace(base, **study.best_params)
        default_value = study.trials[0].value if study.trials[0].value is not None else np.nan
        frame = trials_frame(study)
        summary = {"best_value": study.best_value, "default_value": default_value,
                   "gain": study.best_value - default_value, "seconds": seconds,
                   "trials": len(study.trials),
                   "complete": int((frame["state"] == "COMPLETE").sum()),
                   "pruned": int((frame["state"] == "PRUNED").sum())}
        mlflow.log_metrics({f"tune_{k}" if k in ("seconds", "trials") else k: float(v)
                            for k, v in summary.items()})
        mlflow.log_dict({k: v for k, v in asdict(best).items()}, "best_params.json")
        with tempfile.TemporaryDirectory() as staging:
            folder = Path(out_dir) if out_dir else Path(staging)
            folder.mkdir(parents=True, exist_ok=True)
            frame.to_csv(folder / "trials.csv", index=False)
            report = write_report(study, summary, asdict(best), folder)
            for path in sorted(folder.iterdir()):
                mlflow.log_artifact(str(path), "tune")
    return TuneResult(best, float(study.best_value), float(default_value), frame,
                      run.info.run_id, seconds, report if out_dir else None)


def tune_training_split(
    settings: Settings,
    entities: pd.DataFrame,
    base: TrainParams,
    n_trials: int,
    split_method: SplitMethod = "time",
    validation_fraction: float = 0.2,
    timeout: float | None = None,
    out_dir: Path | None = None,
    tags: dict[str, str] | None = None,
    threads: int | None = None,
    max_rounds: int = 1000,
) -> TuneResult:
    """The pipeline's tune step: read the TRAINING split's features from Feast, carve the
    tuner's validation from it (the latest `validation_fraction`, like the pipeline's split) and
    search. The pipeline's validation split (what evaluate and the gate score) is never read."""
    train_rows = entities[entities["split"] == "train"].reset_index(drop=True)
    features = training_frame(settings, train_rows, build=entities)
    mask = carve_validation(train_rows, split_method, validation_fraction, base.seed)
    return tune(settings, features, train_rows["label"], mask, base, n_trials, base.seed,
                timeout, out_dir, tags=tags, threads=threads, max_rounds=max_rounds)
