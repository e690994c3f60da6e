"""The training pipeline: ingest → encoder fine-tune → Feast feature build → (Optuna tune) →
XGBoost train → evaluate → register."""

from kfp import dsl, kubernetes

from civicsense.training.params import PipelineParams
from components.encoder import encoder_op
from components.evaluate import evaluate_op
from components.feature_build import feature_build_op
from components.ingest import ingest_op
from components.register import register_op
from components.train import train_op
from components.tune import tune_op

DEFAULTS = PipelineParams()

PIPELINE_NAME = "civicsense-training"
# Cluster wiring (ignored by the local runner): shared state on a PVC, settings from a
# ConfigMap, GCS credentials from a Secret mounted as a file. See manifests/.
STATE_PVC, STATE_MOUNT = "civicsense-state", "/var/civicsense"
CONFIG_MAP = "civicsense-config"
CONFIG_KEYS = ("CIVICSENSE_HOME", "MLFLOW_TRACKING_URI", "GOOGLE_APPLICATION_CREDENTIALS")
# Only the local (kind) overlay runs a GCS emulator, so its key is optional in the ConfigMap;
# the payload and feedback logs (gs://, written by the sink) are where the labeling steps and
# the confirmed-labels ingest read (issue 14), else <home>/… on the PVC.
OPTIONAL_CONFIG_KEYS = ("STORAGE_EMULATOR_HOST", "CIVICSENSE_INFERENCE_LOG_URI",
                        "CIVICSENSE_FEEDBACK_LOG_URI")
GCP_SECRET, GCP_MOUNT = "civicsense-gcs", "/var/secrets/gcp"
# MLflow runs behind its basic-auth app (manifests/base/platform/mlflow.yaml); its client reads
# these. Required: a missing Secret stops the pod instead of failing with 401s mid-run.
MLFLOW_AUTH_SECRET = "civicsense-mlflow-auth"
MLFLOW_AUTH_KEYS = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}


def _on_cluster(task: dsl.PipelineTask) -> dsl.PipelineTask:
    kubernetes.mount_pvc(task, pvc_name=STATE_PVC, mount_path=STATE_MOUNT)
    kubernetes.use_config_map_as_env(task, config_map_name=CONFIG_MAP,
                                     config_map_key_to_env={k: k for k in CONFIG_KEYS})
    kubernetes.use_config_map_as_env(task, config_map_name=CONFIG_MAP, optional=True,
                                     config_map_key_to_env={k: k for k in OPTIONAL_CONFIG_KEYS})
    kubernetes.use_secret_as_volume(task, secret_name=GCP_SECRET, mount_path=GCP_MOUNT,
                                    optional=True)
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_AUTH_SECRET,
                                 secret_key_to_env=MLFLOW_AUTH_KEYS)
    return task


@dsl.pipeline(name=PIPELINE_NAME, description="Train, evaluate and register the CivicSense "
              "tweet sentiment model (negative/neutral/positive).")
def training_pipeline(
    data_source: str,
    source_fingerprint: str = "",
    label_sources: list = [],  # noqa: B006 - KFP reads the default from the signature
    confirmed_labels: bool = False,
    sample_size: int = DEFAULTS.sample_size,
    split_method: str = DEFAULTS.split_method,
    validation_fraction: float = DEFAULTS.validation_fraction,
    n_estimators: int = DEFAULTS.n_estimators,
    max_depth: int = DEFAULTS.max_depth,
    learning_rate: float = DEFAULTS.learning_rate,
    seed: int = DEFAULTS.seed,
    gate_margin: float = DEFAULTS.gate_margin,
    tune: bool = DEFAULTS.tune,
    tune_trials: int = DEFAULTS.tune_trials,
    encoder: bool = DEFAULTS.encoder,
    encoder_fraction: float = DEFAULTS.encoder_fraction,
    encoder_epochs: int = DEFAULTS.encoder_epochs,
    encoder_max_len: int = DEFAULTS.encoder_max_len,
    encoder_learning_rate: float = DEFAULTS.encoder_learning_rate,
    encoder_batch_size: int = DEFAULTS.encoder_batch_size,
) -> str:
    run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    # Labelled snapshots (issue 14): given paths, and/or every confirmed one on the state PVC.
    ingested = _on_cluster(ingest_op(source=data_source, label_sources=label_sources,
                                     confirmed_labels=confirmed_labels,
                                     source_fingerprint=source_fingerprint))
    ingested.set_display_name("ingest")
    # Always a step (cached by the snapshot and its parameters): off, it marks the run
    # encoder-free and the feature build makes today's lexical-only features.
    encoded = _on_cluster(encoder_op(
        snapshot=ingested.outputs["snapshot"], enabled=encoder, split_method=split_method,
        validation_fraction=validation_fraction, sample_size=sample_size, seed=seed,
        fraction=encoder_fraction, epochs=encoder_epochs, max_len=encoder_max_len,
        learning_rate=encoder_learning_rate, batch_size=encoder_batch_size,
        data_version=ingested.outputs["Output"], pipeline_run=run_name))
    encoded.set_display_name("encoder (MiniLM)")
    built = _on_cluster(feature_build_op(
        snapshot=ingested.outputs["snapshot"], encoder=encoded.outputs["encoder"],
        split_method=split_method,
        validation_fraction=validation_fraction, sample_size=sample_size, seed=seed))
    built.set_display_name("feature build (Feast)")
    # tune (issue 13): always a step (cached like the rest); with tune off it passes the given
    # parameters through, else train gets the best ones the search found on the training split.
    tuned = _on_cluster(tune_op(
        entities=built.outputs["entities"], enabled=tune, n_trials=tune_trials,
        split_method=split_method, n_estimators=n_estimators, max_depth=max_depth,
        learning_rate=learning_rate, seed=seed, data_version=ingested.outputs["Output"],
        pipeline_run=run_name))
    tuned.set_display_name("tune (Optuna)")
    best = tuned.outputs
    trained = _on_cluster(train_op(
        entities=built.outputs["entities"], featurizer=built.outputs["featurizer"],
        data_version=ingested.outputs["Output"], n_estimators=best["n_estimators"],
        max_depth=best["max_depth"], learning_rate=best["learning_rate"],
        subsample=best["subsample"], colsample_bytree=best["colsample_bytree"],
        min_child_weight=best["min_child_weight"], reg_lambda=best["reg_lambda"], seed=seed,
        pipeline_run=run_name))
    trained.set_display_name("train (XGBoost)")
    # Both read the registry's current state (the champion), so they never reuse a cached run.
    evaluated = _on_cluster(evaluate_op(entities=built.outputs["entities"],
                                        model=trained.outputs["model"]))
    evaluated.set_display_name("evaluate").set_caching_options(False)
    registered = _on_cluster(register_op(
        model=trained.outputs["model"], data_version=ingested.outputs["Output"],
        candidate_score=evaluated.outputs["candidate_score"],
        champion_score=evaluated.outputs["champion_score"],
        champion_version=evaluated.outputs["champion_version"], margin=gate_margin,
        pipeline_run=run_name, data_versions=ingested.outputs["data_versions"]))
    registered.set_display_name("register (MLflow)").set_caching_options(False)
    return registered.output
