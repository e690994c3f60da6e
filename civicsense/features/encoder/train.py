"""Fine-tuning MiniLM + a 3-class head on labelled tweets: seeded, deterministic, dynamic padding.

torch and transformers are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from civicsense import LABELS
from civicsense.features.encoder import tokens
from civicsense.features.encoder.runtime import available_cores

if TYPE_CHECKING:
    from civicsense.features.encoder.net import EncoderClassifier

# (step, total_steps, loss): called after every optimizer step, steps counted from 1.
ProgressCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class FineTuneParams:
    """How to fine-tune. `max_steps` caps the optimizer steps (the LR schedule spans the capped
    run); `dynamic_padding=False` pads every batch to `max_len` (the baseline it beats);
    `threads=None` uses every available core."""

    epochs: int = 2
    batch_size: int = 32
    max_len: int = tokens.DEFAULT_MAX_LEN
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    threads: int | None = None
    max_steps: int | None = None
    dynamic_padding: bool = True
    pool_batches: int = 50
    # Emoji read as their names (tokens.name_emoji); recorded in the export's metadata so the
    # runtime prepares text the same way.
    emoji_names: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.max_len < 2:
            raise ValueError(f"epochs, batch_size >= 1 and max_len >= 2 needed: {self}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1): {self.warmup_ratio}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1: {self.max_steps}")


@dataclass
class FineTuneResult:
    """The trained module (eval mode), the loss of every step, and what the run cost."""

    model: EncoderClassifier
    losses: list[float]
    params: FineTuneParams
    texts_seen: int
    tokens_seen: int  # padded positions fed to the encoder: what dynamic padding saves
    seconds: float
    class_weights: list[float] = field(default_factory=list)

    @property
    def texts_per_second(self) -> float:
        return self.texts_seen / self.seconds if self.seconds > 0 else float("nan")


def encode_labels(labels: Sequence[str | int]) -> np.ndarray:
    """Class indices (int64) in LABELS order; accepts label names or indices."""
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        index = LABELS.index(label) if isinstance(label, str) else int(label)
        if not 0 <= index < len(LABELS):
            raise ValueError(f"label {label!r} is not one of {LABELS}")
        out[i] = index
    return out


def class_weights(y: np.ndarray, n_classes: int = len(LABELS)) -> np.ndarray:
    """Balanced weights n / (k * count_c), as sklearn's 'balanced' (1.0 for an absent class)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes, dtype=np.float64)
    weights[present] = len(y) / (present.sum() * counts[present])
    return weights.astype(np.float32)


def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: 0 → 1 linearly over the warmup, then linearly down to 0 at the end."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


@contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed random/numpy/torch, fix torch's thread count and turn on deterministic algorithms;
    the thread count and the deterministic flag are restored on exit."""
    import torch

    previous_threads = torch.get_num_threads()
    previous_flag = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads or available_cores())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_flag)


def build_model(seed: int = 0, model_dir: str | Path | None = None) -> EncoderClassifier:
    """The base encoder with a freshly initialised head (seeded)."""
    import torch

    from civicsense.features.encoder.net import EncoderClassifier, load_base_encoder

    encoder = load_base_encoder(model_dir)
    torch.manual_seed(seed)
    return EncoderClassifier(encoder, n_classes=len(LABELS))


def _optimizer(model: Any, params: FineTuneParams) -> Any:
    import torch

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": params.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.learning_rate)


def fine_tune(texts: Sequence[str], labels: Sequence[str | int],
              params: FineTuneParams = FineTuneParams(), *,
              model_dir: str | Path | None = None, tokenizer_path: str | Path | None = None,
              progress: ProgressCallback | None = None) -> FineTuneResult:
    """Fine-tune the bundled MiniLM (or `model_dir`) + a linear head on `texts`/`labels` with
    class-weighted cross-entropy, AdamW and a linear warmup/decay schedule; batches are
    length-bucketed and padded to their own longest text. Same params and data, same threads:
    the same loss curve. Returns the model in eval mode."""
    import torch

    if len(texts) != len(labels) or not texts:
        raise ValueError(f"need as many labels as texts, and some: {len(texts)}/{len(labels)}")
    y = encode_labels(labels)
    tokenizer = tokens.load_tokenizer(tokenizer_path, max_len=params.max_len)
    ids = tokens.encode_ids(tokenizer, texts, emoji_names=params.emoji_names)
    lengths = [len(row) for row in ids]
    n_batches = math.ceil(len(ids) / params.batch_size)
    total = params.epochs * n_batches
    total = min(total, params.max_steps) if params.max_steps else total
    weights = class_weights(y)
    pad_to = None if params.dynamic_padding else params.max_len

    with deterministic(params.seed, params.threads):
        model = build_model(params.seed, model_dir)
        model.train()
        optimizer = _optimizer(model, params)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, linear_schedule(int(params.warmup_ratio * total), total))
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights))
        rng = np.random.default_rng(params.seed)
        losses: list[float] = []
        texts_seen = tokens_seen = 0
        start = time.perf_counter()
        while len(losses) < total:
            batches = tokens.length_batches(lengths, params.batch_size, rng, params.pool_batches)
            for batch in batches:
                input_ids, mask = tokens.pad_batch([ids[i] for i in batch], pad_to)
                _, logits = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
                loss = loss_fn(logits, torch.from_numpy(y[batch]))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                texts_seen += len(batch)
                tokens_seen += int(input_ids.size)
                if progress is not None:
                    progress(len(losses), total, losses[-1])
                if len(losses) >= total:
                    break
        seconds = time.perf_counter() - start
    model.eval()
    return FineTuneResult(model=model, losses=losses, params=params, texts_seen=texts_seen,
                          tokens_seen=tokens_seen, seconds=seconds,
                          class_weights=[float(w) for w in weights])


def predict_torch(model: EncoderClassifier, texts: Sequence[str], *,
                  max_len: int = tokens.DEFAULT_MAX_LEN, batch_size: int = 32,
                  tokenizer_path: str | Path | None = None,
                  emoji_names: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings float32 [n, H], probabilities float32 [n, 3]) from the torch model in eval
    mode, in input order: the reference the ONNX export is checked against."""
    import torch

    tokenizer = tokens.load_tokenizer(tokenizer_path, max_len=max_len)
    ids = tokens.encode_ids(tokenizer, texts, emoji_names=emoji_names)
    embeddings = np.zeros((len(ids), model.embedding_dim), dtype=np.float32)
    probabilities = np.zeros((len(ids), len(LABELS)), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in tokens.length_batches([len(row) for row in ids], batch_size):
            input_ids, mask = tokens.pad_batch([ids[i] for i in batch])
            embedding, logits = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
            embeddings[batch] = embedding.numpy()
            probabilities[batch] = torch.softmax(logits, dim=-1).numpy()
    model.train(was_training)
    return embeddings, probabilities
