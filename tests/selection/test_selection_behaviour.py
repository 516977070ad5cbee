"""Known-answer behaviour of each selection function, the unbiasedness of ``gradnorm_is``, and the
diagnostics that OnlineBatchSelection logs (checked module-level, without a Trainer)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rholoss.modules.online_selection import OnlineBatchSelection
from rholoss.selection import SelectionInput, get_selection
from rholoss.selection.step import top_score_share


def select(name: str, batch: SelectionInput, k: int, **options: Any) -> Tensor:
    return get_selection(name).select(batch, k, **options).positions


def chosen_set(name: str, batch: SelectionInput, k: int, **options: Any) -> set[int]:
    return set(select(name, batch, k, **options).tolist())


def inclusion_frequencies(name: str, batch: SelectionInput, k: int, draws: int, seed: int, **options: Any) -> Tensor:
    """Share of ``draws`` seeded selections that include each point (with multiplicity: count / draws)."""
    torch.manual_seed(seed)
    positions = torch.stack([select(name, batch, k, **options) for _ in range(draws)])
    return torch.bincount(positions.flatten(), minlength=batch.size).double() / draws


# --------------------------------------------------------------------------------------------------
# entropy


def test_entropy_picks_the_most_uncertain_prediction_and_ignores_labels() -> None:
    # 3 classes; point 2 is uniform (entropy log 3), point 4 nearly so, the others confident.
    logits = torch.tensor(
        [[9.0, 0.0, 0.0], [0.0, 8.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 7.0], [0.3, 0.0, 0.1], [5.0, 4.0, 0.0]]
    )
    targets = torch.tensor([0, 1, 2, 2, 0, 1])
    batch = SelectionInput(targets=targets, logits=logits)
    scores = get_selection("entropy").select(batch, 1).scores
    assert float(scores[2]) == pytest.approx(math.log(3), abs=1e-6)
    probs = torch.softmax(logits[5], -1).tolist()
    assert float(scores[5]) == pytest.approx(-sum(p * math.log(p) for p in probs), abs=1e-6)
    assert select("entropy", batch, 1).tolist() == [2]
    assert chosen_set("entropy", batch, 2) == {2, 4}
    assert chosen_set("entropy", batch, 3) == {2, 4, 5}
    # Label-free: any permutation of the targets gives the same picks.
    for seed in range(3):
        permuted = targets[torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))]
        relabelled = SelectionInput(targets=permuted, logits=logits)
        assert chosen_set("entropy", relabelled, 3) == {2, 4, 5}
        assert chosen_set("entropy", SelectionInput(targets=(targets + 1) % 3, logits=logits), 1) == {2}


# --------------------------------------------------------------------------------------------------
# bald


def test_bald_prefers_disagreeing_samples_over_agreeing_uniform_ones() -> None:
    """Point 0: each MC sample is confident, but they disagree (BALD ~ log 2). Point 1: every sample
    predicts uniform (predictive entropy log 2 too, but BALD 0). Point 2: all samples agree and are
    confident (BALD 0, entropy 0)."""
    mc_logits = torch.tensor(
        [[[20.0, -20.0], [0.0, 0.0], [20.0, -20.0]], [[-20.0, 20.0], [0.0, 0.0], [20.0, -20.0]]]
    )  # [samples=2, n_B=3, classes=2]
    targets = torch.tensor([0, 0, 0])
    batch = SelectionInput(targets=targets, logits=mc_logits.mean(0), mc_logits=mc_logits)
    scores = get_selection("bald").select(batch, 1).scores
    assert scores.tolist() == pytest.approx([math.log(2), 0.0, 0.0], abs=1e-6)
    assert select("bald", batch, 1).tolist() == [0]
    # Entropy of the mean prediction cannot tell points 0 and 1 apart; BALD can.
    mean_probs = torch.softmax(mc_logits, -1).mean(0)
    mean_entropy = -(mean_probs * mean_probs.log()).sum(-1)
    assert float(mean_entropy[0]) == pytest.approx(float(mean_entropy[1]), abs=1e-6)


def test_bald_value_for_a_hand_computed_case() -> None:
    # Two samples with probabilities [0.9, 0.1] and [0.5, 0.5]: mean [0.7, 0.3].
    def h(*probs: float) -> float:
        return -sum(p * math.log(p) for p in probs)

    expected = h(0.7, 0.3) - (h(0.9, 0.1) + h(0.5, 0.5)) / 2  # 0.10174...
    assert expected == pytest.approx(0.10174, abs=1e-4)
    mc_logits = torch.tensor([[[math.log(0.9), math.log(0.1)]], [[0.0, 0.0]]])
    batch = SelectionInput(targets=torch.tensor([1]), logits=mc_logits[0], mc_logits=mc_logits)
    assert float(get_selection("bald").select(batch, 1).scores[0]) == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# reducible_loss_sampled


def reducible_batch(reducible: Tensor, classes: int = 4) -> SelectionInput:
    """Zero logits: every loss is log(classes), so reducible loss = log(classes) - IL = ``reducible``."""
    n = len(reducible)
    return SelectionInput(
        targets=torch.zeros(n, dtype=torch.long),
        logits=torch.zeros(n, classes),
        irreducible_loss=math.log(classes) - reducible,
    )


def test_reducible_loss_sampled_at_low_temperature_is_reducible_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(5):
        batch = reducible_batch(torch.randperm(20, generator=generator).float() * 0.1)
        expected = chosen_set("reducible_loss", batch, 6)
        assert expected == set(torch.topk(batch.loss - batch.irreducible_loss, 6).indices.tolist())
        torch.manual_seed(trial)
        assert chosen_set("reducible_loss_sampled", batch, 6, temperature=1e-4) == expected


def test_reducible_loss_sampled_at_high_temperature_is_uniform() -> None:
    n, k, draws = 10, 3, 4000
    batch = reducible_batch(torch.arange(n).float())  # scores 0..9: far from uniform at temperature 1
    frequencies = inclusion_frequencies("reducible_loss_sampled", batch, k, draws, seed=1, temperature=1e4)
    se = math.sqrt(0.3 * 0.7 / draws)  # each point is included with probability k/n = 0.3
    assert torch.allclose(frequencies, torch.full((n,), k / n, dtype=torch.float64), atol=4 * se)
    cold = inclusion_frequencies("reducible_loss_sampled", batch, k, 500, seed=1, temperature=1.0)
    assert float(cold[-1] - cold[0]) > 0.5  # the same scores at temperature 1 are far from uniform


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_reducible_loss_sampled_includes_high_reducible_loss_more_often(temperature: float) -> None:
    """One point with reducible loss a, nine with 0, k=2: Gumbel top-k samples without replacement
    ∝ exp(score / T), so the point is included with probability q1 + (1 - q1) q2."""
    n, k, draws, a = 10, 2, 4000, 3.0
    batch = reducible_batch(torch.tensor([a] + [0.0] * (n - 1)))
    e = math.exp(a / temperature)
    q1, q2 = e / (e + n - 1), e / (e + n - 2)
    p_high = q1 + (1 - q1) * q2
    p_low = (k - p_high) / (n - 1)
    frequencies = inclusion_frequencies("reducible_loss_sampled", batch, k, draws, seed=2, temperature=temperature)
    assert float(frequencies[0]) == pytest.approx(p_high, abs=4 * math.sqrt(p_high * (1 - p_high) / draws))
    assert float(frequencies[1:].mean()) == pytest.approx(p_low, abs=4 * math.sqrt(p_low / draws / (n - 1)))
    assert float(frequencies[0]) > 3 * float(frequencies[1:].max())


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_reducible_loss_sampled_refuses_non_positive_temperature(temperature: float) -> None:
    batch = reducible_batch(torch.arange(5).float())
    with pytest.raises(ValueError, match="temperature"):
        get_selection("reducible_loss_sampled").select(batch, 2, temperature=temperature)


# --------------------------------------------------------------------------------------------------
# gradnorm_is


def gradnorm_bound(batch: SelectionInput) -> Tensor:
    probs = torch.softmax(batch.logits, -1)
    return torch.linalg.vector_norm(probs - F.one_hot(batch.targets, probs.shape[-1]), dim=-1)


def test_gradnorm_is_weights_are_one_over_n_times_p() -> None:
    generator = torch.Generator().manual_seed(4)
    n, k = 30, 10
    batch = SelectionInput(
        targets=torch.randint(0, 5, (n,), generator=generator), logits=3 * torch.randn(n, 5, generator=generator)
    )
    bound = gradnorm_bound(batch)
    p = bound / bound.sum()
    torch.manual_seed(0)
    chosen = get_selection("gradnorm_is").select(batch, k)
    assert chosen.positions.shape == (k,)
    assert torch.allclose(chosen.weights, 1.0 / (n * p[chosen.positions]), rtol=1e-5)
    assert torch.allclose(chosen.scores, bound, atol=1e-6)
    # Points with a higher bound have smaller weights.
    order = torch.argsort(bound[chosen.positions])
    assert bool((chosen.weights[order].diff() <= 1e-6).all())


def test_gradnorm_is_samples_with_replacement_from_a_peaked_distribution() -> None:
    # Point 0 is misclassified (bound ~ sqrt 2 ~ 1.4), points 1-3 moderately, the rest confidently right.
    logits = torch.tensor([[-5.0, 5.0], [0.0, 0.0], [0.5, 0.0], [1.0, 0.0]] + [[8.0, -8.0]] * 6)
    batch = SelectionInput(targets=torch.zeros(10, dtype=torch.long), logits=logits)
    torch.manual_seed(0)
    positions = select("gradnorm_is", batch, 8)
    assert len(set(positions.tolist())) < 8  # duplicates: with replacement
    assert int((positions == 0).sum()) >= 2
    bound = gradnorm_bound(batch)
    # Draws with replacement are i.i.d., so one call for 1000 * 8 points is 1000 draws of 8.
    torch.manual_seed(1)
    frequencies = torch.bincount(select("gradnorm_is", batch, 8 * 1000), minlength=10).double() / 1000
    expected = 8 * bound / bound.sum()
    assert torch.allclose(frequencies, expected.double(), atol=0.15)
    # Drawn more often the higher the bound: 0 > 1 > 2 > 3 > the confident points.
    assert frequencies[:4].tolist() == sorted(frequencies[:4].tolist(), reverse=True)
    assert float(frequencies[3]) > 10 * float(frequencies[4:].max()) + 0.1


def test_gradnorm_is_weighted_gradient_is_unbiased() -> None:
    """E over draws of grad mean(w * loss[selected]) = grad mean(loss) of the large batch; the plain
    mean over the same draws is biased towards high-bound points."""
    torch.manual_seed(0)
    dim, classes, n, k, draws = 4, 3, 64, 8, 4000
    model = nn.Linear(dim, classes)
    with torch.no_grad():
        model.weight.mul_(3.0)  # spread the bounds: some points learnt, some not
    x, y = torch.randn(n, dim), torch.randint(0, classes, (n,))
    params = list(model.parameters())

    def flat_grad(loss: Tensor) -> Tensor:
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])

    logits = model(x)
    per_point_loss = F.cross_entropy(logits, y, reduction="none")
    full = flat_grad(per_point_loss.mean())
    per_point_grads = torch.stack([flat_grad(per_point_loss[i]) for i in range(n)])  # [n, params]
    assert torch.allclose(per_point_grads.mean(0), full, atol=1e-6)

    batch = SelectionInput(targets=y, logits=logits.detach())
    # Draws with replacement are i.i.d.: one call for draws * k points, cut into draws of k, is
    # distributed exactly as ``draws`` separate calls, each point's weight depending only on the point.
    torch.manual_seed(1)
    chosen = get_selection("gradnorm_is").select(batch, draws * k)
    positions, weights = chosen.positions.view(draws, k), chosen.weights.view(draws, k)
    bound = gradnorm_bound(batch)
    assert torch.allclose(weights, 1.0 / (n * bound[positions] / bound.sum()), rtol=1e-5)
    # Gradient of mean(w * loss[positions]) is (1/k) sum_j w_j grad loss_j: check it against autograd.
    weighted = torch.einsum("dk,dkp->dp", weights / k, per_point_grads[positions])
    for d in range(3):
        direct = flat_grad((weights[d] * per_point_loss[positions[d]]).mean())
        assert torch.allclose(weighted[d], direct, atol=1e-5)
    unweighted = per_point_grads[positions].mean(1)

    se = weighted.std(0) / math.sqrt(draws)
    error = weighted.mean(0) - full
    assert bool((error.abs() < 4 * se).all()), (error / se).abs().max()
    assert float(error.norm() / full.norm()) < 0.05
    # The same draws without the weights: clearly biased (so the test above can fail).
    bias = unweighted.mean(0) - full
    assert float((bias.abs() / (unweighted.std(0) / math.sqrt(draws))).max()) > 10
    assert float(bias.norm() / full.norm()) > 0.2


# --------------------------------------------------------------------------------------------------
# OnlineBatchSelection diagnostics, module-level


def identity_linear(classes: int) -> nn.Linear:
    """logits = x: the test writes the logits it wants directly as the inputs."""
    layer = nn.Linear(classes, classes)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(classes))
        layer.bias.zero_()
    return layer


def make_module(model: nn.Module, classes: int, selection: str, percent_train: float, **kwargs: Any):
    """An OnlineBatchSelection whose ``self.log`` calls are recorded in the returned dict (latest value)."""
    kwargs.setdefault("precision", "32")  # scores are compared with float32 forward passes
    module = OnlineBatchSelection(model, classes, selection=selection, percent_train=percent_train, **kwargs)
    logged: dict[str, float] = {}

    def record(name: str, value: Any, *args: Any, **kw: Any) -> None:
        logged[name] = float(value)

    module.log = record  # no Trainer: log_interval_means logs every step
    return module, logged


def step(module: OnlineBatchSelection, index: list[int], x: Tensor, y: Tensor) -> Tensor:
    return module.training_step((torch.tensor(index), x, y), 0)


def test_noisy_fraction_is_counted_exactly_over_steps() -> None:
    classes, pool = 3, 12
    corrupted = torch.zeros(pool, dtype=torch.bool)
    corrupted[[1, 5, 6]] = True
    module, logged = make_module(identity_linear(classes), classes, "uniform", 0.5)
    module.prepare_pool(pool, noise=corrupted)
    x, y = torch.randn(4, classes), torch.tensor([0, 1, 2, 0])
    # uniform keeps the first 2 positions of each large batch of 4.
    steps = [([0, 1, 2, 3], 1), ([2, 3, 4, 5], 0), ([5, 6, 0, 7], 2), ([8, 9, 5, 6], 0)]
    noisy = selected = 0
    for index, new_noisy in steps:
        step(module, index, x, y)
        noisy, selected = noisy + new_noisy, selected + 2
        assert int(module.diagnostics.num_selected_corrupted) == noisy
        assert module.diagnostics.noisy_selected_fraction == noisy / selected
        assert logged["selection/noisy_fraction"] == pytest.approx(noisy / selected)
    assert module.diagnostics.noisy_selected_fraction == 3 / 8


def test_noisy_fraction_with_loss_selection() -> None:
    classes, pool = 2, 8
    corrupted = torch.tensor([True, True, False, False, False, False, True, False])
    module, logged = make_module(identity_linear(classes), classes, "loss", 0.5)
    module.prepare_pool(pool, noise=corrupted)
    y = torch.zeros(4, dtype=torch.long)
    # Positions 1 and 3 have the highest loss (logit of class 0 lowest).
    x = torch.tensor([[3.0, 0.0], [-2.0, 2.0], [1.0, 0.0], [-1.0, 1.0]])
    step(module, [0, 1, 2, 3], x, y)  # selects indices 1, 3: one noisy
    assert module.diagnostics.selection_counts.tolist() == [0, 1, 0, 1, 0, 0, 0, 0]
    step(module, [4, 5, 6, 7], x, y)  # selects 5, 7: none noisy
    step(module, [7, 6, 5, 0], x, y)  # selects 6, 0: both noisy
    assert int(module.diagnostics.num_selected_corrupted) == 3
    assert module.diagnostics.noisy_selected_fraction == 3 / 6
    assert logged["selection/noisy_fraction"] == pytest.approx(0.5)


def test_relevant_fraction_is_counted_exactly_and_none_without_masks() -> None:
    classes, pool = 3, 10
    relevant = torch.tensor([True] * 5 + [False] * 5)
    module, logged = make_module(identity_linear(classes), classes, "uniform", 0.5)
    module.prepare_pool(pool, relevant=relevant)
    assert module.diagnostics.noisy_selected_fraction is None
    x, y = torch.randn(6, classes), torch.tensor([0, 1, 2, 0, 1, 2])
    step(module, [0, 1, 5, 2, 3, 4], x, y)  # selects 0, 1, 5: 2 relevant
    assert int(module.diagnostics.num_selected_relevant) == 2
    assert module.diagnostics.relevant_selected_fraction == 2 / 3
    step(module, [6, 7, 8, 0, 1, 2], x, y)  # selects 6, 7, 8: none relevant
    assert module.diagnostics.relevant_selected_fraction == 2 / 6
    assert logged["selection/relevant_fraction"] == pytest.approx(2 / 6)
    assert "selection/noisy_fraction" not in logged
    assert module.diagnostics.noisy_selected_fraction is None
    assert int(module.diagnostics.num_selected_corrupted) == 0

    plain, plain_logged = make_module(identity_linear(classes), classes, "uniform", 0.5)
    plain.prepare_pool(pool)
    step(plain, [0, 1, 2, 3, 4, 5], x, y)
    assert plain.diagnostics.noisy_selected_fraction is None and plain.diagnostics.relevant_selected_fraction is None
    assert "selection/relevant_fraction" not in plain_logged and "selection/noisy_fraction" not in plain_logged


def test_top_score_share_known_values() -> None:
    assert float(top_score_share(torch.ones(10), 0.2)) == pytest.approx(0.2, abs=1e-7)
    assert float(top_score_share(torch.full((10,), -3.5), 0.2)) == pytest.approx(0.2, abs=1e-7)
    assert float(top_score_share(torch.zeros(10), 0.2)) == pytest.approx(0.2, abs=1e-7)
    assert float(top_score_share(torch.tensor([0.0] * 9 + [5.0]), 0.2)) == pytest.approx(1.0)
    ramp = torch.arange(10).float()  # 0..9: top 2 hold (9 + 8) / 45
    assert float(top_score_share(ramp, 0.2)) == pytest.approx(17 / 45)
    # Non-negative scores are not shifted (the paper's ratio of raw sums)...
    assert float(top_score_share(ramp + 100.0, 0.2)) == pytest.approx(217 / 1045)
    # ...negative ones are, so the minimum becomes 0: -9..0 -> 0..9.
    assert float(top_score_share(-ramp, 0.2)) == pytest.approx(17 / 45)
    # n=4: top round(0.8) = 1 point; shifted [0, 2, 3, 5] -> 5 / 10.
    assert float(top_score_share(torch.tensor([-3.0, -1.0, 0.0, 2.0]), 0.2)) == pytest.approx(0.5)


def test_selected_and_not_selected_means_match_the_batch() -> None:
    torch.manual_seed(0)
    classes, n, pool = 4, 20, 50
    model = nn.Linear(6, classes)
    module, logged = make_module(model, classes, "reducible_loss", 0.25)
    irreducible = torch.rand(pool) * 2
    module.prepare_pool(pool, irreducible=irreducible)
    index = torch.randperm(pool)[:n]
    x, y = torch.randn(n, 6), torch.randint(0, classes, (n,))
    loss = step(module, index.tolist(), x, y).detach()

    with torch.no_grad():
        losses = F.cross_entropy(model(x), y, reduction="none")
    il = irreducible[index]
    reducible = losses - il
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[torch.argsort(reducible, descending=True)[:5]] = True
    assert module.diagnostics.selection_counts[index].tolist() == chosen.long().tolist()
    for name, values in {"loss": losses, "irreducible_loss": il, "reducible_loss": reducible}.items():
        assert logged[f"selection/{name}_selected"] == pytest.approx(float(values[chosen].mean()), abs=1e-5)
        assert logged[f"selection/{name}_not_selected"] == pytest.approx(float(values[~chosen].mean()), abs=1e-5)
    assert float(loss) == pytest.approx(float(losses[chosen].mean()), abs=1e-5)
    assert logged["train/loss"] == pytest.approx(float(losses[chosen].mean()), abs=1e-5)
    assert logged["selection/top20_score_share"] == pytest.approx(float(top_score_share(reducible, 0.2)), abs=1e-5)


def test_loss_selection_logs_no_irreducible_means() -> None:
    classes = 2
    module, logged = make_module(identity_linear(classes), classes, "loss", 0.5)
    module.prepare_pool(4)
    x, y = torch.tensor([[3.0, 0.0], [-2.0, 2.0], [1.0, 0.0], [-1.0, 1.0]]), torch.zeros(4, dtype=torch.long)
    step(module, [0, 1, 2, 3], x, y)
    losses = F.cross_entropy(x, y, reduction="none")
    assert logged["selection/loss_selected"] == pytest.approx(float(losses[[1, 3]].mean()), abs=1e-6)
    assert logged["selection/loss_not_selected"] == pytest.approx(float(losses[[0, 2]].mean()), abs=1e-6)
    assert not any("irreducible" in name or "reducible_loss" in name for name in logged)


def test_selection_counts_histogram() -> None:
    classes, pool = 3, 12
    module, _ = make_module(identity_linear(classes), classes, "uniform", 0.5)
    module.prepare_pool(pool)
    x, y = torch.randn(4, classes), torch.tensor([0, 1, 2, 0])
    for index in ([0, 1, 2, 3], [2, 3, 4, 5], [5, 6, 0, 7], [8, 9, 5, 6]):
        step(module, index, x, y)
    assert module.diagnostics.selection_count_summary() == {"never_selected": 4, "histogram": [[0, 4], [1, 8]]}
    step(module, [0, 1, 10, 11], x, y)
    assert module.diagnostics.selection_counts.tolist() == [2, 2, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0]
    assert module.diagnostics.selection_count_summary() == {"never_selected": 4, "histogram": [[0, 4], [1, 6], [2, 2]]}


def test_selection_counts_count_repeats_for_gradnorm_is() -> None:
    classes, pool = 2, 16
    module, _ = make_module(identity_linear(classes), classes, "gradnorm_is", 0.5)
    module.prepare_pool(pool)
    # Position 0 is the only point the model gets wrong: p(0) ~ 1 - 1e-7, so all 4 draws pick it.
    x = torch.tensor([[-10.0, 10.0]] + [[10.0, -10.0]] * 7)
    y = torch.zeros(8, dtype=torch.long)
    step(module, [3, 0, 1, 2, 4, 5, 6, 7], x, y)
    assert int(module.diagnostics.selection_counts[3]) == 4
    assert module.diagnostics.selection_count_summary() == {
        "never_selected": pool - 1,
        "histogram": [[0, pool - 1], [4, 1]],
    }

    # A spread distribution: the counts match the positions drawn with the same seed, repeats included.
    generator = torch.Generator().manual_seed(5)
    x = 2 * torch.randn(8, classes, generator=generator)
    y = torch.randint(0, classes, (8,), generator=generator)
    index = torch.arange(8, 16)
    before = module.diagnostics.selection_counts.clone()
    torch.manual_seed(11)
    step(module, index.tolist(), x, y)
    torch.manual_seed(11)
    positions = select("gradnorm_is", SelectionInput(targets=y, logits=x), 4)
    expected = before.clone()
    expected.index_add_(0, index[positions], torch.ones(4, dtype=torch.long))
    assert torch.equal(module.diagnostics.selection_counts, expected)
    assert int(module.diagnostics.selection_counts.sum()) == 8


def test_gradnorm_is_training_loss_is_the_weighted_mean() -> None:
    torch.manual_seed(0)
    classes, n = 3, 16
    model = nn.Linear(5, classes)
    module, logged = make_module(model, classes, "gradnorm_is", 0.25)
    module.prepare_pool(n)
    x, y = torch.randn(n, 5), torch.randint(0, classes, (n,))
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        loss = step(module, list(range(n)), x, y)
        assert loss.requires_grad
        loss = loss.detach()
        with torch.no_grad():
            logits = model(x)
        torch.manual_seed(seed)
        chosen = get_selection("gradnorm_is").select(SelectionInput(targets=y, logits=logits), 4)
        per_point = F.cross_entropy(logits[chosen.positions], y[chosen.positions], reduction="none")
        assert float(loss) == pytest.approx(float((chosen.weights * per_point).mean()), rel=1e-5)
        assert float(loss) != pytest.approx(float(per_point.mean()), rel=1e-3)  # the weights matter here
        assert logged["train/loss"] == pytest.approx(float(loss), rel=1e-6)


def dropout_model(dim: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, classes))


def test_bald_through_training_step_uses_mc_dropout() -> None:
    torch.manual_seed(0)
    dim, classes, n = 5, 3, 12
    model = dropout_model(dim, classes)
    module, logged = make_module(model, classes, "bald", 0.25, mc_samples=6)
    module.prepare_pool(n)
    x, y = torch.randn(n, dim), torch.randint(0, classes, (n,))

    module.train()
    mc = module.method.mc_dropout_forward(module.model, x)
    assert mc.shape == (6, n, classes)
    assert module.model.training  # mode restored
    assert not torch.allclose(mc[0], mc[1])  # dropout active: the samples differ
    model.eval()
    with torch.no_grad():
        deterministic = model(x)
    model.train()
    assert not torch.allclose(mc.mean(0), mc[0])
    assert torch.allclose(mc.mean(0), deterministic, atol=1.0)  # noisy around the eval prediction

    torch.manual_seed(3)
    loss = step(module, list(range(n)), x, y)
    assert torch.isfinite(loss) and loss.requires_grad
    # Same seed, same RNG use (selection forward, then MC forward): the top-3 BALD points were trained on.
    torch.manual_seed(3)
    module.method.selection_forward(module.model, x)
    scores = (
        get_selection("bald")
        .select(SelectionInput(targets=y, logits=None, mc_logits=module.method.mc_dropout_forward(module.model, x)), 3)
        .scores
    )
    expected = set(torch.topk(scores, 3).indices.tolist())
    assert set(torch.nonzero(module.diagnostics.selection_counts).flatten().tolist()) == expected
    assert int(module.diagnostics.selection_counts.sum()) == 3
    assert logged["selection/top20_score_share"] == pytest.approx(float(top_score_share(scores, 0.2)), abs=1e-5)


def test_mc_dropout_forward_keeps_samples_and_points_apart() -> None:
    """Dropout then logits = input: mc[s, i] must be a dropout mask of point i (each entry 0 or
    2 x[i] at p = 0.5), so a sample-major / point-major mix-up is caught."""
    classes, n, samples = 8, 5, 7
    model = nn.Sequential(nn.Dropout(0.5), identity_linear(classes))
    module, _ = make_module(model, classes, "bald", 0.2, mc_samples=samples)
    x = (torch.arange(n * classes).float() + 1).view(n, classes)  # every entry distinct and nonzero
    torch.manual_seed(0)
    mc = module.method.mc_dropout_forward(module.model, x)
    assert mc.shape == (samples, n, classes)
    kept = mc != 0
    assert torch.equal(mc[kept], (2 * x).expand(samples, n, classes)[kept])
    assert 0.3 < float(kept.float().mean()) < 0.7
    assert not torch.equal(kept[0], kept[1])


def test_bald_without_dropout_is_refused() -> None:
    with pytest.raises(ValueError, match="dropout"):
        OnlineBatchSelection(nn.Linear(5, 3), 3, selection="bald", percent_train=0.25)
