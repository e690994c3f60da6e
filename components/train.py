"""KFP component `train_op`: a thin shell over civicsense.training.train.train."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def train_op(
    entities: Input[Dataset],
    featurizer: Input[Model],
    data_version: str,
    n_estimators: int,
    max_depth: int,
    learning_rate: float,
    seed: int,
    pipeline_run: str,
    model: Output[Model],
    subsample: float = 0.8,
    colsample_bytree: float = 0.8,
    min_child_weight: float = 1.0,
    reg_lambda: float = 1.0,
) -> str:
    """Train and log; returns the MLflow run id. The model artifact is the MLflow model dir."""
    from pathlib import Path

    import joblib
    import pandas as pd

    from civicsense.settings import Settings
    from civicsense.training.params import TrainParams
    from civicsense.training.train import train

    result = train(
        Settings(), pd.read_parquet(entities.path), joblib.load(featurizer.path),
        TrainParams(n_estimators=n_estimators, max_depth=max_depth,
                    learning_rate=learning_rate, subsample=subsample,
                    colsample_bytree=colsample_bytree, min_child_weight=min_child_weight,
                    reg_lambda=reg_lambda, seed=seed),
        Path(model.path), data_version, pipeline_run,
    )
    model.metadata.update({"run_id": result.run_id, "model_uri": result.model_uri,
                           "train_macro_recall": result.train_macro_recall,
                           "data_version": data_version})
    return result.run_id
