"""Helpers that write small datasets in the real on-disk formats (plain functions, no pytest magic).

The IDX encoder here is written independently of :mod:`rholoss.data.idx`, so a test that writes with
it and reads with the package checks the reader against the format, not against itself.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# IDX type codes (third byte of the magic number) for the dtypes the helpers write.
_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of ``array``: magic ``0x0000TTNN`` (type code, number of dims), one big-endian
    uint32 per dimension, then the data in C order (big-endian for multi-byte types)."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _TYPE_CODES[dtype]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool | None = None) -> Path:
    """Write ``array`` as an IDX file at ``path``, gzip-compressed when ``gz`` (default: the path
    ends in ``.gz``)."""
    path = Path(path)
    gz = path.suffix == ".gz" if gz is None else gz
    data = encode_idx(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


def fashion_like_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """28x28 uint8 images that a model can learn to classify: class ``c`` lights up a horizontal
    band of rows ``2c+4`` and ``2c+5`` (bright, 200..255) over a dim noise background (0..40)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 41, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 * int(label) + 4
        images[i, row : row + 2, 2:26] = rng.integers(200, 256, size=(2, 24), dtype=np.uint8)
    return images


def write_fashion_mnist_idx(
    directory: Path, num_train: int = 200, num_test: int = 50, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write the four Fashion-MNIST IDX files (``.gz`` when ``gz``) into ``directory`` with
    ``num_train``/``num_test`` label-dependent images, and return ``{"train": labels, "test": labels}``
    (uint8 arrays, every class present when there are at least 10 points)."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    labels: dict[str, np.ndarray] = {}
    for split, count in (("train", num_train), ("test", num_test)):
        y = (np.arange(count) % 10).astype(np.uint8)
        rng.shuffle(y)
        x = fashion_like_images(y, seed=int(rng.integers(2**31)))
        write_idx(directory / f"{FASHION_MNIST_FILES[f'{split}_images']}{suffix}", x, gz=gz)
        write_idx(directory / f"{FASHION_MNIST_FILES[f'{split}_labels']}{suffix}", y, gz=gz)
        labels[split] = y
    return labels


# Words that decide a fixture sentence's label, and words that carry no signal.
_POSITIVE = ["good", "great", "fine", "lovely", "superb"]
_NEGATIVE = ["bad", "awful", "poor", "dull", "broken"]
_FILLER = ["the", "film", "was", "a", "story", "and", "very", "plot", "cast", "it", "really", "quite"]


def glue_like_sentences(count: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``count`` sentences of 2..14 words with labels a model can learn: label 1 sentences hold a word
    from a positive list, label 0 a word from a negative list, amid filler words. Every eleventh
    sentence holds a bare double quote, which GLUE's TSV files have and a CSV reader would mangle."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 2).astype(np.int64)
    rng.shuffle(labels)
    sentences = []
    for i, label in enumerate(labels):
        words = list(rng.choice(_FILLER, size=int(rng.integers(1, 14))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(_POSITIVE if label else _NEGATIVE)))
        if i % 11 == 0:
            words[0] = '"' + words[0]
        sentences.append(" ".join(words) + ".")
    return sentences, labels


def write_glue_task(directory: Path, task: str, num_train: int = 300, num_dev: int = 60, seed: int = 0) -> dict:
    """Write ``train.tsv`` and ``dev.tsv`` of a GLUE task in the GLUE download's layout under
    ``directory/<CoLA|SST-2>/`` and return ``{"train": (sentences, labels), "dev": ...}``.

    CoLA: no header, columns source / label / original judgement / sentence. SST-2: a
    ``sentence<TAB>label`` header, then those two columns.
    """
    folder = Path(directory) / {"cola": "CoLA", "sst2": "SST-2"}[task]
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for offset, (split, count) in enumerate((("train", num_train), ("dev", num_dev))):
        sentences, labels = glue_like_sentences(count, seed=seed + offset)
        if task == "cola":
            lines = [f"gj04\t{y}\t{'' if y else '*'}\t{s}" for s, y in zip(sentences, labels)]
        else:
            lines = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in zip(sentences, labels))]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        written[split] = (sentences, labels)
    return written


def build_wordpiece_tokenizer(texts: list[str], directory: Path, vocab_size: int = 120) -> Path:
    """Train a small lower-casing WordPiece tokenizer (BERT-style ``[CLS] … [SEP]``) on ``texts`` with
    ``tokenizers`` and save it with ``save_pretrained``, so ``AutoTokenizer`` loads it offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(directory))
    return Path(directory)
