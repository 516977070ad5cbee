"""The selection registry and the math of every selection function."""

from __future__ import annotations

import pytest
import torch

from rholoss.selection import (
    SelectionInput,
    UnknownSelectionError,
    get_selection,
    list_selections,
    register,
    selection_size,
)
from rholoss.selection.step import check_precision, native_bf16, resolved_precision, selection_forward
from rholoss.tasks import Classification

ALL = list_selections(Classification())  # the per-point methods; token-level ones: test_token_selection.py
N_B, K, C = 50, 7, 5


def random_batch(seed: int = 0, device: str = "cpu") -> SelectionInput:
    generator = torch.Generator().manual_seed(seed)
    return SelectionInput(
        targets=torch.randint(0, C, (N_B,), generator=generator).to(device),
        logits=torch.randn(N_B, C, generator=generator).to(device),
        irreducible_loss=torch.rand(N_B, generator=generator).to(device) * 3,
        mc_logits=torch.randn(4, N_B, C, generator=generator).to(device),
    )


def test_builtin_functions_are_registered() -> None:
    assert {
        "uniform",
        "reducible_loss",
        "loss",
        "irreducible_loss",
        "gradnorm",
        "gradnorm_is",
        "entropy",
        "bald",
        "reducible_loss_sampled",
        "svp",
        "loss_stale",
    } <= set(ALL)


def test_unknown_name_lists_every_registered_name() -> None:
    with pytest.raises(UnknownSelectionError) as error:
        get_selection("reducible_los")
    message = str(error.value)
    assert "reducible_los" in message
    assert all(name in message for name in ALL)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("loss")(lambda batch, k: None)


@pytest.mark.parametrize("name", ALL)
def test_selects_k_distinct_positions_on_the_batch_device(name: str) -> None:
    batch = random_batch()
    chosen = get_selection(name).select(batch, K)
    assert chosen.positions.shape == (K,)
    assert chosen.positions.dtype == torch.int64
    assert chosen.positions.device == batch.targets.device
    if not get_selection(name).with_replacement:
        assert len(set(chosen.positions.tolist())) == K
    assert int(chosen.positions.min()) >= 0 and int(chosen.positions.max()) < N_B
    if chosen.weights is not None:
        assert chosen.weights.shape == (K,)
        assert bool((chosen.weights > 0).all())


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_the_same_batch(name: str) -> None:
    method = get_selection(name)
    torch.manual_seed(0)
    first = method.select(random_batch(seed=3), K).positions.sort().values
    torch.manual_seed(0)
    second = method.select(random_batch(seed=3), K).positions.sort().values
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", ALL)
def test_needs_only_what_it_declares(name: str) -> None:
    """A method that declares it needs no logits / no IL must work without them."""
    method = get_selection(name)
    full = random_batch()
    batch = SelectionInput(
        targets=full.targets,
        logits=full.logits if method.needs_forward else None,
        irreducible_loss=full.irreducible_loss if method.needs_irreducible else None,
        mc_logits=full.mc_logits if method.needs_mc_samples else None,
    )
    assert method.select(batch, K).positions.shape == (K,)


@pytest.mark.parametrize("name", ALL)
def test_no_host_sync_in_the_scoring_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Selection must not read values back to the host (.item(), .tolist(), .cpu(), bool())."""

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation inside a selection function")

    for attribute in ("item", "tolist", "cpu", "numpy", "__bool__"):
        monkeypatch.setattr(torch.Tensor, attribute, forbidden)
    batch = random_batch()
    get_selection(name).select(batch, K)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_runs_on_cuda(name: str) -> None:
    chosen = get_selection(name).select(random_batch(device="cuda"), K)
    assert chosen.positions.is_cuda


def noisy_point_batch() -> SelectionInput:
    """Point 0: mislabelled (high loss, high IL). Point 1: learnable and not yet learnt (high loss,
    low IL). Point 2: already learnt (low loss, low IL). Point 3: easy for the holdout model but
    moderately hard now."""
    targets = torch.tensor([0, 0, 0, 0])
    logits = torch.tensor([[-4.0, 4.0], [-2.0, 2.0], [5.0, -5.0], [0.0, 0.5]])
    irreducible = torch.tensor([7.5, 0.1, 0.01, 0.001])
    return SelectionInput(targets=targets, logits=logits, irreducible_loss=irreducible)


def test_reducible_loss_skips_the_noisy_point_that_loss_picks() -> None:
    batch = noisy_point_batch()
    assert get_selection("loss").select(batch, 1).positions.tolist() == [0]
    assert get_selection("reducible_loss").select(batch, 1).positions.tolist() == [1]
    assert torch.allclose(get_selection("reducible_loss").select(batch, 4).positions.sort().values, torch.arange(4))


def test_reducible_loss_is_loss_minus_irreducible_loss() -> None:
    batch = random_batch()
    order = torch.argsort(batch.loss - batch.irreducible_loss, descending=True)
    assert set(get_selection("reducible_loss").select(batch, K).positions.tolist()) == set(order[:K].tolist())


def test_irreducible_loss_prefers_the_lowest_il() -> None:
    batch = noisy_point_batch()
    assert set(get_selection("irreducible_loss").select(batch, 2).positions.tolist()) == {2, 3}


def test_gradnorm_is_the_distance_between_softmax_and_onehot() -> None:
    batch = noisy_point_batch()
    probs = torch.softmax(batch.logits, -1)
    expected = torch.linalg.vector_norm(probs - torch.nn.functional.one_hot(batch.targets, 2), dim=-1)
    assert get_selection("gradnorm").select(batch, 1).positions.tolist() == [int(expected.argmax())]
    assert get_selection("gradnorm").select(batch, 2).positions.sort().values.tolist() == [0, 1]


def test_uniform_takes_the_first_k_of_the_shuffled_large_batch() -> None:
    assert get_selection("uniform").select(random_batch(), K).positions.tolist() == list(range(K))
    assert not get_selection("uniform").needs_forward


def test_loss_is_computed_in_float32_from_low_precision_logits() -> None:
    batch = random_batch()
    half = SelectionInput(targets=batch.targets, logits=batch.logits.bfloat16())
    assert half.loss.dtype == torch.float32
    assert torch.allclose(half.loss, batch.loss, atol=0.05)


@pytest.mark.parametrize(
    ("large_batch", "percent", "expected"), [(320, 0.1, 32), (640, 0.1, 64), (10, 1.0, 10), (10, 0.1, 1), (3, 0.5, 2)]
)
def test_selection_size(large_batch: int, percent: float, expected: int) -> None:
    assert selection_size(large_batch, percent) == expected


@pytest.mark.parametrize("percent", [0.0, -0.1, 1.5])
def test_percent_train_outside_unit_interval_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match=r"percent_train must be in \(0, 1\]"):
        selection_size(100, percent)


def test_large_batch_smaller_than_one_over_percent_train_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        selection_size(8, 0.05)


@pytest.mark.parametrize(("amx", "avx512_bf16"), [(True, False), (False, True), (False, False)])
def test_auto_precision_scores_in_bf16_only_where_bf16_is_native(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool
) -> None:
    model, x = torch.nn.Linear(4, 3), torch.randn(5, 4)
    native = amx or avx512_bf16
    native_bf16.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    try:
        assert resolved_precision(torch.device("cpu"), "auto") == ("bf16" if native else "32")
        assert selection_forward(model, x, "auto").dtype == (torch.bfloat16 if native else torch.float32)
        for explicit in ("32", "bf16", "16"):  # an explicit precision is never changed
            assert resolved_precision(torch.device("cpu"), explicit) == explicit
    finally:
        monkeypatch.undo()
        native_bf16.cache_clear()


def test_auto_precision_is_float32_where_torch_cannot_say(monkeypatch: pytest.MonkeyPatch) -> None:
    native_bf16.cache_clear()
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    try:
        assert resolved_precision(torch.device("cpu"), "auto") == "32"
    finally:
        monkeypatch.undo()
        native_bf16.cache_clear()


def test_an_unknown_precision_names_the_ones_there_are() -> None:
    with pytest.raises(ValueError, match="auto, 32, bf16 or 16"):
        check_precision("fp8")
