"""ONNX export of the fine-tuned encoder, int8 dynamic quantization, and the fp32/int8 choice.

The graph takes (input_ids, attention_mask) int64 [batch, seq], both axes dynamic, and returns
embedding [batch, 384], logits [batch, 3] and probabilities [batch, 3]; it records max_len and
the label order in its metadata so the runtime tokenizes as training did.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from sklearn.metrics import recall_score

from civicsense import LABELS
from civicsense.features.encoder.runtime import (
    INPUT_NAMES,
    METADATA_EMOJI_NAMES,
    METADATA_LABELS,
    METADATA_MAX_LEN,
    METADATA_PRECISION,
    OUTPUT_NAMES,
    OnnxEncoder,
)
from civicsense.features.encoder.tokens import DEFAULT_MAX_LEN, base_tokenizer_path

if TYPE_CHECKING:
    from civicsense.features.encoder.net import EncoderClassifier

OPSET = 17
INT8_TOLERANCE = 0.005  # int8 is kept when its macro recall is at most this far below fp32


def _set_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
    onnx.save(model, str(path))


def export_onnx(model: EncoderClassifier, path: str | Path, *,
                max_len: int = DEFAULT_MAX_LEN, opset: int = OPSET,
                emoji_names: bool = True) -> Path:
    """Write `model` as an fp32 ONNX graph (TorchScript exporter: `dynamo=False` needs no
    onnxscript) with dynamic batch and sequence axes. Traced on a padded batch so the
    attention mask stays in the graph. `emoji_names` records whether the model was fine-tuned
    on text with emoji named (tokens.name_emoji): the runtime prepares text the same way."""
    import torch

    from civicsense.features.encoder.net import ExportWrapper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model).eval()
    input_ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]])
    attention_mask = (input_ids != 0).to(torch.int64)
    dynamic = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "sequence"},
               **{name: {0: "batch"} for name in OUTPUT_NAMES}}
    with torch.inference_mode(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated (it still works offline) and traces a shape
        # check of transformers' masking code as a constant: both warnings are known.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (input_ids, attention_mask), str(path), dynamo=False,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True)
    _set_metadata(path, {METADATA_MAX_LEN: str(max_len), METADATA_LABELS: json.dumps(LABELS),
                         METADATA_PRECISION: "fp32",
                         METADATA_EMOJI_NAMES: "1" if emoji_names else "0",
                         "civicsense.base_model": "sentence-transformers/all-MiniLM-L6-v2"})
    return path


def copy_tokenizer(dest: str | Path, source: str | Path | None = None) -> Path:
    """Ship tokenizer.json (default: the base model's) beside the ONNX model."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source if source is not None else base_tokenizer_path(), dest)
    return dest


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Dynamic int8 quantization (weights int8, activations quantized per batch at run time)
    of an fp32 export; the metadata is carried over."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    # The quantizer logs one INFO line per unquantized tensor on the root logger: hundreds of
    # lines that would scroll through a run's phase display.
    logging.disable(logging.INFO)
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    source = onnx.load(str(fp32_path), load_external_data=False)
    metadata = {prop.key: prop.value for prop in source.metadata_props}
    _set_metadata(int8_path, {**metadata, METADATA_PRECISION: "int8"})
    return int8_path


def prefer_int8(fp32_recall: float, int8_recall: float,
                tolerance: float = INT8_TOLERANCE) -> bool:
    """Keep int8 when its macro recall is within `tolerance` of fp32 (or better)."""
    return bool(int8_recall >= fp32_recall - tolerance - 1e-12)


def head_macro_recall(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Macro recall of the encoder head's arg-max against label ids, as evaluate's primary
    metric counts it: every class, an absent one as a recall of 0."""
    if not len(truth):
        return float("nan")
    return float(recall_score(truth, probabilities.argmax(axis=1),
                              labels=list(range(len(LABELS))), average="macro",
                              zero_division=0))


@dataclass(frozen=True)
class PrecisionChoice:
    """Which export was kept, its path, both macro recalls, and the kept export's outputs
    (embeddings, probabilities) on the scored texts, in input order."""

    kept: Literal["fp32", "int8"]
    path: Path
    fp32_recall: float
    int8_recall: float
    tolerance: float
    outputs: tuple[np.ndarray, np.ndarray]


def choose_precision(fp32_path: str | Path, int8_path: str | Path,
                     tokenizer_path: str | Path, texts: Sequence[str],
                     labels: Sequence[str | int], *, tolerance: float = INT8_TOLERANCE,
                     threads: int | None = None, batch_size: int = 1) -> PrecisionChoice:
    """Score the validation set with both exports and keep int8 only when its macro recall is
    within `tolerance` of fp32. `batch_size=1` scores int8 as serving does, one text at a time
    (exact; see the runtime module on batch effects); fp32 is batched either way."""
    from civicsense.features.encoder.train import encode_labels

    truth = encode_labels(labels)
    scores, outputs = {}, {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        size = batch_size if name == "int8" else max(batch_size, 32)
        encoder = OnnxEncoder(path, tokenizer_path, threads=threads, batch_size=size)
        outputs[name] = encoder.encode(texts)
        scores[name] = head_macro_recall(truth, outputs[name][1])
    kept: Literal["fp32", "int8"] = (
        "int8" if prefer_int8(scores["fp32"], scores["int8"], tolerance) else "fp32")
    return PrecisionChoice(kept=kept, path=Path(int8_path if kept == "int8" else fp32_path),
                           fp32_recall=scores["fp32"], int8_recall=scores["int8"],
                           tolerance=tolerance, outputs=outputs[kept])
