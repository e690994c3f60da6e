"""The torch modules: MiniLM + a linear 3-class head on the mean-pooled embedding (training side).

torch is imported only when a module class is first asked for: `EncoderClassifier` and
`ExportWrapper` are built on first access (module `__getattr__`) and registered under this
module's name, so a whole model still pickles (torch.save) and unpickles by reference.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from civicsense.features.encoder.tokens import base_model_dir, force_offline

if TYPE_CHECKING:
    import torch
    from torch import nn


def load_base_encoder(model_dir: str | Path | None = None) -> nn.Module:
    """The pre-trained MiniLM BertModel from a local directory (default: the bundled
    all-MiniLM-L6-v2), offline: `local_files_only` and the HF offline switches. Eager
    attention: it traces to ONNX as is and is deterministic on CPU."""
    force_offline()
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the load report lists the unused pooler of the checkpoint
    hf_logging.disable_progress_bar()  # a bar per load: noise in a CLI's own progress display
    try:
        return BertModel.from_pretrained(
            str(model_dir if model_dir is not None else base_model_dir()),
            local_files_only=True, attn_implementation="eager", add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states over the real (unmasked) tokens: [b, L, H] -> [b, H]."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@lru_cache(maxsize=1)
def _classes() -> dict[str, type]:
    import torch
    from torch import nn

    class EncoderClassifier(nn.Module):
        """MiniLM encoder + linear head: forward(input_ids, attention_mask) -> (embedding,
        logits)."""

        def __init__(self, encoder: nn.Module, n_classes: int = 3) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = nn.Linear(int(encoder.config.hidden_size), n_classes)

        @property
        def embedding_dim(self) -> int:
            return int(self.head.in_features)

        def forward(self, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.encoder(input_ids=input_ids,
                                  attention_mask=attention_mask).last_hidden_state
            embedding = mean_pool(hidden, attention_mask)
            return embedding, self.head(embedding)

    class ExportWrapper(nn.Module):
        """What the ONNX graph computes: (embedding, logits, probabilities)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            embedding, logits = self.model(input_ids, attention_mask)
            return embedding, logits, torch.softmax(logits, dim=-1)

    classes: dict[str, type] = {"EncoderClassifier": EncoderClassifier,
                                "ExportWrapper": ExportWrapper}
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = __name__, name  # pickle finds them by name
    return classes


def __getattr__(name: str) -> Any:
    if name in ("EncoderClassifier", "ExportWrapper"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
