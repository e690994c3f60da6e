"""Embedding and scoring texts with the exported encoder in ONNX Runtime (no torch needed).

`OnnxEncoder` is picklable: it carries paths (or, made by `OnnxEncoder.embedded`, the model's
and tokenizer's bytes, so a pickled featurizer is self-contained) and settings, and creates its
tokenizer and InferenceSession lazily (again after unpickling).

Dynamic int8 quantization computes each activation's scale over the whole batch tensor, so with
an int8 model a text's outputs depend a little on what it is batched with (seen: up to ~0.25
absolute in an embedding coordinate and ~0.06 in a probability at batch 16, against ~1e-6 for
fp32). So an int8 model is run one text at a time by default (exact: a text always gives the
same numbers, in training and serving alike), an fp32 model in batches; `batch_skew` measures
the drift of a batched setting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from civicsense import LABELS
from civicsense.features.encoder.tokens import (
    DEFAULT_MAX_LEN,
    encode_ids,
    length_batches,
    load_tokenizer,
    pad_batch,
)

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from tokenizers import Tokenizer

# The graph's interface (civicsense.features.encoder.export writes it).
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("embedding", "logits", "probabilities")
METADATA_MAX_LEN = "civicsense.max_len"
METADATA_LABELS = "civicsense.labels"
METADATA_PRECISION = "civicsense.precision"  # "fp32" or "int8"
# "1": the model was fine-tuned on text with emoji replaced by their names (tokens.name_emoji);
# models exported before this key existed read raw text.
METADATA_EMOJI_NAMES = "civicsense.emoji_names"
FP32_BATCH_SIZE = 32


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def read_metadata(model_path: str | Path) -> dict[str, str]:
    """The custom metadata the export stored in an ONNX file (max_len, labels, ...)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


class OnnxEncoder:
    """texts -> (embeddings float32 [n, 384], probabilities float32 [n, 3]) in ONNX Runtime.

    Texts are length-sorted into batches of `batch_size` padded to their own longest text and
    returned in input order. `threads=None` uses every available core; `max_len=None` takes
    the one the model was trained with (its metadata), else DEFAULT_MAX_LEN; `batch_size=None`
    is 1 for an int8 model (exact) and FP32_BATCH_SIZE for fp32."""

    def __init__(self, model_path: str | Path, tokenizer_path: str | Path,
                 threads: int | None = None, batch_size: int | None = None,
                 max_len: int | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = Path(model_path)
        self.tokenizer_path = Path(tokenizer_path)
        self.threads = threads
        self.batch_size = batch_size
        self.max_len = max_len
        self.model_bytes: bytes | None = None
        self.tokenizer_json: str | None = None
        self._session: InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._emoji_names = False

    @classmethod
    def embedded(cls, model_path: str | Path, tokenizer_path: str | Path,
                 threads: int | None = None, batch_size: int | None = None,
                 max_len: int | None = None) -> OnnxEncoder:
        """An encoder that carries the ONNX model and tokenizer.json themselves: it pickles
        (into a model package) and runs wherever it is unpickled, without those files."""
        encoder = cls(model_path, tokenizer_path, threads, batch_size, max_len)
        encoder.model_bytes = Path(model_path).read_bytes()
        encoder.tokenizer_json = Path(tokenizer_path).read_text(encoding="utf-8")
        return encoder

    @property
    def nbytes(self) -> int:
        """How many bytes of model and tokenizer this encoder carries (0 when it reads files)."""
        return len(self.model_bytes or b"") + len((self.tokenizer_json or "").encode())

    def __repr__(self) -> str:
        return (f"OnnxEncoder({str(self.model_path)!r}, {str(self.tokenizer_path)!r}, "
                f"threads={self.threads}, batch_size={self.batch_size}, max_len={self.max_len})")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = state["_tokenizer"] = None  # native handles: rebuilt on first use
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("model_bytes", None)
        state.setdefault("tokenizer_json", None)
        state.setdefault("_emoji_names", False)
        self.__dict__.update(state)

    @property
    def session(self) -> InferenceSession:
        """The InferenceSession, created on first use (sequential, `threads` intra-op)."""
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or available_cores()
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            model = self.model_bytes if self.model_bytes is not None else str(self.model_path)
            self._session = ort.InferenceSession(model, options,
                                                 providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map
            self._emoji_names = meta.get(METADATA_EMOJI_NAMES) == "1"
            if self.max_len is None:
                self.max_len = int(meta.get(METADATA_MAX_LEN, DEFAULT_MAX_LEN))
            if self.batch_size is None:
                int8 = meta.get(METADATA_PRECISION) == "int8" or "onnx.infer" in meta
                self.batch_size = 1 if int8 else FP32_BATCH_SIZE
        return self._session

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            session = self.session  # settles max_len from the model's metadata
            del session
            self._tokenizer = load_tokenizer(self.tokenizer_path, max_len=self.max_len,
                                             json_text=self.tokenizer_json)
        return self._tokenizer

    @property
    def labels(self) -> tuple[str, ...]:
        """The class order of the probability columns, as the export recorded it."""
        meta = self.session.get_modelmeta().custom_metadata_map
        return tuple(json.loads(meta[METADATA_LABELS])) if METADATA_LABELS in meta else LABELS

    def run_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, probabilities) of one already padded int64 batch."""
        embedding, probabilities = self.session.run(
            ["embedding", "probabilities"],
            {"input_ids": input_ids, "attention_mask": attention_mask})
        return embedding.astype(np.float32), probabilities.astype(np.float32)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings float32 [n, 384], probabilities float32 [n, 3]) in input order."""
        texts = list(texts)
        width = self.session.get_outputs()[0].shape[-1]
        dim = width if isinstance(width, int) else 384
        embeddings = np.zeros((len(texts), dim), dtype=np.float32)
        probabilities = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        ids = encode_ids(self.tokenizer, texts, emoji_names=self._emoji_names)
        assert self.batch_size is not None  # settled by the session
        for batch in length_batches([len(row) for row in ids], self.batch_size):
            input_ids, mask = pad_batch([ids[i] for i in batch])
            embeddings[batch], probabilities[batch] = self.run_batch(input_ids, mask)
        return embeddings, probabilities

    __call__ = encode


@dataclass(frozen=True)
class BatchSkew:
    """How far batched outputs are from one-text-at-a-time outputs (max absolute difference),
    and how many texts change their arg-max class."""

    batch_size: int | None
    max_embedding_diff: float
    max_probability_diff: float
    changed_predictions: int


def batch_skew(encoder: OnnxEncoder, texts: Sequence[str]) -> BatchSkew:
    """Compare `encoder` (its batch_size) with the same model one text at a time: zero-ish for
    fp32, a small tolerance for dynamic int8. The training/serving skew check to run when
    training featurizes in batches and serving scores one request at a time."""
    single = OnnxEncoder(encoder.model_path, encoder.tokenizer_path, threads=encoder.threads,
                         batch_size=1, max_len=encoder.max_len)
    batched_emb, batched_prob = encoder.encode(texts)  # settles encoder.batch_size
    single_emb, single_prob = single.encode(texts)
    return BatchSkew(
        batch_size=encoder.batch_size,
        max_embedding_diff=float(np.abs(batched_emb - single_emb).max(initial=0.0)),
        max_probability_diff=float(np.abs(batched_prob - single_prob).max(initial=0.0)),
        changed_predictions=int((batched_prob.argmax(1) != single_prob.argmax(1)).sum()))
