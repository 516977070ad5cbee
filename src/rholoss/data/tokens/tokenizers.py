"""Tokenizers for a corpus of files: bytes (needs nothing), a BPE trained here on the holdout files,
or any Hugging Face tokenizer by name or folder.

Each turns one file's bytes into an array of ids, says how many ids there are, which id ends a
document, and has an ``identity`` that changes
whenever its output could: it keys the token cache and the pool's fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rholoss.atomic import atomic_write_text
from rholoss.data.hf_text import load_tokenizer, require_nlp

END_OF_DOCUMENT = "<|endoftext|>"


class CorpusTokenizer(Protocol):
    identity: str
    vocab_size: int

    @property
    def eos_token_id(self) -> int | None: ...

    def encode(self, data: bytes) -> np.ndarray: ...


class ByteTokenizer:
    """Each byte is its own id (0-255) and 256 ends a document: nothing to train or download, and
    any file, whatever its encoding, tokenizes without loss."""

    identity = "byte"
    vocab_size = 257
    eos_token_id = 256

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.uint16)


class BackendTokenizer:
    """A ``tokenizers.Tokenizer`` (a locally trained BPE, or a Hugging Face fast tokenizer's backend).

    Text is decoded as UTF-8 with undecodable bytes replaced (U+FFFD); no special tokens are added
    inside a document, ``eos_token_id`` ends each one.
    """

    def __init__(self, backend: Any, identity: str, vocab_size: int, eos_token_id: int | None) -> None:
        self.backend = backend
        self.identity = identity
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id

    def encode(self, data: bytes) -> np.ndarray:
        ids = self.backend.encode(data.decode("utf-8", errors="replace"), add_special_tokens=False).ids
        return np.asarray(ids, dtype=np.int64)


def train_bpe(texts: Iterable[bytes], vocab_size: int, path: Path) -> BackendTokenizer:
    """Train a byte-level BPE of ``vocab_size`` ids (``<|endoftext|>`` is id 0) on ``texts`` and save it
    at ``path`` (atomically), so later runs load it instead of training again."""
    require_nlp("The bpe tokenizer")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise ValueError(
            f"datamodule.vocab_size={vocab_size} is too small for a byte-level BPE: it needs the {len(alphabet)} "
            f"byte symbols and {END_OF_DOCUMENT}, so at least {len(alphabet) + 1}."
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END_OF_DOCUMENT], initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator((data.decode("utf-8", errors="replace") for data in texts), trainer)
    atomic_write_text(tokenizer.to_str(), path)
    return load_bpe(path)


def load_bpe(path: Path) -> BackendTokenizer:
    """A BPE saved by :func:`train_bpe`; its identity is a hash of the saved file."""
    require_nlp("The bpe tokenizer")
    from tokenizers import Tokenizer

    text = Path(path).read_text()
    backend = Tokenizer.from_str(text)
    eos = backend.token_to_id(END_OF_DOCUMENT)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return BackendTokenizer(backend, f"bpe:{backend.get_vocab_size()}:{digest}", backend.get_vocab_size(), eos)


def hugging_face_tokenizer(name_or_path: str) -> BackendTokenizer:
    """A Hugging Face fast tokenizer (hub name, cache or ``save_pretrained`` folder); documents end
    with its end-of-sequence token when it has one."""
    tokenizer = load_tokenizer(name_or_path)
    backend = tokenizer.backend_tokenizer
    digest = hashlib.sha256(backend.to_str().encode()).hexdigest()[:12]
    return BackendTokenizer(
        backend, f"hf:{name_or_path}:{len(tokenizer)}:{digest}", len(tokenizer), tokenizer.eos_token_id
    )
