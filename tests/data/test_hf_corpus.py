"""``datamodule=hf_corpus``: a dataset's text column (rows of real Python source) tokenized in shards into
the memory-mapped token files, and a tiny GPT-2 through both stages on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rholoss.data import HFCorpusDataModule
from rholoss.data.tokens.corpus import SPLITS
from rholoss.pipelines import train, train_irreducible
from tests.conftest import config_in
from tests.data.test_tokens import write_corpus

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.usefixtures("one_thread")
SEQ_LEN = 16


@pytest.fixture(scope="module")
def text_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A parquet file of 40 Python modules: columns ``path`` and ``content``."""
    root = tmp_path_factory.mktemp("hf_corpus")
    written = write_corpus(root / "source", files=40)
    rows = {"path": list(written), "content": [data.decode() for data in written.values()]}
    datasets.Dataset.from_dict(rows).to_parquet(str(root / "code.parquet"))
    return root, dict(zip(rows["path"], rows["content"], strict=True))


def make(root: Path, **settings) -> HFCorpusDataModule:
    settings = {
        "path": str(root / "code.parquet"),
        "text_column": "content",
        "id_column": "path",
        "tokenizer": "byte",
        "seq_len": SEQ_LEN,
        "batch_size": 8,
        "holdout_fraction": 0.3,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "cache_dir": str(root / "tokens"),
        "hf_cache_dir": str(root / "hf"),
        **settings,
    }
    datamodule = HFCorpusDataModule(**settings)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_each_row_is_a_document_of_its_split_token_file(text_rows, tmp_path: Path) -> None:
    root, texts = text_rows
    datamodule = make(root, num_proc=2, cache_dir=str(tmp_path / "tokens"))
    seen = []
    for name in SPLITS:
        file = datamodule.files[name]
        assert file.path.suffix == ".bin" and file.documents
        for document, start, end in file.documents:
            expected = np.frombuffer(texts[document].encode(), np.uint8).astype(np.int64)
            assert np.array_equal(file.tokens[start : end - 1], expected) and file.tokens[end - 1] == 256
            seen.append(document)
    assert sorted(seen) == sorted(texts)  # every row in exactly one split
    assert not list((tmp_path / "tokens").rglob("*.arrow"))  # the tokenized shards are gone once written
    one_process = make(root, num_proc=None, cache_dir=str(tmp_path / "one"), id_column=None)
    assert one_process.fingerprint == datamodule.fingerprint
    assert all(np.array_equal(one_process.files[s].tokens, datamodule.files[s].tokens) for s in SPLITS)
    rows = sorted(int(name) for s in SPLITS for name, _, _ in one_process.files[s].documents)
    assert rows == list(range(len(texts)))  # without an id column, documents are named by their row


def test_the_token_files_are_cached_and_settings_make_new_ones(text_rows, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = text_rows
    first = make(root)
    monkeypatch.setattr(HFCorpusDataModule, "_write_rows", lambda *a: pytest.fail("tokenized again despite the cache"))
    again = make(root)
    assert again.files["pool"].path == first.files["pool"].path and again.fingerprint == first.fingerprint
    monkeypatch.undo()
    other = make(root, split_seed=1)
    assert other.files["pool"].path.parent != first.files["pool"].path.parent
    assert other.fingerprint["digest"] != first.fingerprint["digest"]


def test_missing_and_wrong_columns_are_clear_errors(text_rows) -> None:
    root, _ = text_rows
    with pytest.raises(ValueError, match=r"no column 'text'; its columns are \['path', 'content'\].*text_column"):
        make(root, text_column="text")
    with pytest.raises(ValueError, match=r"has the splits \['train'\], not 'validation'"):
        make(root, split="validation")
    datasets.Dataset.from_dict({"n": list(range(50))}).to_parquet(str(root / "numbers.parquet"))
    with pytest.raises(ValueError, match=r"text_column 'n' holds int64, not text"):
        make(root, path=str(root / "numbers.parquet"), text_column="n", id_column=None)


@pytest.mark.slow
def test_a_text_column_trains_a_language_model_through_both_stages(text_rows, tmp_path: Path) -> None:
    root, _ = text_rows
    data = [
        "datamodule=hf_corpus",
        f"datamodule.path={root / 'code.parquet'}",
        "datamodule.text_column=content",
        "datamodule.tokenizer=byte",
        "datamodule.num_proc=2",
        f"datamodule.seq_len={SEQ_LEN}",
        "datamodule.holdout_fraction=0.3",
        "datamodule.val_fraction=0.1",
        "datamodule.test_fraction=0.1",
        "datamodule.token_noise=0.2",
        f"datamodule.hf_cache_dir={root / 'hf'}",
        "model.config.n_embd=32",
        "model.config.n_layer=1",
        "model.config.n_head=2",
        "val_every_n_steps=10",
    ]
    il = train_irreducible(
        config_in(
            tmp_path,
            "train_irreducible",
            "experiment=code_lm_irred",
            *data,
            "batch_size=16",
            "trainer.max_steps=40",
            output="il",
        )
    )
    assert Path(il["il_store"]).suffix == ".tokens" and il["val_loss"] < np.log(257)  # learnt something
    result = train(
        config_in(
            tmp_path,
            "train",
            "experiment=code_lm_main",
            *data,
            "selection=token_reducible_loss",
            "large_batch_size=40",
            "trainer.max_steps=10",
            output="run",
        )
    )
    assert result["il_store"] == il["il_store"] and result["steps"] == 10
