"""The pipeline's encoder step on a tiny synthetic snapshot: a real (short) fine-tune, ONNX
export, an MLflow run, the artifact, and the feature build that reads it into Feast."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from civicsense.data.split import sample_and_split
from civicsense.features.encoder.artifact import read_artifact, write_disabled
from civicsense.features.encoder.train import FineTuneParams
from civicsense.features.featurizer import ENCODER_NAMES
from civicsense.features.store import (
    ENCODER_SPLIT,
    build_features,
    encoder_outputs,
    mark_encoder_rows,
    training_frame,
)
from civicsense.settings import Settings
from civicsense.training.encoder_step import fit_encoder

pytest.importorskip("torch")
pytestmark = pytest.mark.finetune  # a real fine-tune: `make test`, not `make test-fast`

WORDS = {"positive": ["great", "love", "happy", "win", "proud"],
         "negative": ["awful", "hate", "sad", "lose", "shame"],
         "neutral": ["today", "vote", "meeting", "report", "tuesday"]}
PARAMS = FineTuneParams(epochs=1, batch_size=8, max_len=24, max_steps=10, seed=5, threads=1)


def snapshot(n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = [("positive", "negative", "neutral")[i % 3] for i in range(n)]
    return pd.DataFrame({
        "post_id": [f"p{i}" for i in range(n)],
        "created_at": pd.date_range("2016-01-01", periods=n, freq="h", tz="UTC"),
        "text": [" ".join(rng.choice(WORDS[label], 4)) + f" the reform #{i}"
                 for i, label in enumerate(labels)],
        "label": labels, "source": "test"})


@pytest.fixture(scope="module")
def step(tmp_path_factory):
    home = tmp_path_factory.mktemp("encoder-home")
    settings = Settings(home=home)
    out = home / "encoder-artifact"
    progress: list[int] = []
    result = fit_encoder(settings, snapshot(), out, PARAMS, fraction=0.7,
                         validation_fraction=0.2, tags={"pipeline_run": "unit"},
                         progress=lambda step, total, loss: progress.append(total))
    return settings, result, progress


def test_the_step_fine_tunes_on_its_slice_and_logs_an_mlflow_run(step):
    settings, result, progress = step
    assert result.fine_tuned_posts == 84  # 70% of the 120 training posts, 28 per label
    assert progress and set(progress) == {10}
    assert result.precision in {"fp32", "int8"}
    assert 0 <= result.holdout_macro_recall <= 1 and 0 <= result.validation_macro_recall <= 1
    run = MlflowClient(settings.tracking_uri).get_run(result.run_id)
    assert run.data.params["fraction"] == "0.7" and run.data.params["max_steps"] == "10"
    assert run.data.tags["step"] == "encoder" and run.data.tags["pipeline_run"] == "unit"
    assert {"val_macro_recall", "holdout_macro_recall", "loss", "fine_tune_seconds"} <= set(
        run.data.metrics)
    losses = MlflowClient(settings.tracking_uri).get_metric_history(result.run_id, "loss")
    assert [m.step for m in losses] == [5, 10]
    client = MlflowClient(settings.tracking_uri)
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"loss_curve.png", "encoder"} <= artifacts
    logged = {Path(a.path).name for a in client.list_artifacts(result.run_id, "encoder")}
    assert "tokenizer.json" in logged and any(name.endswith(".onnx") for name in logged)


def test_the_artifact_carries_the_encoder_and_the_posts_it_saw(step):
    _, result, _ = step
    trained = read_artifact(result.artifact)
    assert trained is not None and len(trained.trained_on) == result.fine_tuned_posts
    assert trained.info["precision"] == result.precision
    copy = pickle.loads(pickle.dumps(trained.encoder))
    assert copy.nbytes > 1_000_000  # the model travels inline
    embeddings, probabilities = copy.encode(["so proud of this vote", "awful day"])
    assert embeddings.shape == (2, 384) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_a_disabled_or_foreign_artifact(tmp_path):
    assert read_artifact(write_disabled(tmp_path / "off")) is None
    with pytest.raises(ValueError, match="not an encoder step's artifact"):
        read_artifact(tmp_path)


def test_the_feature_build_keeps_the_encoders_posts_from_the_booster(step):
    settings, result, _ = step
    trained = read_artifact(result.artifact)
    build = build_features(snapshot(), settings, validation_fraction=0.2, encoder=trained)
    split = build.entities.set_index("post_id")["split"]
    assert set(split[split == ENCODER_SPLIT].index) == set(trained.trained_on)
    assert (split == "train").sum() == 36 and (split == "validation").sum() == 30
    features = training_frame(settings, build.entities)
    assert list(features.columns) == build.featurizer.feature_names
    assert set(ENCODER_NAMES) <= set(features.columns)
    # training/serving skew: what Feast holds (the encoder step's own outputs, reused) is what
    # the served featurizer computes; on training posts, the lexical scores are out-of-fold
    validation = build.entities["split"].eq("validation").to_numpy()
    read = validation | build.entities["split"].eq("train").to_numpy()
    served = build.featurizer.transform(build.entities.loc[read, "text"].tolist())
    pd.testing.assert_frame_equal(features[validation].reset_index(drop=True),
                                  served[validation[read]].reset_index(drop=True), atol=1e-6)
    pd.testing.assert_frame_equal(features.loc[read, list(ENCODER_NAMES)].reset_index(drop=True),
                                  served[list(ENCODER_NAMES)].reset_index(drop=True), atol=1e-6)
    # the posts it was fine-tuned on have no encoder outputs in the store (in-sample: unread)
    tuned = features.loc[~read, list(ENCODER_NAMES)].to_numpy()
    assert tuned.shape[0] == len(trained.trained_on) and np.isnan(tuned).all()


def test_the_feature_build_reuses_the_steps_outputs_and_encodes_the_rest(step):
    settings, result, _ = step
    trained = read_artifact(result.artifact)
    assert trained.outputs is not None and len(trained.outputs) == 36 + 30
    rows = mark_encoder_rows(
        sample_and_split(snapshot(), "time", 0.2, 0, 0), trained.trained_on)
    marked = trained.outputs.copy()
    marked["probabilities"] = [np.full(3, 7.0, np.float32)] * len(marked)
    edited = rows["post_id"] == marked["post_id"].iloc[0]
    rows.loc[edited, "text"] = "a text the step never scored"
    matrix = encoder_outputs(rows, replace(trained, outputs=marked))
    reused = ~edited.to_numpy() & (rows["split"] != ENCODER_SPLIT).to_numpy()
    assert (matrix[reused, :3] == 7.0).all()  # taken from the step, not encoded again
    encoded = matrix[edited.to_numpy()]
    assert np.isfinite(encoded).all() and np.allclose(encoded[:, :3].sum(1), 1, atol=1e-5)


def test_the_encoder_rows_must_be_training_posts_of_this_build(step):
    _, result, _ = step
    trained = read_artifact(result.artifact)
    rows = snapshot().assign(split="train")
    rows.loc[rows["post_id"] == sorted(trained.trained_on)[0], "split"] = "validation"
    with pytest.raises(ValueError, match="another sample or split"):
        mark_encoder_rows(rows, trained.trained_on)


def test_the_pickled_featurizer_runs_without_the_artifact_nor_torch(step, tmp_path):
    settings, result, _ = step
    build = build_features(snapshot(), settings, validation_fraction=0.2,
                           encoder=read_artifact(result.artifact))
    joblib.dump(build.featurizer, tmp_path / "featurizer.joblib", compress=3)
    expected = build.featurizer.transform(["what a great reform", "i hate it"])
    moved = tmp_path / "moved"
    shutil.copytree(result.artifact, moved)
    shutil.rmtree(result.artifact)  # the featurizer must not need its files
    try:
        script = textwrap.dedent(f"""
            import sys, joblib, numpy as np
            featurizer = joblib.load({str(tmp_path / "featurizer.joblib")!r})
            frame = featurizer.transform(["what a great reform", "i hate it"])
            np.save({str(tmp_path / "served.npy")!r}, frame.to_numpy())
            assert "torch" not in sys.modules and "transformers" not in sys.modules
        """)
        subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    finally:
        shutil.copytree(moved, result.artifact)
    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), expected.to_numpy(), atol=1e-6)
