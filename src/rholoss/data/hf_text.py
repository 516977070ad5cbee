"""Hugging Face tokenizers and tokenized text behind the index contract: ``x`` is a dict of tensors (``input_ids``,
``attention_mask``) that the core passes through untouched.

Sentences are tokenized once, when the data is set up, and kept as one flat tensor of token ids with
offsets, so a point costs a slice and a large batch is padded only to its own longest sentence.
Hugging Face packages are imported where they are used, so the core installs without them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
NLP_EXTRA_HINT = "install the text extra: pip install 'rholoss[nlp]' (transformers, datasets, tokenizers)"


def require_nlp(what: str) -> None:
    """Fail early, and say how to fix it, when the ``[nlp]`` extra is missing."""
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{what} needs Hugging Face transformers and tokenizers: {NLP_EXTRA_HINT}.") from error


def hub_offline() -> bool:
    """Whether Hugging Face's offline mode is on (then only local folders and the cache are read)."""
    return any(os.environ.get(name, "0").lower() in ("1", "true", "yes", "on") for name in _OFFLINE_VARIABLES)


def missing_weights(name: str, cache_dir: str | None, error: OSError, offline_model: str) -> OSError:
    """The error for pretrained weights that are neither a local folder nor cached, with every way to
    provide them; ``offline_model``: the ``model=`` config that needs no download."""
    where = "Hugging Face offline mode is on" if hub_offline() else "the hub could not provide them"
    return OSError(
        f"Pretrained weights {name!r} are neither a local folder nor in the Hugging Face cache"
        f"{f' {cache_dir}' if cache_dir else ''}, and {where} ({error}). Run once with network access to "
        "cache them, set HF_HOME (or model.cache_dir) to a cache that has them, point model.pretrained at a "
        f"folder written by save_pretrained(), or use model={offline_model} (no download)."
    )


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer from a local directory (``save_pretrained`` layout), the Hugging Face cache,
    or the hub; an error that names every way to provide it otherwise."""
    require_nlp("A text datamodule")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except (OSError, ValueError) as error:
        where = "Hugging Face offline mode is on" if hub_offline() else "the hub could not provide it"
        raise OSError(
            f"Tokenizer {name_or_path!r} is neither a local directory nor in the Hugging Face cache, and "
            f"{where} ({error}). Run once with network access to cache it, set HF_HOME to a cache that "
            "has it, or set datamodule.tokenizer to a directory written by tokenizer.save_pretrained()."
        ) from error


class TokenizedTexts(Dataset):
    """Token id sequences of unequal length and their labels; item ``i`` is
    ``({"input_ids": ids_i}, label_i)``."""

    def __init__(self, sequences: Sequence[Sequence[int]], labels: Tensor) -> None:
        if len(sequences) != len(labels):
            raise ValueError(f"TokenizedTexts needs one label per text: {len(sequences)} texts, {len(labels)} labels.")
        lengths = torch.tensor([len(ids) for ids in sequences], dtype=torch.long)
        if len(lengths) and int(lengths.min()) == 0:
            raise ValueError("A text tokenized to no tokens at all: the tokenizer adds no special tokens?")
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        self.tokens = torch.tensor([token for ids in sequences for token in ids], dtype=torch.long)
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[dict[str, Tensor], Tensor]:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return {"input_ids": self.tokens[start:end]}, self.labels[index]


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text with the tokenizer's special tokens, truncated to ``max_length``."""
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


class PadToLongest:
    """Collate ``(index, {"input_ids": ids}, y)`` items into one batch padded to its longest text.

    Padding per batch (not to a fixed ``max_length``) keeps the selection forward pass as short as the
    batch allows; the attention mask tells the model which positions are padding.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(
        self, items: Sequence[tuple[int, dict[str, Tensor], Tensor]]
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        ids = [x["input_ids"] for _, x, _ in items]
        lengths = torch.tensor([len(sequence) for sequence in ids])
        input_ids = pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id)
        attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        index = torch.tensor([i for i, _, _ in items], dtype=torch.long)
        labels = torch.stack([torch.as_tensor(y) for _, _, y in items])
        return index, {"input_ids": input_ids, "attention_mask": attention_mask}, labels
