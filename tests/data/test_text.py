"""Text in the same pipeline: GLUE files, a tokenizer built here, a tiny transformer, both stages.

Everything is offline (conftest turns on Hugging Face's offline mode): the GLUE files are written in
their real layout, the WordPiece tokenizer is trained on them with ``tokenizers``, and the model is a
small BERT built from a config.
"""

from __future__ import annotations

import ast
import csv
import re
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from transformers import AutoTokenizer

from rholoss.data import GLUEDataModule
from rholoss.data.glue import GLUE_TASKS, read_glue_tsv
from rholoss.data.hf_text import PadToLongest, TokenizedTexts
from rholoss.irreducible import IrreducibleLossStore
from rholoss.models import SequenceClassifier
from rholoss.models.factory import build_model_for
from rholoss.modules import OnlineBatchSelection
from rholoss.pipelines import build_model, irreducible_experiment, irreducible_overrides, train, train_irreducible
from tests.conftest import ROOT, compose_config, config_in
from tests.fixtures import build_wordpiece_tokenizer, write_glue_task

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
TEXT_EXPERIMENTS = ["cola_albert_irred", "cola_albert_main", "sst2_albert_irred", "sst2_albert_main"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def glue(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Both tasks' TSV files and a tokenizer trained on their training sentences."""
    root = tmp_path_factory.mktemp("glue")
    written = {task: write_glue_task(root / "glue", task, seed=i) for i, task in enumerate(("cola", "sst2"))}
    tokenizer = build_wordpiece_tokenizer(written["cola"]["train"][0] + written["sst2"]["train"][0], root / "tokenizer")
    return {"root": root, "data_dir": root / "glue", "tokenizer": str(tokenizer), "written": written}


def datamodule(glue: dict, **overrides) -> GLUEDataModule:
    settings = {
        "task": "cola",
        "tokenizer": glue["tokenizer"],
        "data_dir": str(glue["data_dir"]),
        "val_size": 40,
        "batch_size": 32,
        "max_length": 24,
        "download": False,
        **overrides,
    }
    dm = GLUEDataModule(**settings)
    dm.setup()
    return dm


def tiny_model(dm: GLUEDataModule) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(dm.input_shape, dm.num_classes, config=TINY, **dm.model_kwargs())


# --- GLUE files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["cola", "sst2"])
def test_glue_tsv_layouts_are_read_exactly(glue: dict, task: str) -> None:
    sentences, labels = glue["written"][task]["train"]
    texts, read_labels = read_glue_tsv(glue["data_dir"] / GLUE_TASKS[task].folder / "train.tsv", GLUE_TASKS[task])
    assert texts == sentences  # header skipped (SST-2), bare quotes kept
    assert any(text.startswith('"') for text in texts)
    assert read_labels.tolist() == labels.tolist()


def test_a_malformed_glue_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\nfine film .\t1\nno label here\n")
    with pytest.raises(ValueError, match=r"(?s)train.tsv, line 3"):
        read_glue_tsv(path, GLUE_TASKS["sst2"])


def test_hub_dataset_is_read_like_the_tsv_files(glue: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without local files, GLUE comes from Hugging Face datasets' nyu-mll/glue (here a stand-in with
    its columns and split names): the same sentences and labels as the TSV layout."""
    import datasets

    written = glue["written"]["sst2"]
    hub = datasets.DatasetDict(
        {
            hub_split: datasets.Dataset.from_dict({"sentence": written[split][0], "label": written[split][1].tolist()})
            for split, hub_split in (("train", "train"), ("dev", "validation"))
        }
    )
    requested = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: requested.append(args) or hub)
    dm = GLUEDataModule(task="sst2", tokenizer=glue["tokenizer"], data_dir=str(glue["root"] / "empty"), val_size=40)
    from_hub = dm.read_splits()
    assert requested == [("nyu-mll/glue", "sst2")]
    assert from_hub["train"][0] == written["train"][0] and from_hub["dev"][1].tolist() == written["dev"][1].tolist()


def test_missing_glue_files_say_where_to_put_them(glue: dict) -> None:
    dm = GLUEDataModule(task="cola", tokenizer=glue["tokenizer"], data_dir=str(glue["root"] / "none"), download=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)none/CoLA/train.tsv.*datamodule.download is false"):
        dm.setup()


def test_offline_hub_failure_is_reported_with_every_option(glue: dict) -> None:
    dm = GLUEDataModule(task="cola", tokenizer=glue["tokenizer"], data_dir=str(glue["root"] / "none"), download=True)
    expected = r"(?s)Hugging Face datasets failed.*offline mode is on.*datamodule.data_dir"
    with pytest.raises(FileNotFoundError, match=expected):
        dm.setup()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"task": "mnli"}, "Unknown GLUE task 'mnli'; known: cola, sst2"),
        ({"on_device": True}, "set datamodule.on_device=false"),
    ],
)
def test_bad_text_settings_are_refused_up_front(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GLUEDataModule(**settings)


def test_missing_tokenizer_is_a_clear_error(glue: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("datamodule.tokenizer is not set")):
        datamodule(glue, tokenizer=None)
    with pytest.raises(OSError, match=r"(?s)offline mode is on.*save_pretrained"):
        datamodule(glue, tokenizer="no-such-org/no-such-tokenizer")


# --- tokenized data and batches -------------------------------------------------------------------------


def test_tokenized_texts_slice_each_sequence_back() -> None:
    texts = TokenizedTexts([[2, 7, 3], [2, 3], [2, 9, 9, 9, 3]], torch.tensor([1, 0, 1]))
    assert len(texts) == 3
    x, y = texts[2]
    assert x["input_ids"].tolist() == [2, 9, 9, 9, 3] and int(y) == 1
    assert texts[1][0]["input_ids"].tolist() == [2, 3]


def test_pad_to_longest_pads_each_batch_to_its_own_longest_text() -> None:
    collate = PadToLongest(pad_token_id=0)
    items = [
        (5, {"input_ids": torch.tensor([2, 7, 3])}, torch.tensor(1)),
        (9, {"input_ids": torch.tensor([2, 3])}, torch.tensor(0)),
    ]
    index, x, y = collate(items)
    assert index.tolist() == [5, 9] and y.tolist() == [1, 0]
    assert x["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert x["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_glue_datamodule_splits_and_serves_padded_dict_batches(glue: dict) -> None:
    dm = datamodule(glue, max_length=8)
    assert dm.describe() == {"pool": 130, "holdout": 130, "val": 40, "test": 60}  # GLUE dev is the test set
    assert dm.fingerprint["dataset"] == "glue_cola" and dm.input_shape == (8,)
    tokenizer = AutoTokenizer.from_pretrained(glue["tokenizer"])
    assert dm.model_kwargs() == {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    index, x, y = next(iter(dm.train_dataloader()))
    assert set(x) == {"input_ids", "attention_mask"}
    assert x["input_ids"].shape[0] == len(index) == len(y) == 32
    lengths = x["attention_mask"].sum(1)
    assert int(lengths.max()) == x["input_ids"].shape[1] <= 8  # padded to the batch's longest, truncated to max_length
    assert bool((x["input_ids"][x["attention_mask"] == 0] == 0).all())
    assert torch.equal(y, dm.split("pool").labels[index])  # the index contract holds for text


def test_text_refuses_image_augmentation(glue: dict) -> None:
    with pytest.raises(ValueError, match=re.escape("set datamodule.augment=false")):
        datamodule(glue, augment=True).train_augmentation()


# --- models -------------------------------------------------------------------------------------------------


def test_tiny_transformer_ignores_padding_and_trains(glue: dict) -> None:
    dm = datamodule(glue)
    model = tiny_model(dm).eval()
    _index, x, y = next(iter(dm.pool_dataloader()))
    logits = model(x)
    assert logits.shape == (len(y), 2)
    # A text scored alone (no padding) gets the logits it got inside the padded batch.
    shortest = int(x["attention_mask"].sum(1).argmin())
    length = int(x["attention_mask"][shortest].sum())
    alone = {key: value[shortest : shortest + 1, :length] for key, value in x.items()}
    assert torch.allclose(model(alone)[0], logits[shortest], atol=1e-5)
    model.train()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_text_model_configs_build_from_the_datamodule(glue: dict) -> None:
    dm = datamodule(glue)
    cfg = compose_config("train", ["paths.output_dir=/tmp/unused", "model=tiny_transformer"])
    model = build_model_for(cfg.model, dm)
    assert model.model.config.vocab_size == dm.model_kwargs()["vocab_size"]
    assert model.model.config.max_position_embeddings == 24 and model.model.config.num_labels == 2


def test_pretrained_weights_offline_are_a_clear_error(tmp_path: Path) -> None:
    cfg = compose_config("train", ["paths.output_dir=/tmp/unused", "model=albert_base", f"model.cache_dir={tmp_path}"])
    with pytest.raises(Exception, match=r"(?s)'albert-base-v2'.*offline mode is on.*model=tiny_transformer"):
        build_model(cfg.model, (128,), 2, vocab_size=30000, pad_token_id=0)


@pytest.fixture(scope="module")
def saved_classifier(glue: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SequenceClassifier]:
    """A 3-class classifier and its tokenizer written by save_pretrained(), as a fine-tuned checkpoint
    from the hub would be cached: any AutoModelForSequenceClassification folder or name loads alike."""
    folder = tmp_path_factory.mktemp("pretrained") / "tiny-bert-3-labels"
    dm = datamodule(glue)
    torch.manual_seed(1)
    model = SequenceClassifier(dm.input_shape, 3, config=TINY, **dm.model_kwargs())
    model.model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(glue["tokenizer"]).save_pretrained(folder)
    return folder, model


def test_any_pretrained_classifier_loads_its_body_with_a_head_for_this_task(glue: dict, saved_classifier) -> None:
    folder, saved = saved_classifier
    overrides = ["paths.output_dir=/tmp/unused", "datamodule=cola", "model=albert_base", f"model.pretrained={folder}"]
    cfg = compose_config("train", overrides)
    assert cfg.datamodule.tokenizer == str(folder)  # the tokenizer follows model.pretrained
    dm = datamodule(glue, tokenizer=cfg.datamodule.tokenizer)
    model = build_model_for(cfg.model, dm)
    loaded, before = model.model.state_dict(), saved.model.state_dict()
    body = [name for name in before if not name.startswith("classifier.")]
    assert body and all(torch.equal(loaded[name], before[name]) for name in body)
    assert model.model.classifier.out_features == 2  # the saved 3-class head is replaced for CoLA's 2 classes
    _, x, _ = next(iter(dm.pool_dataloader()))
    assert model(x).shape == (len(x["input_ids"]), 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 10_000}, r"The tokenizer has 10000 ids but .* embeds \d+: use the model's own tokenizer"),
        ({"input_shape": (64,)}, r"datamodule.max_length=64 exceeds the 24 positions of .*: lower it"),
    ],
)
def test_a_pretrained_model_that_does_not_fit_the_data_is_refused(saved_classifier, kwargs: dict, message: str) -> None:
    folder, saved = saved_classifier
    settings = {"input_shape": (24,), "num_classes": 2, "vocab_size": saved.model.config.vocab_size, **kwargs}
    with pytest.raises(ValueError, match=message):
        SequenceClassifier(**settings, pretrained=str(folder))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_shape": (3, 32, 32)}, ValueError, "use a text datamodule"),
        ({"vocab_size": None}, ValueError, "needs the tokenizer's vocab_size"),
    ],
)
def test_text_models_refuse_what_they_cannot_read(kwargs: dict, error: type, message: str) -> None:
    settings = {"input_shape": (16,), "num_classes": 2, "vocab_size": 50, "config": TINY, **kwargs}
    with pytest.raises(error, match=message):
        SequenceClassifier(**settings)


def test_a_tensor_input_is_refused_by_name() -> None:
    model = SequenceClassifier((16,), 2, vocab_size=50, config=TINY)
    with pytest.raises(TypeError, match="dict of tensors"):
        model(torch.randint(0, 50, (2, 16)))


def test_mc_dropout_repeats_dict_inputs(glue: dict) -> None:
    """bald's MC-dropout pass repeats every tensor of a dict input, not only a tensor input."""
    dm = datamodule(glue)
    module = OnlineBatchSelection(tiny_model(dm), 2, selection="bald", mc_samples=3)
    _, x, y = next(iter(dm.train_dataloader()))
    mc_logits = module.method.mc_dropout_forward(module.model, x)
    assert mc_logits.shape == (3, len(y), 2)
    assert not torch.allclose(mc_logits[0], mc_logits[1])  # dropout differs between samples


# --- configs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", TEXT_EXPERIMENTS)
def test_text_experiments_carry_the_papers_settings(experiment: str) -> None:
    stage = "train_irreducible" if experiment.endswith("_irred") else "train"
    cfg = compose_config(stage, ["paths.output_dir=/tmp/unused", f"experiment={experiment}"])
    task = experiment.split("_")[0]
    assert (cfg.datamodule.task, cfg.model.pretrained) == (task, "albert-base-v2")
    assert cfg.datamodule.tokenizer == "albert-base-v2"  # follows the model's checkpoint
    assert cfg.optimizer.lr == 2e-5
    if stage == "train_irreducible":
        assert (cfg.batch_size, cfg.trainer.max_epochs, cfg.trainer.val_check_interval) == (32, 10, 0.05)
    else:
        epoch = {"cola": 4025, "sst2": 32675}[task] // 320  # steps per epoch of large batches
        epochs, val_fraction = {"cola": (100, 1.0), "sst2": (15, 0.2)}[task]
        assert (cfg.large_batch_size, cfg.selection.percent_train) == (320, 0.1)
        assert cfg.trainer.max_steps == epochs * epoch
        assert cfg.val_every_n_steps == int(val_fraction * epoch)


# --- both stages, end to end ------------------------------------------------------------------------------


def text_config(glue: dict, root: Path, config_name: str, experiment: str, *overrides: str, output: str) -> DictConfig:
    """A real text experiment, shrunk: tiny transformer, the fixture files and tokenizer, few steps."""
    return config_in(
        root,
        config_name,
        f"experiment={experiment}",
        "model=tiny_transformer",
        *(f"model.config.{k}={v}" for k, v in TINY.items()),
        f"datamodule.data_dir={glue['data_dir']}",
        f"datamodule.tokenizer={glue['tokenizer']}",
        "datamodule.download=false",
        "datamodule.val_size=40",
        "datamodule.max_length=24",
        "datamodule.eval_batch_size=64",
        "optimizer.lr=1e-2",
        *overrides,
        output=output,
    )


@pytest.fixture(scope="module")
def il_stage(glue: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("text_pipeline")
    cfg = text_config(glue, root, "train_irreducible", "cola_albert_irred", "trainer.max_epochs=8", output="il")
    return root, train_irreducible(cfg)


@pytest.fixture(scope="module")
def target_runs(glue: dict, il_stage: tuple[Path, dict]) -> dict[str, dict]:
    root, _ = il_stage
    overrides = ["large_batch_size=40", "trainer.max_steps=8", "val_every_n_steps=4", "trainer.log_every_n_steps=2"]
    return {
        name: train(text_config(glue, root, "train", "cola_albert_main", f"selection={name}", *overrides, output=name))
        for name in ("reducible_loss", "uniform")
    }


def test_irreducible_stage_on_text_writes_a_store_for_the_pool(il_stage: tuple[Path, dict]) -> None:
    root, il = il_stage
    store = IrreducibleLossStore.load(Path(il["il_store"]))
    assert Path(il["il_store"]).is_relative_to(root / ".cache" / "irreducible")
    assert len(store.losses) == il["dataset"]["pool_size"] == 130 and il["dataset"]["dataset"] == "glue_cola"
    assert bool(torch.isfinite(store.losses).all())
    assert il["steps"] == 8 * -(-130 // 32)  # 8 epochs of the 130-point holdout in batches of 32
    assert il["val_acc"] > 0.9  # the fixture's sentiment words are learnt within 8 epochs


@pytest.mark.parametrize("name", ["reducible_loss", "uniform"])
def test_target_stage_on_text_runs_each_method(name: str, target_runs: dict[str, dict], il_stage) -> None:
    _, il = il_stage
    result = target_runs[name]
    assert (result["selection"], result["steps"], result["large_batch_size"], result["batch_size"]) == (name, 8, 40, 4)
    assert [point[0] for point in result["val_curve"]] == [4, 8]
    assert 0.0 <= result["test_acc"] <= 1.0
    assert sum(n * times for times, n in result["selection_counts"]["histogram"]) == 8 * 4
    assert result["il_store"] == (il["il_store"] if name == "reducible_loss" else None)
    assert result["dataset"] == il["dataset"]


def test_reducible_loss_on_text_selects_points_with_higher_reducible_loss(il_stage, target_runs) -> None:
    root, _ = il_stage
    with open(root / "reducible_loss" / "csv" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("selection/reducible_loss_selected")]
    assert rows
    for row in rows:
        assert float(row["selection/reducible_loss_selected"]) > float(row["selection/reducible_loss_not_selected"])


def test_a_main_experiment_points_to_its_irred_experiment_for_the_il_store() -> None:
    overrides = ["experiment=cola_albert_main", "selection=uniform", "datamodule.max_length=64", "seed=2"]
    assert irreducible_overrides(overrides) == ["experiment=cola_albert_irred", "datamodule.max_length=64"]
    # An experiment with an IL recipe of its own (<name>_irred) maps to it; one without, to itself.
    assert irreducible_overrides(["experiment=fmnist_noisy_mlp"]) == ["experiment=fmnist_noisy_mlp_irred"]
    assert irreducible_overrides(["+experiment=synthetic_noisy_mlp"]) == ["+experiment=synthetic_noisy_mlp"]
    irred = compose_config("train_irreducible", ["paths.output_dir=/tmp/unused", "experiment=cola_albert_irred"])
    main = compose_config("train", ["paths.output_dir=/tmp/unused", "experiment=cola_albert_main"])
    # The same data settings (batch sizes aside): the same pool, so the store the one makes fits the other.
    differing = {k for k in irred.datamodule if irred.datamodule[k] != main.datamodule[k]}
    assert differing == {"batch_size"}


def test_the_core_imports_no_hugging_face_package_at_module_level() -> None:
    """The [nlp] extra is optional: Hugging Face packages are imported only inside the functions that
    use them, so importing any rholoss module works without them (torchmetrics, which Lightning
    imports, checks for them itself). Read from the source: in this process they are installed."""
    optional = {"transformers", "datasets", "tokenizers"}
    top_level = []
    for path in sorted((ROOT / "src" / "rholoss").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module-level statements only
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            top_level += [f"{path.name}: {name}" for name in names if name.split(".")[0] in optional]
    assert top_level == []
    # and the text code does import them where it runs (the check above is not vacuous)
    text = (ROOT / "src" / "rholoss" / "models" / "sequence_classifier.py").read_text()
    assert "from transformers import AutoModelForSequenceClassification" in text


def test_without_the_nlp_extra_text_names_the_install(glue: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The core imports no Hugging Face package; text asks for the [nlp] extra when it is missing."""
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ImportError, match=r"pip install 'rholoss\[nlp\]'"):
        datamodule(glue)
    with pytest.raises(ImportError, match=r"rholoss\[nlp\]"):
        SequenceClassifier((16,), 2, vocab_size=50, config=TINY)


def test_the_il_stage_s_experiment_is_the_targets_own_il_recipe_where_there_is_one() -> None:
    assert irreducible_experiment("code_lm_main") == "code_lm_irred"  # a pair: <name>_main -> <name>_irred
    assert irreducible_experiment("fmnist_noisy_mlp") == "fmnist_noisy_mlp_irred"  # a recipe beside it
    assert irreducible_experiment("synthetic_noisy_mlp") == "synthetic_noisy_mlp"  # none: the same one
