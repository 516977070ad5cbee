"""Hugging Face causal language models as plain ``nn.Module``s: token ids in, next-token logits out.

A pretrained checkpoint (any ``AutoModelForCausalLM`` name or folder) comes from the local Hugging
Face cache or the hub; ``pretrained=None`` builds a freshly initialised model from a small config
instead (a tiny GPT-2 by default), which needs no download (tests, CPU runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from rholoss.data.hf_text import missing_weights, require_nlp


class CausalLM(nn.Module):
    """A causal transformer over windows of token ids: ``forward(input_ids [B, T]) -> logits [B, T, V]``,
    logit ``t`` predicting the token after position ``t``.

    Args:
        input_shape: ``(seq_len,)`` from the corpus datamodule: the window it serves.
        num_classes: the number of logits, the tokenizer's vocabulary size (the datamodule's
            ``num_classes``).
        vocab_size, eos_token_id: from the datamodule's tokenizer (``model_kwargs``); size the
            embeddings of a model built from ``config`` and are checked against a pretrained model's.
        pretrained: a hub name or local folder; None builds ``architecture`` from ``config``.
        architecture: a ``transformers`` model type (``gpt2``, ``llama``, …) for ``pretrained=None``.
        config: that model's config values (layers, width, heads, …).
        cache_dir: Hugging Face cache to read (and fill) instead of the default one.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        vocab_size: int | None = None,
        eos_token_id: int | None = None,
        pretrained: str | None = None,
        architecture: str = "gpt2",
        config: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        require_nlp("model CausalLM")
        if len(input_shape) != 1:
            raise ValueError(
                f"CausalLM reads windows of token ids, but the datamodule's inputs have shape {tuple(input_shape)}: "
                "use a corpus datamodule (e.g. datamodule=code_corpus)."
            )
        seq_len = int(input_shape[0])
        vocab_size = num_classes if vocab_size is None else vocab_size
        if vocab_size != num_classes:
            raise ValueError(
                f"CausalLM predicts one logit per token id: vocab_size={vocab_size} but num_classes={num_classes}."
            )
        if pretrained:
            self.model = _load_pretrained(pretrained, cache_dir)
            _check_fits(self.model.config, pretrained, vocab_size, seq_len)
        else:
            from transformers import AutoConfig, AutoModelForCausalLM

            settings = {_position_key(architecture): seq_len, **(config or {})}
            hf_config = AutoConfig.for_model(
                architecture, vocab_size=vocab_size, bos_token_id=eos_token_id, eos_token_id=eos_token_id, **settings
            )
            self.model = AutoModelForCausalLM.from_config(hf_config)
        self.vocab_size = vocab_size

    def forward(self, input_ids: Tensor | Mapping[str, Tensor]) -> Tensor:
        if isinstance(input_ids, Mapping):
            return self.model(**input_ids).logits
        return self.model(input_ids=input_ids).logits


def _position_key(architecture: str) -> str:
    """The config key of the position table's length: GPT-2's own name, or the common one."""
    return "n_positions" if architecture == "gpt2" else "max_position_embeddings"


def _load_pretrained(name: str, cache_dir: str | None) -> nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(name, cache_dir=cache_dir)
    except OSError as error:
        raise missing_weights(name, cache_dir, error, "tiny_gpt2") from error


def _check_fits(config: Any, name: str, vocab_size: int, seq_len: int) -> None:
    """A tokenizer with more ids than the embeddings, or windows longer than the position table, would
    fail deep inside the first forward pass; say so before training."""
    if vocab_size > config.vocab_size:
        raise ValueError(
            f"The corpus has {vocab_size} token ids but {name!r} embeds {config.vocab_size}: tokenize with the "
            f"model's own tokenizer (datamodule.tokenizer={name})."
        )
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if positions is not None and seq_len > positions:
        raise ValueError(f"datamodule.seq_len={seq_len} exceeds the {positions} positions of {name!r}: lower it.")
