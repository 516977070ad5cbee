"""Registry of selection functions, by name.

A selection function sees one large batch (:class:`SelectionInput`) and returns the positions of the
points to train on (:class:`Selection`). It is pure tensor code on the batch's device: no ``.item()``,
no ``.cpu()``, no Python loop over points, so selecting never waits for the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class SelectionInput:
    """A scored large batch. ``logits`` is None for methods that do not need a forward pass;
    ``irreducible_loss`` is None for methods that do not need an IL store; ``mc_logits``
    ([samples, n_B, classes], forward passes with dropout active) only for methods that ask for them."""

    targets: Tensor
    logits: Tensor | None = None
    irreducible_loss: Tensor | None = None
    mc_logits: Tensor | None = None

    @cached_property
    def loss(self) -> Tensor:
        """Per-point cross-entropy of the current model, in float32 whatever the forward precision."""
        if self.logits is None:
            raise ValueError("This selection function needs logits, but none were computed.")
        return F.cross_entropy(self.logits.float(), self.targets, reduction="none")

    @property
    def size(self) -> int:
        return self.targets.shape[0]


@dataclass(frozen=True)
class Selection:
    """Positions in the large batch to train on (repeats only for methods that sample with
    replacement), and optional per-point loss weights that make the step's loss ``mean(w * loss)``."""

    positions: Tensor
    weights: Tensor | None = None
    scores: Tensor | None = None  # [n_B], for score-concentration statistics


SelectFn = Callable[..., Selection]  # (batch, k, **options) -> Selection
ScoreFn = Callable[..., Tensor]  # (batch, **options) -> Tensor[n_B]


@dataclass(frozen=True)
class SelectionMethod:
    """A registered function and what it needs: the module computes only that (no forward pass for
    ``uniform``, MC-dropout passes only for methods with ``mc_samples``).

    ``needs_coreset``: training draws from a core-set chosen once before training (svp), so the
    pipeline builds it and restricts the pool first. ``default_stale_every``: the method scores from
    a per-point cache re-filled every that many steps instead of a forward pass per large batch,
    unless ``selection.stale_every`` says otherwise (which any logit-scored method may set).
    """

    name: str
    select: SelectFn
    needs_logits: bool
    needs_irreducible: bool
    with_replacement: bool
    needs_mc_samples: bool
    description: str
    needs_coreset: bool = False
    default_stale_every: int | None = None


class UnknownSelectionError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


_REGISTRY: dict[str, SelectionMethod] = {}


def register(
    name: str,
    *,
    needs_logits: bool = True,
    needs_irreducible: bool = False,
    with_replacement: bool = False,
    needs_mc_samples: bool = False,
    needs_coreset: bool = False,
    default_stale_every: int | None = None,
) -> Callable[[SelectFn], SelectFn]:
    """Register ``fn(batch, k, **options) -> Selection`` under ``name``; ``options`` are the
    function's own keys from the ``selection`` config (e.g. ``temperature``)."""

    def decorator(fn: SelectFn) -> SelectFn:
        if name in _REGISTRY:
            raise ValueError(f"A selection function named {name!r} is already registered.")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = SelectionMethod(
            name,
            fn,
            needs_logits,
            needs_irreducible,
            with_replacement,
            needs_mc_samples,
            doc[0] if doc else "",
            needs_coreset=needs_coreset,
            default_stale_every=default_stale_every,
        )
        return fn

    return decorator


def register_score(
    name: str,
    *,
    needs_logits: bool = True,
    needs_irreducible: bool = False,
    needs_mc_samples: bool = False,
    default_stale_every: int | None = None,
) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``score(batch, **options) -> Tensor[n_B]``: the method keeps the ``k`` highest scores."""

    def decorator(score: ScoreFn) -> ScoreFn:
        def select_top(batch: SelectionInput, k: int, **options) -> Selection:
            scores = score(batch, **options)
            return Selection(torch.topk(scores, k, sorted=False).indices, scores=scores)

        select_top.__doc__ = score.__doc__
        select_top.__wrapped__ = score  # type: ignore[attr-defined]  # inspect.signature: the score's options
        register(
            name,
            needs_logits=needs_logits,
            needs_irreducible=needs_irreducible,
            needs_mc_samples=needs_mc_samples,
            default_stale_every=default_stale_every,
        )(select_top)
        return score

    return decorator


def get_selection(name: str) -> SelectionMethod:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownSelectionError(
            f"Unknown selection function {name!r}. Registered: {', '.join(list_selections())}."
        ) from None


def list_selections() -> list[str]:
    return sorted(_REGISTRY)


def check_percent_train(percent_train: float) -> None:
    if not 0.0 < percent_train <= 1.0:
        raise ValueError(f"selection.percent_train must be in (0, 1], got {percent_train}.")


def selection_size(large_batch_size: int, percent_train: float) -> int:
    """n_b = percent_train * n_B, checked so that every step trains on at least one point."""
    check_percent_train(percent_train)
    k = int(round(percent_train * large_batch_size))
    if k < 1:
        raise ValueError(
            f"A large batch of {large_batch_size} with selection.percent_train={percent_train} selects no "
            f"point: use a large batch of at least {int(-(-1 // percent_train))} (1 / percent_train)."
        )
    return k
