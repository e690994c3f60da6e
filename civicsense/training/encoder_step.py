"""The pipeline's encoder step: fine-tune MiniLM on a slice of the training split, export it to
ONNX (int8 where it keeps macro recall), and log the run (parameters, loss curve, its head's
macro recall, the model) to MLflow. The outputs it computes on the rest of the training split
and on validation travel in its artifact: the feature build reuses them."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.entities import Metric

from civicsense.data.split import SplitMethod, sample_and_split, training_slice
from civicsense.features.encoder.artifact import outputs_frame, write_artifact
from civicsense.features.encoder.export import (
    choose_precision,
    copy_tokenizer,
    export_onnx,
    head_macro_recall,
    quantize_int8,
)
from civicsense.features.encoder.runtime import OnnxEncoder
from civicsense.features.encoder.train import (
    FineTuneParams,
    ProgressCallback,
    encode_labels,
    fine_tune,
)
from civicsense.settings import Settings
from civicsense.training.registry import configure_mlflow

log = logging.getLogger(__name__)
LOSS_LOG_EVERY = 5  # optimizer steps per logged loss point (MLflow's loss curve)


@dataclass(frozen=True)
class EncoderStepResult:
    """What the step measured and where its artifact is."""

    run_id: str
    precision: str
    holdout_macro_recall: float  # its head, on the training posts it did not see
    validation_macro_recall: float  # its head, on the validation split (reported, not used)
    fine_tune_seconds: float
    texts_per_second: float
    fine_tuned_posts: int
    artifact: Path


def loss_figure(losses: list[float]) -> Figure:
    """The fine-tune's loss per optimizer step, with a moving average."""
    figure = Figure(figsize=(6, 3.2))
    axes = figure.subplots()
    steps = np.arange(1, len(losses) + 1)
    axes.plot(steps, losses, lw=0.6, alpha=0.4, label="loss")
    window = max(1, len(losses) // 40)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    axes.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
    axes.set(xlabel="optimizer step", ylabel="class-weighted cross-entropy",
             title="encoder fine-tune")
    axes.legend()
    figure.tight_layout()
    return figure


def fit_encoder(
    settings: Settings,
    snapshot: pd.DataFrame,
    out_dir: Path,
    params: FineTuneParams,
    *,
    fraction: float,
    split_method: SplitMethod = "time",
    validation_fraction: float = 0.2,
    sample_size: int = 0,
    seed: int = 0,
    tags: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
    phase: Callable[[str], None] = log.info,
) -> EncoderStepResult:
    """Fine-tune on `fraction` of the training split (the same rows and split as the feature
    build), keep int8 when it scores within tolerance of fp32 on the rest of the training
    split, and write the artifact (civicsense.features.encoder.artifact) into `out_dir`."""
    rows = sample_and_split(snapshot, split_method, validation_fraction, sample_size, seed)
    tuned = training_slice(rows, fraction, seed)
    holdout = (rows["split"] == "train").to_numpy() & ~tuned
    validation = (rows["split"] == "validation").to_numpy()
    texts = rows["text"].astype(str)
    phase(f"fine-tuning the encoder on {int(tuned.sum()):,} of "
          f"{int((rows['split'] == 'train').sum()):,} training posts")
    fitted = fine_tune(texts[tuned].tolist(), rows.loc[tuned, "label"].tolist(), params,
                       progress=progress)
    with tempfile.TemporaryDirectory() as staging:
        work = Path(staging)
        phase("exporting the encoder to ONNX (fp32 and int8)")
        fp32 = export_onnx(fitted.model, work / "fp32.onnx", max_len=params.max_len,
                           emoji_names=params.emoji_names)
        int8 = quantize_int8(fp32, work / "int8.onnx")
        tokenizer = copy_tokenizer(work / "tokenizer.json")
        phase(f"choosing fp32 or int8 on {int(holdout.sum()):,} held-out training posts")
        choice = choose_precision(fp32, int8, tokenizer, texts[holdout].tolist(),
                                  rows.loc[holdout, "label"].tolist(), threads=params.threads)
        kept = OnnxEncoder(choice.path, tokenizer, threads=params.threads)
        phase("scoring the encoder's head on the validation split")
        started = time.perf_counter()
        val_outputs = kept.encode(texts[validation].tolist())
        val_recall = head_macro_recall(encode_labels(rows.loc[validation, "label"]),
                                       val_outputs[1])
        holdout_recall = choice.int8_recall if choice.kept == "int8" else choice.fp32_recall
        metrics = {"holdout_macro_recall": holdout_recall, "val_macro_recall": val_recall,
                   "holdout_macro_recall_fp32": choice.fp32_recall,
                   "holdout_macro_recall_int8": choice.int8_recall,
                   "fine_tune_seconds": fitted.seconds,
                   "texts_per_second": fitted.texts_per_second,
                   "padded_tokens": float(fitted.tokens_seen),
                   "validation_encode_seconds": time.perf_counter() - started,
                   "onnx_megabytes": choice.path.stat().st_size / 1e6}
        run_id = _log_run(settings, params, fraction, int(tuned.sum()), fitted.losses,
                          metrics, choice.kept, choice.path, tokenizer, tags or {})
        info = {"run_id": run_id, "precision": choice.kept, "fraction": fraction,
                "fine_tuned_posts": int(tuned.sum()), "params": asdict(params), **metrics}
        outputs = pd.concat([
            outputs_frame(rows.loc[holdout, "post_id"], texts[holdout], *choice.outputs),
            outputs_frame(rows.loc[validation, "post_id"], texts[validation], *val_outputs)],
            ignore_index=True)
        artifact = write_artifact(out_dir, choice.path, tokenizer,
                                  rows.loc[tuned, "post_id"], info, outputs)
    return EncoderStepResult(run_id, choice.kept, holdout_recall, val_recall, fitted.seconds,
                             fitted.texts_per_second, int(tuned.sum()), artifact)


def _log_run(settings: Settings, params: FineTuneParams, fraction: float, posts: int,
             losses: list[float], metrics: dict[str, float], precision: str, model: Path,
             tokenizer: Path, tags: dict[str, str]) -> str:
    configure_mlflow(settings)
    with mlflow.start_run(run_name=f"encoder-{tags.get('pipeline_run', 'local')}") as run:
        mlflow.log_params({**asdict(params), "fraction": fraction, "fine_tuned_posts": posts,
                           "precision": precision, "base_model": "all-MiniLM-L6-v2"})
        mlflow.set_tags({**tags, "step": "encoder"})
        stamp = int(time.time() * 1000)
        points = [Metric("loss", value, stamp, step) for step, value in enumerate(losses, 1)
                  if step % LOSS_LOG_EVERY == 0 or step == len(losses)]
        client = mlflow.MlflowClient()
        for start in range(0, len(points), 1000):  # MLflow's log_batch limit
            client.log_batch(run.info.run_id, metrics=points[start:start + 1000])
        mlflow.log_metrics(metrics)
        mlflow.log_figure(loss_figure(losses), "loss_curve.png")
        mlflow.log_artifact(str(model), "encoder")
        mlflow.log_artifact(str(tokenizer), "encoder")
    return run.info.run_id
