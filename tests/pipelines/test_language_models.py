"""Language models through both stages on a tiny code corpus written to tmp_path (byte tokenizer, a
1-layer GPT-2): the per-token IL store, every sequence- and token-level method, refusals of stores
made for other settings, and an exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from rholoss.irreducible import StoreError, TokenLossStore
from rholoss.pipelines import train, train_irreducible
from rholoss.selection import get_selection, list_selections
from rholoss.tasks import LanguageModeling
from tests.conftest import config_in
from tests.data.test_tokens import write_corpus
from tests.resuming import KILL_AT, kill_at, weights

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ_LEN, N_B, STEPS = 16, 40, 24


def lm_overrides(root: Path, stage: str) -> list[str]:
    """The overrides that shrink the code-corpus experiment to a tiny corpus written under ``root``."""
    irreducible = stage == "train_irreducible"
    corpus = root / "corpus"
    if not corpus.is_dir():
        write_corpus(corpus, files=30)
    return [
        f"experiment={'code_lm_irred' if irreducible else 'code_lm_main'}",
        f"datamodule.source_dir={corpus}",
        "datamodule.tokenizer=byte",
        "datamodule.max_bytes=null",
        "datamodule.exclude=[]",
        f"datamodule.seq_len={SEQ_LEN}",
        "datamodule.holdout_fraction=0.3",
        "datamodule.val_fraction=0.1",
        "datamodule.test_fraction=0.1",
        "model.config.n_embd=32",
        "model.config.n_layer=1",
        "model.config.n_head=2",
        "batch_size=16" if irreducible else f"large_batch_size={N_B}",
        f"trainer.max_steps={STEPS}",
        "val_every_n_steps=8",
    ]


def lm_config(root: Path, stage: str, *overrides: str, output: str = "run"):
    return config_in(root, stage, *lm_overrides(root, stage), *overrides, output=output)


@pytest.fixture(scope="module")
def lm_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("lm")
    return root, train_irreducible(lm_config(root, "train_irreducible", "trainer.max_steps=60", output="il"))


@pytest.mark.slow
def test_the_il_stage_writes_a_per_token_store(lm_workspace: tuple[Path, dict]) -> None:
    root, il = lm_workspace
    path = Path(il["il_store"])
    assert path.suffix == ".tokens" and path.is_relative_to(root / ".cache" / "irreducible")
    store = TokenLossStore.open(path)
    assert (store.metadata["task"], il["metric"], il["mode"]) == ("causal_lm", "val/loss", "min")
    assert store.windows.shape == (il["dataset"]["pool_size"], SEQ_LEN)
    assert il["mean_irreducible_loss"] == pytest.approx(float(store.sequence_losses().mean()), rel=1e-3)
    # The IL model learnt the code, not the noise: random-token spans cost it far more than real text.
    from hydra.utils import instantiate

    datamodule = instantiate(lm_config(root, "train").datamodule)
    datamodule.setup()
    noise = datamodule.target_noise(torch.arange(len(store.windows)))
    losses = torch.from_numpy(store.windows.astype("float32"))
    assert losses[noise].mean() > 1.5 * losses[~noise].mean()
    with (root / "il" / "csv" / "metrics.csv").open() as file:
        assert any(row.get("val/ppl") for row in csv.DictReader(file))  # perplexity beside val/loss


LM_METHODS = list_selections(LanguageModeling())


@pytest.mark.slow
@pytest.mark.parametrize("name", LM_METHODS)
def test_every_language_model_method_trains_end_to_end(name: str, lm_workspace: tuple[Path, dict]) -> None:
    root, il = lm_workspace
    result = train(lm_config(root, "train", f"selection={name}", output=name))
    method = get_selection(name)
    assert (result["task"], result["metric"], result["mode"], result["steps"]) == (
        "causal_lm",
        "val/loss",
        "min",
        STEPS,
    )
    assert result["best_val_loss"] == min(point[1] for point in result["val_curve"]) > 0
    assert result["il_store"] == (il["il_store"] if method.needs_irreducible else None)
    n_b = N_B // 5  # percent_train 0.2
    if method.token_level:
        assert result["token_fraction"] == 0.5
        assert result["tokens_trained"] == STEPS * round(0.5 * n_b * SEQ_LEN)
    else:
        assert result["tokens_trained"] == STEPS * n_b * SEQ_LEN
    assert 0.0 <= result["noisy_selected_fraction"] <= 1.0


@pytest.mark.slow
def test_token_level_rho_trains_on_fewer_noise_tokens_than_uniform(lm_workspace: tuple[Path, dict]) -> None:
    root, _ = lm_workspace
    uniform = train(lm_config(root, "train", "selection=uniform", output="cmp_uniform"))
    rho = train(lm_config(root, "train", "selection=token_reducible_loss", output="cmp_rho"))
    assert uniform["noisy_selected_fraction"] == pytest.approx(0.2, abs=0.05)  # 20% of the pool's tokens
    assert rho["noisy_selected_fraction"] < 0.5 * uniform["noisy_selected_fraction"]


@pytest.mark.slow
def test_memory_mapped_corpus_and_store_train_as_the_in_memory_ones(lm_workspace: tuple[Path, dict]) -> None:
    """on_device=false: windows read from the token files and per-token IL from the mapped store each
    step; the same batches, so the same selections and the same result."""
    root, _ = lm_workspace
    runs = [
        train(
            lm_config(
                root, "train", "selection=token_reducible_loss", f"datamodule.on_device={flag}", output=f"mapped_{flag}"
            )
        )
        for flag in ("true", "false")
    ]
    for key in ("val_curve", "tokens_trained", "noisy_selected_fraction", "selection_counts"):
        first, second = runs[0][key], runs[1][key]
        if key == "val_curve":
            first, second = [p[1] for p in first], [p[1] for p in second]
        assert first == (pytest.approx(second) if key == "val_curve" else second), key


@pytest.mark.slow
def test_a_store_for_other_settings_is_refused_naming_them(lm_workspace: tuple[Path, dict]) -> None:
    root, il = lm_workspace
    store = f"irreducible.path={il['il_store']}"
    with pytest.raises(StoreError, match=r"seq_len: store has 16, this run has 8"):
        train(lm_config(root, "train", store, "datamodule.seq_len=8", output="other_seq_len"))
    with pytest.raises(StoreError, match=r"tokenizer: store has 'byte'"):
        train(
            lm_config(root, "train", store, "datamodule.tokenizer=bpe", "datamodule.vocab_size=300", output="other_tok")
        )
    with pytest.raises(StoreError, match=r"no IL store for this data .*token_noise=0.1"):
        train(lm_config(root, "train", "datamodule.token_noise=0.1", output="other_noise"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["token_reducible_loss", "reducible_loss"])
def test_a_resumed_language_model_run_ends_as_an_uninterrupted_one(
    name: str, lm_workspace: tuple[Path, dict], selected: list[torch.Tensor]
) -> None:
    root, _ = lm_workspace
    common = [f"selection={name}", "trainer.max_steps=16", "checkpoint.every_n_steps=7"]
    full = train(lm_config(root, "train", *common, output=f"{name}_full"))
    with pytest.raises(RuntimeError, match=f"killed at step {KILL_AT}"):
        train(lm_config(root, "train", *common, *kill_at(), output=f"{name}_killed"))
    resumed = train(lm_config(root, "train", *common, f"resume={root / f'{name}_killed'}", output=f"{name}_resumed"))
    for key in ("val_curve", "test_loss", "tokens_trained", "noisy_selected_fraction", "selection_counts"):
        if key == "val_curve":
            assert [p[:2] for p in resumed[key]] == [p[:2] for p in full[key]]
        else:
            assert resumed[key] == full[key], key
    full_weights, resumed_weights = weights(root / f"{name}_full"), weights(root / f"{name}_resumed")
    assert all(torch.equal(full_weights[k], resumed_weights[k]) for k in full_weights)
