"""Registry of selection functions, by name.

A selection function sees one large batch (:class:`SelectionInput`) and returns the positions of the
points to train on (:class:`Selection`). It is pure tensor code on the batch's device: no ``.item()``,
no ``.cpu()``, no Python loop over points, so selecting never waits for the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from rholoss.tasks import Classification, Task, TaskMismatchError


@dataclass(frozen=True)
class SelectionInput:
    """A scored large batch: only what the method asked for is filled in.

    ``point_loss``: the current model's per-point loss under the task (float32), for methods that
    need a forward pass; ``logits``: the outputs as class logits, for class-logit tasks only;
    ``irreducible_loss``: for methods that need an IL store; ``mc_logits`` ([samples, n_B, classes],
    forward passes with dropout active): for methods that ask for them.
    """

    targets: Tensor
    logits: Tensor | None = None
    irreducible_loss: Tensor | None = None
    mc_logits: Tensor | None = None
    point_loss: Tensor | None = None

    @cached_property
    def loss(self) -> Tensor:
        """The current model's per-point loss, float32: ``point_loss``, or (a batch built from class
        logits alone) their cross-entropy."""
        if self.point_loss is not None:
            return self.point_loss
        if self.logits is None:
            raise ValueError("This selection function needs the current loss, but no forward pass was made.")
        return Classification().point_loss(self.logits, self.targets)

    @property
    def size(self) -> int:
        return self.targets.shape[0]

    @property
    def il(self) -> Tensor:
        """``irreducible_loss``, for functions registered with ``needs_irreducible``."""
        return _given(self.irreducible_loss, "irreducible losses")

    @property
    def class_logits(self) -> Tensor:
        """``logits``, for functions registered with ``needs_class_logits``."""
        return _given(self.logits, "class logits")

    @property
    def mc_class_logits(self) -> Tensor:
        """``mc_logits``, for functions registered with ``needs_mc_samples``."""
        return _given(self.mc_logits, "MC-dropout samples")


def _given(value: Tensor | None, what: str) -> Tensor:
    if value is None:
        raise ValueError(
            f"This selection function needs {what}, which were not computed: register it with what it needs."
        )
    return value


@dataclass(frozen=True)
class TokenSelectionInput:
    """A training batch of sequences as token-level selection sees it: the per-token loss of the
    training forward pass (detached; no extra forward pass) and, for methods that need it, the
    per-token irreducible loss, both ``[B, T]``."""

    token_loss: Tensor
    irreducible_loss: Tensor | None = None

    @property
    def il(self) -> Tensor:
        """``irreducible_loss``, for functions registered with ``needs_irreducible``."""
        return _given(self.irreducible_loss, "per-token irreducible losses")


@dataclass(frozen=True)
class Selection:
    """Positions in the large batch to train on (repeats only for methods that sample with
    replacement), and optional per-point loss weights that make the step's loss ``mean(w * loss)``."""

    positions: Tensor
    weights: Tensor | None = None
    scores: Tensor | None = None  # [n_B], for score-concentration statistics
    # The positions are the batch's first ones, in order (uniform): a batch of exactly that many
    # points is its own selection, with no copy.
    prefix: bool = False


SelectFn = Callable[..., Selection]  # (batch, k, **options) -> Selection
ScoreFn = Callable[..., Tensor]  # (batch, **options) -> Tensor[n_B]


@dataclass(frozen=True)
class SelectionRule:
    """A registered scoring rule and what it needs: the method running it computes only that (no
    forward pass for ``uniform``, MC-dropout passes only for rules with ``mc_samples``).

    ``needs_forward``: the current model's per-point loss (or outputs) on the large batch, which
    every task gives. ``needs_class_logits``: the outputs must be class logits (entropy, gradient
    norm, BALD), which only classification tasks give; see :meth:`applies_to`.

    ``needs_coreset``: training draws from a core-set chosen once before training (svp), so the
    pipeline builds it and restricts the pool first. ``default_stale_every``: the method scores from
    a per-point cache re-filled every that many steps instead of a forward pass per large batch,
    unless ``selection.stale_every`` says otherwise (which any logit-scored method may set).
    """

    name: str
    select: SelectFn
    needs_forward: bool
    needs_irreducible: bool
    with_replacement: bool
    needs_mc_samples: bool
    description: str
    needs_coreset: bool = False
    default_stale_every: int | None = None
    needs_class_logits: bool = False
    token_level: bool = False
    # Token-level methods: ``select_tokens(batch: TokenSelectionInput, token_fraction, **options)`` gives
    # the ``[B, T]`` mask of tokens to train on (their ``select`` refuses a batch of points).
    select_tokens: Callable[..., Tensor] | None = None

    def applies_to(self, task: Task) -> bool:
        if self.token_level and not task.token_level:
            return False
        return task.class_logits or not self.needs_class_logits


class UnknownSelectionError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


_REGISTRY: dict[str, SelectionRule] = {}


def register(
    name: str | None = None,
    *,
    needs_forward: bool = True,
    needs_class_logits: bool = False,
    needs_irreducible: bool = False,
    with_replacement: bool = False,
    needs_mc_samples: bool = False,
    needs_coreset: bool = False,
    default_stale_every: int | None = None,
) -> Callable[[SelectFn], SelectFn]:
    """Register ``fn(batch, k, **options) -> Selection`` under ``name`` (default: the function's
    import path, so a function in any package can be registered and named by ``selection._target_``);
    ``options`` are the function's own keys from the ``selection`` config (e.g. ``temperature``)."""

    def decorator(fn: SelectFn) -> SelectFn:
        rule_name = _claim(name, fn)
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[rule_name] = SelectionRule(
            rule_name,
            fn,
            needs_forward,
            needs_irreducible,
            with_replacement,
            needs_mc_samples,
            doc[0] if doc else "",
            needs_coreset=needs_coreset,
            default_stale_every=default_stale_every,
            # MC-dropout samples are class logits.
            needs_class_logits=needs_class_logits or needs_mc_samples,
        )
        return fn

    return decorator


def register_score(
    name: str | None = None,
    *,
    needs_forward: bool = True,
    needs_class_logits: bool = False,
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
        select_top.__module__, select_top.__qualname__ = score.__module__, score.__qualname__
        register(
            name,
            needs_forward=needs_forward,
            needs_class_logits=needs_class_logits,
            needs_irreducible=needs_irreducible,
            needs_mc_samples=needs_mc_samples,
            default_stale_every=default_stale_every,
        )(select_top)
        score.__rholoss_rule__ = select_top.__rholoss_rule__  # type: ignore[attr-defined]
        return score

    return decorator


TokenScoreFn = Callable[..., Tensor]  # (batch: TokenSelectionInput, **options) -> Tensor[B, T]


def register_token_score(
    name: str | None = None, *, needs_irreducible: bool = False
) -> Callable[[TokenScoreFn], TokenScoreFn]:
    """Register a token-level method: ``score(batch, **options) -> Tensor[B, T]`` scores each token of
    a training batch, and the step trains on the ``token_fraction`` of the batch's tokens with the
    highest scores (RHO-1's selective language modelling, for ``loss - IL``). Applies only to tasks
    whose points are sequences of tokens."""

    def decorator(score: TokenScoreFn) -> TokenScoreFn:
        def select_tokens(batch: TokenSelectionInput, token_fraction: float = 0.5, **options) -> Tensor:
            scores = score(batch, **options)
            return top_token_mask(scores, token_fraction)

        select_tokens.__doc__ = score.__doc__
        rule_name = _claim(name, score)
        doc = (score.__doc__ or "").strip().splitlines()
        _REGISTRY[rule_name] = SelectionRule(
            rule_name,
            _points_of_token_level(rule_name),
            needs_forward=False,
            needs_irreducible=needs_irreducible,
            with_replacement=False,
            needs_mc_samples=False,
            description=doc[0] if doc else "",
            token_level=True,
            select_tokens=select_tokens,
        )
        return score

    return decorator


def _claim(name: str | None, fn: Callable[..., Any]) -> str:
    """The name ``fn`` is registered under (its import path when not given), marked on ``fn`` so that
    ``selection._target_`` pointing at it finds its rule."""
    rule_name = name or f"{fn.__module__}.{fn.__qualname__}"
    if rule_name in _REGISTRY:
        raise ValueError(f"A selection function named {rule_name!r} is already registered.")
    fn.__rholoss_rule__ = rule_name  # type: ignore[attr-defined]
    return rule_name


def rule_of(fn: Any) -> SelectionRule | None:
    """The rule a function was registered as (by any of the ``register`` decorators), or None."""
    name = getattr(fn, "__rholoss_rule__", None)
    return _REGISTRY.get(name) if isinstance(name, str) else None


def _points_of_token_level(name: str) -> SelectFn:
    def refuse(batch: SelectionInput, k: int, **options: Any) -> Selection:
        raise TypeError(f"Selection {name!r} chooses tokens inside a training batch (select_tokens), not points.")

    return refuse


def top_token_mask(scores: Tensor, token_fraction: float) -> Tensor:
    """``[B, T]`` bool: the ``token_fraction`` of all the batch's tokens with the highest scores (at
    least one), chosen across sequences, as RHO-1 does."""
    if not 0.0 < token_fraction <= 1.0:
        raise ValueError(f"selection.token_fraction must be in (0, 1], got {token_fraction}.")
    flat = scores.flatten()
    k = max(1, round(token_fraction * flat.numel()))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask.view(scores.shape)


def get_selection(name: str) -> SelectionRule:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownSelectionError(
            f"Unknown selection function {name!r}. Registered: {', '.join(list_selections())}."
        ) from None


def list_selections(task: Task | None = None) -> list[str]:
    """Registered names; with ``task``, only those that apply to it."""
    return sorted(name for name, method in _REGISTRY.items() if task is None or method.applies_to(task))


def check_applies(method: SelectionRule, task: Task) -> None:
    """Refuse a method the task cannot serve (a class-logit method on regression), listing those it can."""
    if not method.applies_to(task):
        needs = "per-token losses" if method.token_level else "class logits"
        raise TaskMismatchError(
            f"Selection {method.name!r} needs {needs}, which task={task.name} does not give. Methods for "
            f"{task.name}: {', '.join(list_selections(task))}."
        )


def check_percent_train(percent_train: float) -> None:
    if not 0.0 < percent_train <= 1.0:
        raise ValueError(f"selection.percent_train must be in (0, 1], got {percent_train}.")


def selection_size(large_batch_size: int, percent_train: float) -> int:
    """n_b = percent_train * n_B, checked so that every step trains on at least one point."""
    check_percent_train(percent_train)
    k = round(percent_train * large_batch_size)
    if k < 1:
        raise ValueError(
            f"A large batch of {large_batch_size} with selection.percent_train={percent_train} selects no "
            f"point: use a large batch of at least {int(-(-1 // percent_train))} (1 / percent_train)."
        )
    return k
