"""Hugging Face sequence classifiers as plain ``nn.Module``s: a dict of tensors in, logits out.

Pretrained checkpoints (ALBERT-base, or any ``AutoModelForSequenceClassification`` name or folder)
come from the local Hugging Face cache or the hub; ``pretrained=None`` builds a freshly initialised
transformer from a small config instead, which needs no download (tests, CPU runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from rholoss.data.hf_text import missing_weights, require_nlp


class SequenceClassifier(nn.Module):
    """A transformer classifier over token ids.

    Args:
        input_shape: ``(max_length,)`` from the text datamodule: the longest sequence it serves.
        num_classes: size of the classification head: fresh on a pretrained body (ALBERT-base has no
            head), or the checkpoint's own head where it has this many classes.
        vocab_size, pad_token_id: from the datamodule's tokenizer; size the embeddings of a model built
            from ``config``, and are checked against a pretrained model's.
        pretrained: a hub name or local folder; None builds ``architecture`` from ``config``.
        architecture: a ``transformers`` model type (``bert``, ``albert``, …) for ``pretrained=None``.
        config: that model's config values (layer sizes, dropout, …).
        cache_dir: Hugging Face cache to read (and fill) instead of the default one.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        pretrained: str | None = None,
        architecture: str = "bert",
        config: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        require_nlp("model SequenceClassifier")
        if len(input_shape) != 1:
            raise ValueError(
                f"SequenceClassifier reads token ids, but the datamodule's inputs have shape {tuple(input_shape)}: "
                "use a text datamodule (e.g. datamodule=cola), or an image model for this data."
            )
        max_length = int(input_shape[0])
        if pretrained:
            self.model = _load_pretrained(pretrained, num_classes, cache_dir)
            _check_fits(self.model.config, pretrained, vocab_size, max_length)
        else:
            if vocab_size is None:
                raise ValueError(
                    "A transformer built from a config needs the tokenizer's vocab_size, which a text datamodule "
                    "provides: train it with one (e.g. datamodule=cola), or set model.pretrained."
                )
            from transformers import AutoConfig, AutoModelForSequenceClassification

            settings = {"max_position_embeddings": max_length, **(config or {})}
            hf_config = AutoConfig.for_model(
                architecture, vocab_size=vocab_size, pad_token_id=pad_token_id, num_labels=num_classes, **settings
            )
            self.model = AutoModelForSequenceClassification.from_config(hf_config)

    def forward(self, x: Mapping[str, Tensor]) -> Tensor:
        if not isinstance(x, Mapping):
            raise TypeError(
                "SequenceClassifier takes a dict of tensors (input_ids, attention_mask) from a text datamodule, "
                f"got {type(x).__name__}."
            )
        return self.model(**x).logits


def _load_pretrained(name: str, num_classes: int, cache_dir: str | None) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    try:
        # A checkpoint fine-tuned for another number of classes keeps its body; its head is replaced
        # (without ignore_mismatched_sizes transformers refuses to load it at all).
        return AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=num_classes, cache_dir=cache_dir, ignore_mismatched_sizes=True
        )
    except OSError as error:
        raise missing_weights(name, cache_dir, error, "tiny_transformer") from error


def _check_fits(config: Any, name: str, vocab_size: int | None, max_length: int) -> None:
    """A tokenizer with more ids than the embeddings, or texts longer than the position table, would
    fail deep inside the first forward pass; say so before training."""
    if vocab_size is not None and vocab_size > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {vocab_size} ids but {name!r} embeds {config.vocab_size}: use the model's own "
            f"tokenizer (datamodule.tokenizer={name})."
        )
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise ValueError(f"datamodule.max_length={max_length} exceeds the {positions} positions of {name!r}: lower it.")
