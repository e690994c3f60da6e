"""KFP component `tune_op`: a thin shell over civicsense.training.tune.tune_training_split."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def tune_op(
    entities: Input[Dataset],
    enabled: bool,
    n_trials: int,
    split_method: str,
    n_estimators: int,
    max_depth: int,
    learning_rate: float,
    seed: int,
    data_version: str,
    pipeline_run: str,
    report: Output[HTML],
) -> NamedTuple("Best", [("n_estimators", int), ("max_depth", int), ("learning_rate", float),
                         ("subsample", float), ("colsample_bytree", float),
                         ("min_child_weight", float), ("reg_lambda", float),
                         ("best_value", float)]):
    """Search XGBoost's parameters on the training split (enabled and n_trials > 0), else pass
    the given ones through; the parameters train gets, and the report for the Kubeflow UI."""
    from collections import namedtuple
    from dataclasses import asdict
    from pathlib import Path

    from civicsense.training.params import TrainParams
    from civicsense.training.tune_report import disabled_html

    Best = namedtuple("Best", ["n_estimators", "max_depth", "learning_rate", "subsample",
                               "colsample_bytree", "min_child_weight", "reg_lambda",
                               "best_value"])
    base = TrainParams(n_estimators=n_estimators, max_depth=max_depth,
                       learning_rate=learning_rate, seed=seed)
    tuned = {k: v for k, v in asdict(base).items() if k != "seed"}
    if not enabled or n_trials < 1:
        Path(report.path).write_text(disabled_html(tuned))
        report.metadata["tuned"] = False
        return Best(**tuned, best_value=-1.0)

    import os
    import tempfile

    # Before XGBoost loads OpenMP: idle threads sleep instead of spinning. On a loaded machine
    # spinning threads made 2-thread boosting ~40x slower than 1 thread (docs: README, tuning).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import pandas as pd

    from civicsense.settings import Settings
    from civicsense.training.tune import tune_training_split

    settings = Settings()
    with tempfile.TemporaryDirectory() as out_dir:  # the files also go to the MLflow run
        result = tune_training_split(
            settings, pd.read_parquet(entities.path), base, n_trials, split_method,
            settings.tune_validation_fraction, settings.tune_timeout_seconds, Path(out_dir),
            tags={"data_version": data_version, "pipeline_run": pipeline_run},
            threads=settings.tune_threads or None, max_rounds=settings.tune_max_rounds)
        Path(report.path).write_text(result.report.read_text())
    report.metadata.update({"tuned": True, "run_id": result.run_id,
                            "best_value": result.best_value,
                            "default_value": result.default_value,
                            "trials": len(result.trials), "seconds": round(result.seconds, 1)})
    best = {k: v for k, v in asdict(result.best_params).items() if k != "seed"}
    return Best(**best, best_value=result.best_value)
