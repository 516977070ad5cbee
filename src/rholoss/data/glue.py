"""GLUE single-sentence classification (CoLA, SST-2) as a :class:`PoolDataModule`.

GLUE's test labels are hidden, so, as in the paper's release, the GLUE dev set is the test set and the
GLUE training set is split into pool / holdout (the IL model's training data) / val. Data comes from
the GLUE TSV layout in a local folder, or else from Hugging Face ``datasets`` when a network is there.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rholoss.data.datamodule import PoolDataModule, Sources
from rholoss.data.hf_text import NLP_EXTRA_HINT, PadToLongest, TokenizedTexts, hub_offline, load_tokenizer, tokenize

HF_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """Where a task's sentences and labels are in the GLUE download's ``train.tsv``/``dev.tsv``."""

    folder: str
    header: bool
    text_column: int
    label_column: int
    num_classes: int = 2


GLUE_TASKS = {
    # CoLA: no header; columns: source, label, original judgement, sentence.
    "cola": GlueTask("CoLA", header=False, text_column=3, label_column=1),
    # SST-2: header "sentence<TAB>label".
    "sst2": GlueTask("SST-2", header=True, text_column=0, label_column=1),
}


def read_glue_tsv(path: Path, task: GlueTask) -> tuple[list[str], Tensor]:
    """Sentences and integer labels of one GLUE TSV file (no quoting: sentences hold bare quotes)."""
    texts: list[str] = []
    labels: list[int] = []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for line, row in enumerate(rows, start=1):
            if task.header and line == 1:
                continue
            try:
                texts.append(row[task.text_column])
                labels.append(int(row[task.label_column]))
            except (IndexError, ValueError) as error:
                raise ValueError(
                    f"{path}, line {line}: expected the GLUE {task.folder} layout (text in column "
                    f"{task.text_column}, integer label in column {task.label_column}), got {row!r}."
                ) from error
    return texts, torch.tensor(labels, dtype=torch.long)


class GLUEDataModule(PoolDataModule):
    """A GLUE task tokenized once with ``tokenizer`` (a hub name or a ``save_pretrained`` folder),
    served as ``(index, {"input_ids", "attention_mask"}, y)`` batches padded to their longest text.

    ``data_dir`` holds the GLUE download's task folders (``CoLA/train.tsv``, ``CoLA/dev.tsv``,
    ``SST-2/...``); if the task's files are not there and ``download`` is true, Hugging Face
    ``datasets`` fetches (or reads its cache of) ``nyu-mll/glue``. ``max_length`` truncates long
    texts (tokens, special tokens included) and is the model's ``input_shape``.
    """

    def __init__(
        self,
        task: str = "cola",
        tokenizer: str | None = None,
        data_dir: str = "data/glue",
        download: bool = True,
        max_length: int = 128,
        **kwargs,
    ) -> None:
        if task not in GLUE_TASKS:
            raise ValueError(f"Unknown GLUE task {task!r}; known: {', '.join(sorted(GLUE_TASKS))}.")
        if kwargs.get("on_device"):
            raise ValueError(
                "datamodule.on_device=true serves fixed-shape tensors, but text batches are padded per batch "
                "by the DataLoader's collate function: set datamodule.on_device=false."
            )
        super().__init__(**kwargs)
        self.task = task
        self.spec = GLUE_TASKS[task]
        self.name = f"glue_{task}"
        self.num_classes = self.spec.num_classes
        self.input_shape = (max_length,)
        self.tokenizer_name = tokenizer
        self.data_dir = Path(data_dir)
        self.download = download
        self.max_length = max_length
        self._model_kwargs: dict[str, Any] = {}

    def load_sources(self) -> Sources:
        if not self.tokenizer_name:
            raise ValueError(
                "datamodule.tokenizer is not set: name the model's tokenizer (e.g. albert-base-v2) or a "
                "folder written by tokenizer.save_pretrained()."
            )
        tokenizer = load_tokenizer(self.tokenizer_name)
        if tokenizer.pad_token_id is None:
            raise ValueError(f"Tokenizer {self.tokenizer_name!r} has no padding token, which batching needs.")
        splits = {
            name: TokenizedTexts(tokenize(tokenizer, texts, self.max_length), labels)
            for name, (texts, labels) in self.read_splits().items()
        }
        self.collate_fn = PadToLongest(tokenizer.pad_token_id)
        self._model_kwargs = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        return Sources(splits["train"], splits["train"].labels, splits["dev"], splits["dev"].labels)

    def model_kwargs(self) -> dict[str, Any]:
        if not self._model_kwargs:
            raise RuntimeError("Call setup() before building a model for text: the tokenizer is loaded there.")
        return dict(self._model_kwargs)

    def read_splits(self) -> dict[str, tuple[list[str], Tensor]]:
        """``{"train": (texts, labels), "dev": (texts, labels)}`` from the local TSVs or the hub."""
        files = {split: self.data_dir / self.spec.folder / f"{split}.tsv" for split in ("train", "dev")}
        if all(path.is_file() for path in files.values()):
            return {split: read_glue_tsv(path, self.spec) for split, path in files.items()}
        hub_error: Exception | None = None
        if self.download:
            try:
                return self._read_hub()
            except Exception as error:  # offline, missing package, hub failure: report every option below
                hub_error = error
        reason = f"Hugging Face datasets failed ({hub_error})" if hub_error else "datamodule.download is false"
        offline = " (Hugging Face offline mode is on.)" if hub_error and hub_offline() else ""
        raise FileNotFoundError(
            f"GLUE {self.spec.folder} not found: expected {files['train']} and {files['dev']} (the GLUE "
            f"download's layout), and {reason}.{offline} Either put the task folder there (or point "
            f"datamodule.data_dir at the folder holding {self.spec.folder}/), or run once with network "
            f"access and datamodule.download=true ({HF_DATASET} is then cached by Hugging Face datasets)."
        )

    def _read_hub(self) -> dict[str, tuple[list[str], Tensor]]:
        try:
            from datasets import load_dataset
        except ImportError as error:
            raise ImportError(f"reading GLUE from the hub needs Hugging Face datasets: {NLP_EXTRA_HINT}") from error
        data = load_dataset(HF_DATASET, self.task)
        return {
            split: (list(data[hub_split]["sentence"]), torch.tensor(data[hub_split]["label"], dtype=torch.long))
            for split, hub_split in (("train", "train"), ("dev", "validation"))
        }
