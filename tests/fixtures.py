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


def write_qmnist_test(directory: Path, num_extra: int = 60, seed: int = 0) -> np.ndarray:
    """Write QMNIST's ``qmnist-test-images-idx3-ubyte.gz`` and ``qmnist-test-labels-idx2-int.gz``:
    10,000 rows standing in for MNIST's test digits (blank images, class 0) followed by ``num_extra``
    label-dependent "extra" digits. Labels are int32 rows of 8 columns (class, NIST series, writer,
    digit index, NIST class code, global index, duplicate flag, unused), as in the real file.
    Returns the extra digits' classes."""
    rng = np.random.default_rng(seed)
    extra = (np.arange(num_extra) % 10).astype(np.int32)
    rng.shuffle(extra)
    classes = np.concatenate([np.zeros(10_000, np.int32), extra])
    images = np.zeros((len(classes), 28, 28), np.uint8)
    images[10_000:] = fashion_like_images(extra, seed=seed + 1)
    labels = np.zeros((len(classes), 8), np.int32)
    labels[:, 0] = classes
    labels[:, 1] = 4  # NIST hsf series
    labels[:, 2] = rng.integers(2100, 4000, len(classes))  # writer id
    labels[:, 4] = 48 + classes  # NIST class code: ASCII of the digit
    labels[:, 5] = np.arange(len(classes)) + 400_000  # global NIST index
    write_idx(Path(directory) / "qmnist-test-images-idx3-ubyte.gz", images)
    write_idx(Path(directory) / "qmnist-test-labels-idx2-int.gz", labels)
    return extra


def cifar_like_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(N, 3, 32, 32)`` uint8 images a model can classify: class ``c`` lights up rows
    ``3 (c % 10) + 1``..``+2`` of channel ``c % 3`` (all but the last two columns) over dim noise
    (0..40), and classes from 10 on also light columns ``3 (c // 10)``..``+2`` in every channel."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 41, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 3 * (int(label) % 10) + 1
        images[i, int(label) % 3, row : row + 2, :30] = 255
        if label >= 10:
            column = 3 * (int(label) // 10)
            images[i, :, :, column : column + 3] = 255
    return images


def write_cifar(
    directory: Path, dataset: str = "cifar10", num_train: int = 400, num_test: int = 100, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write CIFAR's python pickles under ``directory``: ``cifar-10-batches-py/data_batch_1..5`` and
    ``test_batch`` (key ``labels``), or ``cifar-100-python/train`` and ``test`` (``fine_labels`` and
    ``coarse_labels``). ``data`` is an ``(N, 3072)`` uint8 array of red, green and blue 32x32 planes,
    as in the real files. Returns ``{"train": labels, "test": labels}`` in file order."""
    import pickle

    num_classes = 10 if dataset == "cifar10" else 100
    rng = np.random.default_rng(seed)
    labels: dict[str, np.ndarray] = {}
    for split, count in (("train", num_train), ("test", num_test)):
        y = np.arange(count) % num_classes
        rng.shuffle(y)
        labels[split] = y
    if dataset == "cifar10":
        folder = Path(directory) / "cifar-10-batches-py"
        train_parts = np.array_split(np.arange(num_train), 5)
        files = {f"data_batch_{i + 1}": ("train", part) for i, part in enumerate(train_parts)}
        files["test_batch"] = ("test", np.arange(num_test))
    else:
        folder = Path(directory) / "cifar-100-python"
        files = {"train": ("train", np.arange(num_train)), "test": ("test", np.arange(num_test))}
    folder.mkdir(parents=True, exist_ok=True)
    images = {split: cifar_like_images(y, seed=seed + 1 + i) for i, (split, y) in enumerate(labels.items())}
    for name, (split, rows) in files.items():
        entry: dict = {"batch_label": name, "data": images[split][rows].reshape(len(rows), 3072)}
        entry["filenames"] = [f"img_{int(r)}.png" for r in rows]
        if dataset == "cifar10":
            entry["labels"] = [int(v) for v in labels[split][rows]]
        else:
            entry["fine_labels"] = [int(v) for v in labels[split][rows]]
            entry["coarse_labels"] = [int(v) // 5 for v in labels[split][rows]]
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    return labels


CINIC10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_image_folder(
    root: Path, counts: dict[str, int], classes: list[str], size: int = 32, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write ``root/<split>/<class>/<n>.png`` (``counts[split]`` images per split, classes taking
    turns) with label-dependent RGB images; returns each split's labels in sorted file order."""
    from PIL import Image

    labels: dict[str, np.ndarray] = {}
    for split_number, (split, count) in enumerate(counts.items()):
        y = np.arange(count) % len(classes)
        images = cifar_like_images(y, seed=seed + split_number)
        if size != 32:
            images = np.repeat(np.repeat(images, -(-size // 32), axis=2), -(-size // 32), axis=3)[:, :, :size, :size]
        for i, (image, label) in enumerate(zip(images, y, strict=True)):
            path = Path(root) / split / classes[label] / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(path)
        labels[split] = np.sort(y, kind="stable")  # files are listed class by class
    return labels


CLOTHING1M_CLASSES = 14


def write_clothing1m(
    root: Path, counts: dict[str, int] | None = None, seed: int = 0, annotations_dir: str = ""
) -> dict[str, list[tuple[str, int]]]:
    """Write a tiny Clothing-1M in the official layout: JPEGs under ``root/images/<a>/<b>/`` and the
    annotation files (in ``root/annotations_dir``): ``noisy_label_kv.txt`` / ``clean_label_kv.txt``
    (``<path> <label>`` lines, the clean file also covering some noisy images, as the real one does)
    and the four ``*_key_list.txt`` files. Returns ``{split: [(path, label), ...]}`` for
    train (noisy), holdout (clean train), val and test."""
    from PIL import Image

    counts = counts or {"train": 40, "holdout": 20, "val": 14, "test": 14}
    rng = np.random.default_rng(seed)
    lists: dict[str, list[tuple[str, int]]] = {}
    number = 0
    for split, count in counts.items():
        lists[split] = []
        for _ in range(count):
            label = int(rng.integers(CLOTHING1M_CLASSES))
            key = f"images/{number % 10}/{number % 7:02d}/{number:06d}.jpg"
            image = np.full((40, 48, 3), 10 * label, np.uint8)
            path = Path(root) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            lists[split].append((key, label))
            number += 1
    annotations = Path(root) / annotations_dir
    annotations.mkdir(parents=True, exist_ok=True)
    relabelled = [(key, (label + 1) % CLOTHING1M_CLASSES) for key, label in lists["train"][:5]]
    clean = lists["holdout"] + lists["val"] + lists["test"] + relabelled
    (annotations / "noisy_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in lists["train"]))
    (annotations / "clean_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in clean))
    names = {"train": "noisy_train", "holdout": "clean_train", "val": "clean_val", "test": "clean_test"}
    for split, name in names.items():
        (annotations / f"{name}_key_list.txt").write_text("".join(f"{k}\n" for k, _ in lists[split]))
    return lists


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
            lines = [f"gj04\t{y}\t{'' if y else '*'}\t{s}" for s, y in zip(sentences, labels, strict=True)]
        else:
            lines = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in zip(sentences, labels, strict=True))]
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
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(directory))
    return Path(directory)
