"""``datamodule=hf``: Hugging Face datasets written in tmp_path from real Fashion-MNIST (images as PNG
bytes, as HF image datasets store them) as parquet files and as a ``save_to_disk`` folder, through
both stages; text columns, numeric columns, a cached hub dataset, and the errors for bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from rholoss.data import HuggingFaceDataModule
from rholoss.data.fashion_mnist import DEBIAN_DIR
from rholoss.data.idx import read_idx
from rholoss.pipelines import train, train_irreducible
from tests.conftest import config_in
from tests.fixtures import build_wordpiece_tokenizer, glue_like_sentences

datasets = pytest.importorskip("datasets")
pytestmark = pytest.mark.usefixtures("one_thread")

FASHION = Path(DEBIAN_DIR)
NUM_TRAIN, NUM_TEST, VAL_SIZE = 3000, 500, 500
IL_STEPS, TARGET_STEPS = 120, 10


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def fashion_mnist_split(split: str, count: int) -> datasets.Dataset:
    """The first ``count`` Fashion-MNIST images of ``split`` (``train``/``t10k``) as a Dataset with an
    ``Image`` column of PNG bytes, a ``ClassLabel`` and a string id, read with the project's IDX reader."""
    images = read_idx(FASHION / f"{split}-images-idx3-ubyte.gz")[:count]
    labels = read_idx(FASHION / f"{split}-labels-idx1-ubyte.gz")[:count]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10), "id": datasets.Value("string")}
    )
    rows = {
        "image": [{"bytes": png(image), "path": None} for image in images],
        "label": labels.astype(int).tolist(),
        "id": [f"{split}-{i}" for i in range(count)],
    }
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def fashion_hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same data twice: ``train.parquet`` + ``test.parquet``, and a ``save_to_disk`` DatasetDict."""
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION}")
    root = tmp_path_factory.mktemp("hf")
    data = datasets.DatasetDict(
        train=fashion_mnist_split("train", NUM_TRAIN), test=fashion_mnist_split("t10k", NUM_TEST)
    )
    for split, part in data.items():
        part.to_parquet(str(root / f"{split}.parquet"))
    data.save_to_disk(str(root / "disk"))
    return {"root": root, "train": root / "train.parquet", "test": root / "test.parquet", "disk": root / "disk"}


def hf_overrides(fashion_hf: dict[str, Path], form: str) -> list[str]:
    path = f"{{train: {fashion_hf['train']}, test: {fashion_hf['test']}}}" if form == "parquet" else fashion_hf["disk"]
    return [
        "datamodule=hf",
        f"datamodule.path={path}",
        "datamodule.input_column=image",
        "datamodule.id_column=id",
        f"datamodule.cache_dir={fashion_hf['root'] / 'cache'}",
    ]


def stage(root: Path, config: str, data: list[str], *overrides: str, output: str) -> dict:
    """One stage on Fashion-MNIST-sized settings shrunk to seconds: an MLP of 256, 64-point batches."""
    steps = IL_STEPS if config == "train_irreducible" else TARGET_STEPS
    return (train_irreducible if config == "train_irreducible" else train)(
        config_in(
            root,
            config,
            *data,
            f"datamodule.val_size={VAL_SIZE}",
            "datamodule.label_noise=0.1",
            "datamodule.num_workers=0",
            "model.hidden_sizes=[256]",
            f"trainer.max_steps={steps}",
            f"val_every_n_steps={steps // 2}",
            *overrides,
            output=output,
        )
    )


def make(fashion_hf: dict[str, Path], form: str = "parquet", **settings) -> HuggingFaceDataModule:
    path = (
        fashion_hf["disk"] if form == "disk" else {"train": str(fashion_hf["train"]), "test": str(fashion_hf["test"])}
    )
    settings = {"input_column": "image", "label_column": "label", "val_size": VAL_SIZE, **settings}
    datamodule = HuggingFaceDataModule(path=path, cache_dir=str(fashion_hf["root"] / "cache"), **settings)
    datamodule.setup()
    return datamodule


def test_parquet_and_disk_folder_give_the_same_splits_images_and_ids(fashion_hf: dict[str, Path]) -> None:
    parquet, disk = make(fashion_hf, id_column="id"), make(fashion_hf, "disk", id_column="id")
    assert (
        parquet.describe()
        == disk.describe()
        == {"pool": 1250, "holdout": 1250, "val": 500, "test": NUM_TEST, "inputs": "image", "input_shape": [1, 28, 28]}
    )
    assert parquet.num_classes == 10
    assert parquet.fingerprint["digest"] == disk.fingerprint["digest"]
    _, x, y = next(iter(parquet.pool_dataloader()))
    _, x_disk, y_disk = next(iter(disk.pool_dataloader()))
    assert torch.equal(x, x_disk) and torch.equal(y, y_disk)
    # The pool is the fashion_mnist datamodule's pool of the same points, pixel for pixel up to the statistics.
    from rholoss.data import FashionMNISTDataModule

    reference = FashionMNISTDataModule(data_dir="/nonexistent", train_subset=NUM_TRAIN, val_size=VAL_SIZE)
    reference.setup()
    assert torch.equal(reference.split("pool").source_indices, parquet.split("pool").source_indices)
    expected_x, expected_y = reference.split_tensors("pool", torch.device("cpu"))
    mean, std = parquet.eval_transform.steps.transforms[-1].mean, parquet.eval_transform.steps.transforms[-1].std
    pixels = (x * std[0] + mean[0]).round(decimals=4)
    from rholoss.data.fashion_mnist import MEAN, STD

    assert torch.allclose(pixels, (expected_x[: len(x)] * STD + MEAN).round(decimals=4), atol=1e-3)
    assert torch.equal(y, expected_y[: len(y)])
    # Sample ids follow each split's points.
    ids = parquet.sample_ids("pool")
    assert list(ids[:3]) == [f"train-{int(i)}" for i in parquet.split("pool").source_indices[:3]]
    assert list(parquet.sample_ids("test")[:2]) == ["t10k-0", "t10k-1"]
    assert parquet.sample_ids("val") is not None and len(set(parquet.sample_ids("val")) & set(ids)) == 0
    assert make(fashion_hf).sample_ids() is None


def test_images_are_decoded_in_workers_and_resized(fashion_hf: dict[str, Path]) -> None:
    datamodule = make(fashion_hf, "disk", image_size=32, image_mode="RGB", num_workers=2, eval_batch_size=256)
    assert datamodule.input_shape == (3, 32, 32)
    batches = list(datamodule.val_dataloader())
    assert sum(len(b[0]) for b in batches) == VAL_SIZE and batches[0][1].shape == (256, 3, 32, 32)


def test_label_noise_split_and_fingerprint_work_as_for_every_datamodule(fashion_hf: dict[str, Path]) -> None:
    clean, noisy = make(fashion_hf), make(fashion_hf, label_noise=0.2)
    assert noisy.has_noise and int(noisy.corrupted.sum()) == 250
    changed = noisy.split("pool").labels != clean.split("pool").labels
    assert torch.equal(changed, noisy.corrupted)
    assert noisy.fingerprint["digest"] != clean.fingerprint["digest"]
    other_seed = make(fashion_hf, split_seed=1)
    assert not torch.equal(other_seed.split("pool").source_indices, clean.split("pool").source_indices)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["parquet", "disk"])
def test_both_stages_run_and_the_il_model_matches_fashion_mnist(
    fashion_hf: dict[str, Path], form: str, tmp_path: Path
) -> None:
    data = hf_overrides(fashion_hf, form)
    il = stage(tmp_path, "train_irreducible", data, "datamodule.num_workers=2", output="il")
    reference = stage(
        tmp_path,
        "train_irreducible",
        ["datamodule=fashion_mnist", f"datamodule.train_subset={NUM_TRAIN}", "datamodule.data_dir=/nonexistent"],
        output="reference",
    )
    assert reference["val_acc"] > 0.7
    assert il["val_acc"] == pytest.approx(reference["val_acc"], abs=0.01)
    target = stage(tmp_path, "train", data, "selection=reducible_loss", "large_batch_size=320", output="target")
    assert target["il_store"] == il["il_store"] and target["steps"] == TARGET_STEPS
    assert 0.0 <= target["noisy_selected_fraction"] <= 1.0


def write_hub_cache(cache: Path, name: str, data: datasets.Dataset) -> None:
    """``data`` laid out in ``cache`` as ``load_dataset(name)`` leaves a hub dataset there:
    ``<owner>___<name>/default/0.0.0/<hash>/`` with ``dataset_info.json`` and ``<name>-train.arrow``."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    owner, short = name.split("/")
    data.to_parquet(str(cache.parent / "rows.parquet"))
    Parquet(
        cache_dir=str(cache), dataset_name=short, hash="0123abcd", data_files=str(cache.parent / "rows.parquet")
    ).download_and_prepare()
    (config,) = (cache / short).iterdir()  # default-<hash of the data files>: a hub dataset's is its config name
    config.rename(cache / short / "default")
    (cache / short).rename(cache / f"{owner}___{short}")


def test_a_hub_dataset_is_read_from_the_cache_and_never_downloaded(tmp_path: Path) -> None:
    cache = tmp_path / "hub-cache"
    rows = {"x": [[float(i), float(-i)] for i in range(60)], "label": [i % 3 for i in range(60)]}
    write_hub_cache(cache, "someone/toy", datasets.Dataset.from_dict(rows))
    datamodule = HuggingFaceDataModule(
        path="someone/toy",
        input_column="x",
        label_column="label",
        cache_dir=str(cache),
        val_size=6,
        test_size=12,
        batch_size=8,
    )
    datamodule.setup()
    assert datamodule.describe()["test"] == 12 and datamodule.input_shape == (2,) and datamodule.num_classes == 3
    with pytest.raises(FileNotFoundError, match=r"no hub dataset of that name is in the Hugging Face cache") as error:
        HuggingFaceDataModule(
            path="someone/absent", input_column="x", label_column="label", cache_dir=str(cache)
        ).setup()
    assert "never downloads" in str(error.value)


def test_numeric_columns_become_one_vector_served_on_the_device(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = {"a": rng.normal(size=200), "b": rng.normal(size=200), "kind": [["cat", "dog"][i % 2] for i in range(200)]}
    datasets.Dataset.from_dict(rows).to_csv(str(tmp_path / "table.csv"), index=False)
    datamodule = HuggingFaceDataModule(
        path=str(tmp_path / "*.csv"),
        input_column=["a", "b"],
        label_column="kind",
        val_size=20,
        on_device=True,
        cache_dir=str(tmp_path / "cache"),
        batch_size=16,
    )
    datamodule.setup()
    assert datamodule.input_shape == (2,) and datamodule.num_classes == 2  # class names, sorted
    _, x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (16, 2) and set(y.tolist()) <= {0, 1}
    assert datamodule.describe()["test"] == 20  # test_size 0.1 of 200 rows: there is no test split
    with pytest.raises(ValueError, match=r"test_size=200 takes 200 of the 200 points"):
        HuggingFaceDataModule(
            path=str(tmp_path / "table.csv"), input_column="a", label_column="kind", test_size=200
        ).setup()


def test_text_is_tokenized_once_in_several_processes_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentences, labels = glue_like_sentences(240)
    datasets.Dataset.from_dict({"sentence": sentences, "label": labels.tolist()}).to_json(str(tmp_path / "text.jsonl"))
    tokenizer = build_wordpiece_tokenizer(sentences, tmp_path / "tokenizer")
    settings = {
        "path": str(tmp_path / "text.jsonl"),
        "input_column": "sentence",
        "label_column": "label",
        "val_size": 20,
        "tokenizer": str(tokenizer),
        "num_proc": 2,
        "cache_dir": str(tmp_path / "cache"),
        "max_length": 12,
    }
    datamodule = HuggingFaceDataModule(**settings)
    datamodule.setup()
    assert datamodule.model_kwargs()["pad_token_id"] == 0 and datamodule.input_shape == (12,)
    _, x, _ = next(iter(datamodule.pool_dataloader()))
    assert set(x) == {"input_ids", "attention_mask"} and x["input_ids"].shape[1] <= 12
    assert (x["input_ids"][:, 0] == 2).all()  # [CLS] starts each sentence
    cached = sorted((tmp_path / "cache" / "rholoss-tokenized").glob("*.arrow"))
    assert cached, "tokenized text is cached"

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again despite the cache")

    from transformers import PreTrainedTokenizerFast

    monkeypatch.setattr(PreTrainedTokenizerFast, "__call__", fail)
    again = HuggingFaceDataModule(**settings)
    again.setup()
    assert torch.equal(next(iter(again.pool_dataloader()))[1]["input_ids"], x["input_ids"])


@pytest.mark.slow
def test_a_text_column_trains_a_classifier_through_both_stages(tmp_path: Path) -> None:
    sentences, labels = glue_like_sentences(400)
    rows = {"sentence": sentences, "label": labels.tolist(), "id": [f"s{i}" for i in range(400)]}
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "sentences.parquet"))
    tokenizer = build_wordpiece_tokenizer(sentences, tmp_path / "tokenizer")
    data = [
        "datamodule=hf",
        f"datamodule.path={tmp_path / 'sentences.parquet'}",
        "datamodule.input_column=sentence",
        "datamodule.id_column=id",
        f"datamodule.tokenizer={tokenizer}",
        f"datamodule.cache_dir={tmp_path / 'cache'}",
        "datamodule.max_length=24",
        "datamodule.val_size=40",
        "datamodule.num_workers=0",
        "datamodule.label_noise=0.1",
        "model=tiny_transformer",
        "model.config.hidden_size=32",
        "model.config.num_hidden_layers=1",
        "model.config.intermediate_size=64",
        "optimizer.lr=1e-2",
        "val_every_n_steps=20",
    ]
    il = train_irreducible(
        config_in(tmp_path, "train_irreducible", *data, "batch_size=32", "trainer.max_steps=60", output="il")
    )
    assert il["val_acc"] > 0.8  # one word decides the label
    target = train(config_in(tmp_path, "train", *data, "large_batch_size=80", "trainer.max_steps=6", output="run"))
    assert target["il_store"] == il["il_store"] and target["steps"] == 6


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"input_column": "pixels"}, ValueError, r"no column 'pixels'; its columns are \['image', 'label', 'id'\]"),
        ({"label_column": "class"}, ValueError, r"no column 'class'"),
        ({"id_column": "label"}, ValueError, r"id_column 'label' is not unique"),
        (
            {"splits": {"test": "validation"}},
            ValueError,
            r"has the splits \['train', 'test'\], not 'validation' \(for test\)",
        ),
        ({"splits": {"dev": "test"}}, ValueError, r"datamodule.splits names \['dev'\]"),
        ({"on_device": True}, ValueError, r"image inputs are read per point .*on_device=false"),
        ({"input_column": ["image", "id"]}, ValueError, r"mixes \['image', 'text'\]"),
        ({"mean": [0.5] * 3, "std": [0.5] * 3}, ValueError, r"one value per channel: the images are L \(1 channels\)"),
    ],
)
def test_bad_settings_are_clear_errors(fashion_hf: dict[str, Path], settings: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make(fashion_hf, "disk", **settings)


def test_unknown_paths_and_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"datamodule.path=.*nothing\.parquet: no such file or folder"):
        HuggingFaceDataModule(path=str(tmp_path / "nothing.parquet"), input_column="x", label_column="y").setup()
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"files ending in \.txt"):
        HuggingFaceDataModule(path=str(tmp_path / "*.txt"), input_column="x", label_column="y").setup()
    with pytest.raises(ValueError, match=r"holds text: set datamodule\.tokenizer"):
        datasets.Dataset.from_dict({"t": ["a b", "c d"] * 20, "y": [0, 1] * 20}).to_parquet(str(tmp_path / "t.parquet"))
        HuggingFaceDataModule(
            path=str(tmp_path / "t.parquet"),
            input_column="t",
            label_column="y",
            val_size=4,
            cache_dir=str(tmp_path / "c"),
        ).setup()


def test_hidden_test_labels_are_a_clear_error(tmp_path: Path) -> None:
    for split, label in (("train", 1), ("test", -1)):
        rows = {"x": [float(i) for i in range(40)], "y": [label if split == "test" else i % 2 for i in range(40)]}
        datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / f"{split}.parquet"))
    files = {split: str(tmp_path / f"{split}.parquet") for split in ("train", "test")}
    with pytest.raises(
        ValueError, match=r"'test' split \(test\) has label -1, outside the 2 classes.*datamodule\.splits"
    ):
        HuggingFaceDataModule(
            path=files, input_column="x", label_column="y", val_size=4, cache_dir=str(tmp_path / "c")
        ).setup()
