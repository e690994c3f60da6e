"""The pipeline's parameters and the model's hyper-parameters, with their defaults, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainParams:
    """XGBoost hyper-parameters."""

    n_estimators: int = 400
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    # XGBoost's own defaults, named so the tuner can search them (the default model is unchanged).
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    seed: int = 0


@dataclass
class PipelineParams:
    """The training pipeline's tunable parameters (the data source comes from Settings)."""

    sample_size: int = 0
    split_method: str = "time"
    validation_fraction: float = 0.2
    n_estimators: int = TrainParams.n_estimators
    max_depth: int = TrainParams.max_depth
    learning_rate: float = TrainParams.learning_rate
    seed: int = TrainParams.seed
    gate_margin: float = 0.0
    # tune: an Optuna search before train (off by default: it costs minutes).
    tune: bool = False
    tune_trials: int = 20
    # The fine-tuned MiniLM encoder (on by default; off keeps the fast lexical-only model). It
    # fine-tunes on `encoder_fraction` of the training split; the booster trains on the rest.
    encoder: bool = True
    encoder_fraction: float = 0.7
    encoder_epochs: int = 1
    encoder_max_len: int = 64
    encoder_learning_rate: float = 5e-5
    encoder_batch_size: int = 32
