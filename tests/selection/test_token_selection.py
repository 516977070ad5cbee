"""Token-level selection (RHO-1's selective language modelling) and the causal LM task, on a tiny
model of token ids: which tokens a step trains on, its loss, and the noise-token statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rholoss.modules import OnlineBatchSelection
from rholoss.selection import TokenSelectionInput, get_selection, list_selections
from rholoss.selection.registry import top_token_mask
from rholoss.tasks import Classification, LanguageModeling, Regression, TaskMismatchError

VOCAB, T, B = 11, 6, 4


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(VOCAB, 8), nn.Linear(8, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def test_causal_lm_losses_and_metric() -> None:
    task = LanguageModeling(VOCAB)
    logits, targets = torch.randn(B, T, VOCAB), torch.randint(0, VOCAB, (B, T))
    tokens = task.token_loss(logits, targets)
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), reduction="none").view(B, T)
    assert torch.allclose(tokens, expected)
    assert torch.allclose(task.point_loss(logits, targets), expected.mean(1))
    metric = task.new_metric()
    task.update_metric(metric, logits[:1], targets[:1])
    task.update_metric(metric, logits[1:], targets[1:])
    assert float(metric.compute()) == pytest.approx(float(expected.mean()))  # every token once
    assert float(task.derived_metrics(torch.tensor(2.0))["ppl"]) == pytest.approx(7.389056)
    with pytest.raises(ValueError, match=r"not \[N, T, vocab\] logits"):
        task.token_loss(torch.randn(B, VOCAB), targets)


def test_token_methods_apply_to_sequences_only() -> None:
    assert {"token_reducible_loss", "token_loss"} <= set(list_selections(LanguageModeling()))
    assert "token_loss" not in list_selections(Classification()) and "entropy" not in list_selections(
        LanguageModeling()
    )
    for task in (Classification(3), Regression(1)):
        with pytest.raises(TaskMismatchError, match="'token_reducible_loss' needs per-token losses"):
            OnlineBatchSelection(nn.Linear(3, 3), task, selection="token_reducible_loss")


def test_top_token_mask_takes_the_top_share_across_the_batch() -> None:
    scores = torch.tensor([[0.0, 5.0, 1.0], [4.0, 2.0, 3.0]])
    assert top_token_mask(scores, 0.5).tolist() == [[False, True, False], [True, False, True]]
    assert top_token_mask(scores, 0.01).sum() == 1  # at least one token
    with pytest.raises(ValueError, match="token_fraction must be in"):
        top_token_mask(scores, 0.0)
    method = get_selection("token_reducible_loss")
    batch = TokenSelectionInput(torch.tensor([[3.0, 3.0], [3.0, 1.0]]), torch.tensor([[0.0, 2.9], [1.0, 0.0]]))
    assert method.select_tokens(batch, token_fraction=0.5).tolist() == [[True, False], [True, False]]


def test_a_token_level_step_trains_on_the_chosen_tokens() -> None:
    torch.manual_seed(0)
    module = OnlineBatchSelection(
        TinyLM(), LanguageModeling(VOCAB), selection="token_reducible_loss", percent_train=1.0, token_fraction=0.25
    )
    pool = 10
    il = torch.rand(pool, T).half()
    noise = torch.zeros(pool, T, dtype=torch.bool)
    noise[:, 0] = True  # one noise token per window
    module.prepare_pool(pool, irreducible=il, noise=noise)
    assert torch.allclose(
        module.method.irreducible.point_table, il.float().mean(1)
    )  # a sequence's IL: its tokens' mean
    index, x, y = torch.tensor([1, 3, 5, 7]), torch.randint(0, VOCAB, (B, T)), torch.randint(0, VOCAB, (B, T))
    module.log_interval_means = lambda *args, **kwargs: None  # no trainer attached
    loss = module.training_step((index, x, y), 0)
    with torch.no_grad():
        tokens = LanguageModeling(VOCAB).token_loss(module.model(x), y)
    expected_mask = top_token_mask(tokens - il[index].float(), 0.25)
    assert float(loss.detach()) == pytest.approx(float(tokens[expected_mask].mean()), rel=1e-5)
    loss.backward()  # only the chosen tokens carry gradient: the step is one ordinary backward pass
    assert int(module.diagnostics.num_tokens_trained) == int(expected_mask.sum()) == 6
    assert int(module.diagnostics.num_noise_tokens_trained) == int(expected_mask[:, 0].sum())
    assert module.diagnostics.noisy_selected_fraction == pytest.approx(int(expected_mask[:, 0].sum()) / 6)
    assert module.diagnostics.selection_counts[index].tolist() == [1, 1, 1, 1]


def test_sequence_level_selection_counts_every_token_of_a_selected_window() -> None:
    torch.manual_seed(0)
    module = OnlineBatchSelection(TinyLM(), LanguageModeling(VOCAB), selection="reducible_loss", percent_train=0.5)
    pool = 8
    noise = torch.zeros(pool, T, dtype=torch.bool)
    noise[2] = True  # window 2 is all noise
    module.prepare_pool(pool, irreducible=torch.rand(pool, T), noise=noise)
    assert not module.method.irreducible.per_token  # a sequence-level method keeps the means only
    module.log_interval_means = lambda *args, **kwargs: None
    index, x, y = torch.tensor([0, 2, 4, 6]), torch.randint(0, VOCAB, (B, T)), torch.randint(0, VOCAB, (B, T))
    module.training_step((index, x, y), 0)
    assert int(module.diagnostics.num_tokens_trained) == 2 * T
    chosen = module.diagnostics.selection_counts.nonzero().flatten().tolist()
    assert int(module.diagnostics.num_noise_tokens_trained) == (T if 2 in chosen else 0)
    assert module.diagnostics.tokens_trained == 2 * T


def test_a_causal_lm_loads_from_a_save_pretrained_folder_and_trains_a_token_level_step(tmp_path) -> None:
    """model.pretrained=<folder>: any Hugging Face causal LM saved with save_pretrained, offline."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from rholoss.models import CausalLM

    config = AutoConfig.for_model("gpt2", vocab_size=VOCAB, n_positions=T, n_embd=16, n_layer=1, n_head=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "lm")
    model = CausalLM((T,), VOCAB, vocab_size=VOCAB, pretrained=str(tmp_path / "lm"))
    module = OnlineBatchSelection(model, LanguageModeling(VOCAB), selection="token_loss", percent_train=1.0)
    module.prepare_pool(4, seq_len=T)
    module.log_interval_means = lambda *args, **kwargs: None
    loss = module.training_step((torch.arange(4), torch.randint(0, VOCAB, (4, T)), torch.randint(0, VOCAB, (4, T))), 0)
    loss.backward()
    assert int(module.diagnostics.num_tokens_trained) == round(0.5 * 4 * T)
    with pytest.raises(ValueError, match=r"exceeds|positions"):
        CausalLM((T + 10,), VOCAB, vocab_size=VOCAB, pretrained=str(tmp_path / "lm"))
