"""The encoder step's artifact: a directory the feature build reads (the ONNX model, its
tokenizer, the posts it was fine-tuned on, the outputs it already computed, and what the step
measured), or a marker that the run has no encoder."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from civicsense.features.encoder.runtime import OnnxEncoder

MODEL_FILE, TOKENIZER_FILE = "encoder.onnx", "tokenizer.json"
TRAINED_ON_FILE, INFO_FILE = "trained_on.parquet", "encoder.json"
OUTPUTS_FILE = "outputs.parquet"


@dataclass(frozen=True)
class TrainedEncoder:
    """A fine-tuned encoder, carried inline (OnnxEncoder.embedded), and the ids of the posts it
    was fine-tuned on: the feature build keeps those out of the booster's training rows.
    `outputs` holds what the step computed with this very encoder (post_id, text, embedding,
    probabilities; outputs_frame), so the feature build need not encode those posts again."""

    encoder: OnnxEncoder
    trained_on: frozenset[str]
    info: dict[str, Any]
    outputs: pd.DataFrame | None = None


def outputs_frame(post_ids: pd.Series, texts: pd.Series, embeddings: np.ndarray,
                  probabilities: np.ndarray) -> pd.DataFrame:
    """The encoder's outputs on some posts, one row per post, vectors as float32 lists."""
    return pd.DataFrame({"post_id": post_ids.astype(str).to_numpy(),
                         "text": texts.astype(str).to_numpy(),
                         "embedding": list(embeddings.astype(np.float32)),
                         "probabilities": list(probabilities.astype(np.float32))})


def write_artifact(directory: str | Path, model_path: str | Path, tokenizer_path: str | Path,
                   trained_on: pd.Series, info: dict[str, Any],
                   outputs: pd.DataFrame | None = None) -> Path:
    """Write a fine-tuned encoder's artifact into `directory` (created); `outputs` (an
    outputs_frame) are the exported model's outputs the step already computed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, directory / MODEL_FILE)
    shutil.copyfile(tokenizer_path, directory / TOKENIZER_FILE)
    pd.DataFrame({"post_id": trained_on.astype(str).to_numpy()}).to_parquet(
        directory / TRAINED_ON_FILE, index=False)
    if outputs is not None:
        outputs.to_parquet(directory / OUTPUTS_FILE, index=False)
    (directory / INFO_FILE).write_text(json.dumps({"enabled": True, **info}, indent=2))
    return directory


def write_disabled(directory: str | Path) -> Path:
    """Mark `directory` (created) as the artifact of a run without an encoder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / INFO_FILE).write_text(json.dumps({"enabled": False}))
    return directory


def read_artifact(directory: str | Path) -> TrainedEncoder | None:
    """The artifact in `directory`: a TrainedEncoder, or None when the run has no encoder."""
    directory = Path(directory)
    try:
        info = json.loads((directory / INFO_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{directory} is not an encoder step's artifact: {error}") from None
    if not info.get("enabled"):
        return None
    ids = pd.read_parquet(directory / TRAINED_ON_FILE)["post_id"].astype(str)
    encoder = OnnxEncoder.embedded(directory / MODEL_FILE, directory / TOKENIZER_FILE)
    outputs_path = directory / OUTPUTS_FILE
    outputs = pd.read_parquet(outputs_path) if outputs_path.is_file() else None
    return TrainedEncoder(encoder, frozenset(ids), info, outputs)
