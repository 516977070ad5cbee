"""The selection step as plain functions: score a large batch, choose what to train on.

:class:`rholoss.modules.OnlineBatchSelection` is built on these, and they work as well inside your
own PyTorch loop or LightningModule: give them a model, a large batch, its points' irreducible
losses and n_b; they return the positions to train on (and weights, for methods that give them).
The scoring forward pass is inference (``torch.inference_mode``, optional autocast), on whatever
device the batch is, without host syncs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from rholoss.selection.registry import Selection, SelectionInput, SelectionRule, check_applies, get_selection
from rholoss.tasks import Classification, Task

Precision = Literal["auto", "32", "bf16", "16"]
ModelMode = Literal["train", "eval"]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}
# Forward passes with dropout active per large batch, for rules that need MC samples (bald).
MC_SAMPLES = 10

log = logging.getLogger(__name__)


def map_inputs(x: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to a tensor input or to every tensor of a dict input (text: input_ids, …)."""
    return {key: fn(value) for key, value in x.items()} if isinstance(x, dict) else fn(x)


def check_precision(precision: str) -> Precision:
    """``precision`` as a :data:`Precision`, or an error naming the ones there are."""
    if precision in ("auto", "32", "bf16", "16"):
        return cast(Precision, precision)
    raise ValueError(f"selection.precision must be auto, 32, bf16 or 16, got {precision!r}.")


def resolved_precision(device: torch.device, precision: str) -> str:
    """``precision``, with ``"auto"`` made ``"bf16"`` where ``device`` multiplies bf16 natively and
    ``"32"`` elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device.type) else "32"


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether bf16 matrix products are native on this machine's ``device_type``, so that scoring in
    bf16 is cheaper than in float32: CUDA GPUs with bf16 units (Ampere on), CPUs with AMX tiles or the
    AVX-512 BF16 dot-product instructions.

    Elsewhere bf16 is emulated and slower: on an AVX2 CPU a bf16 forward over 640 Fashion-MNIST
    images took 6x the float32 one, on an AVX-512 CPU without BF16 instructions 1.4x; with AMX it
    takes 0.45x, with AVX-512 BF16 (an AMD EPYC, Zen 4) 0.53x."""
    if device_type == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    elif device_type == "cpu":
        native = _cpu_reports("_is_amx_tile_supported") or _cpu_reports("_is_avx512_bf16_supported")
    else:
        native = False
    log.info("selection.precision=auto scores in %s on %s.", "bf16" if native else "float32", device_type)
    return native


def _cpu_reports(query: str) -> bool:
    """A ``torch.cpu`` capability query (torch has no public one for bf16 units); False where this
    torch lacks it, float32 being the safe choice."""
    probe = getattr(torch.cpu, query, None)
    return bool(probe is not None and probe())


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """Autocast to bf16/fp16 on ``device`` for the selection pass, or nothing for ``"32"`` (``"auto"``:
    :func:`resolved_precision`)."""
    precision = resolved_precision(device, str(precision))
    if precision in _AUTOCAST_DTYPES:
        return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
    return nullcontext()


def input_device(x: Any) -> torch.device:
    """The device of a tensor input, or of a dict input's first tensor."""
    return next(iter(x.values())).device if isinstance(x, dict) else x.device


def selection_forward(model: nn.Module, x: Any, precision: str = "32", model_mode: ModelMode = "train") -> Tensor:
    """The model's outputs on ``x`` for scoring: inference mode, in ``model_mode`` (``train`` as the
    paper's code: BatchNorm on batch statistics; ``eval``), the model's own mode restored after."""
    was_training = model.training
    model.train(model_mode == "train")
    try:
        with torch.inference_mode(), autocast(input_device(x), precision):
            return model(x)
    finally:
        model.train(was_training)


def mc_dropout_forward(model: nn.Module, x: Any, samples: int, precision: str = "32") -> Tensor:
    """``[samples, n_B, classes]`` outputs with only the dropout layers in train mode, computed as one
    forward pass over the batch repeated ``samples`` times."""
    was_training = model.training
    model.eval()
    for layer in model.modules():
        if isinstance(layer, _DropoutNd):
            layer.train()
    repeated = map_inputs(x, lambda t: t.repeat(samples, *([1] * (t.ndim - 1))))
    try:
        with torch.inference_mode(), autocast(input_device(x), precision):
            outputs = model(repeated)
    finally:
        model.train(was_training)
    return outputs.view(samples, -1, outputs.shape[-1])


def score_batch(
    model: nn.Module,
    x: Any,
    y: Tensor,
    method: SelectionRule,
    task: Task,
    irreducible_loss: Tensor | None = None,
    *,
    precision: str = "32",
    model_mode: ModelMode = "train",
    mc_samples: int = MC_SAMPLES,
    outputs: Tensor | None = None,
    point_loss: Tensor | None = None,
) -> SelectionInput:
    """What ``method`` needs to choose from the large batch ``(x, y)``, and nothing more: no forward
    pass for methods that need none. ``outputs`` (or, for methods that need no class logits, just
    ``point_loss``): the batch's when already known (a cache of stale scores), instead of a forward pass."""
    if method.needs_irreducible and irreducible_loss is None:
        raise ValueError(f"Selection {method.name!r} needs the points' irreducible losses (irreducible_loss=...).")
    if method.needs_forward and outputs is None and (point_loss is None or method.needs_class_logits):
        outputs = selection_forward(model, x, precision, model_mode)
    if method.needs_forward and point_loss is None:
        assert outputs is not None  # computed just above whenever point_loss was not given
        point_loss = task.point_loss(outputs, y)
    return SelectionInput(
        targets=y,
        logits=outputs if method.needs_forward and task.class_logits else None,
        irreducible_loss=irreducible_loss if method.needs_irreducible else None,
        mc_logits=mc_dropout_forward(model, x, mc_samples, precision) if method.needs_mc_samples else None,
        point_loss=point_loss if method.needs_forward else None,
    )


def select_batch(
    model: nn.Module,
    x: Any,
    y: Tensor,
    n_b: int,
    method: str | SelectionRule = "reducible_loss",
    irreducible_loss: Tensor | None = None,
    task: Task | None = None,
    *,
    precision: str = "32",
    model_mode: ModelMode = "train",
    mc_samples: int = MC_SAMPLES,
    **options: Any,
) -> tuple[Selection, SelectionInput]:
    """Score the large batch ``(x, y)`` and choose ``n_b`` of its points: the selection step of
    online batch selection, for your own training loop.

    Returns the :class:`Selection` (``positions`` in the batch, optional ``weights``; train on
    ``mean(weights * loss)`` of those points, see :func:`selected_loss`) and the scored batch (for
    statistics). ``irreducible_loss``: the IL of each point of the batch (``store.losses[index]``);
    ``task``: classification unless given; ``options``: the method's own settings (``temperature``).
    """
    task = task or Classification()
    method = get_selection(method) if isinstance(method, str) else method
    check_applies(method, task)
    check_precision(precision)
    scored = score_batch(
        model, x, y, method, task, irreducible_loss, precision=precision, model_mode=model_mode, mc_samples=mc_samples
    )
    return method.select(scored, n_b, **options), scored


def selected_loss(point_losses: Tensor, selection: Selection) -> Tensor:
    """The training loss of the selected points' per-point losses: their mean, importance-weighted
    where the method gives weights (which keeps the gradient estimate unbiased)."""
    if selection.weights is None:
        return point_losses.mean()
    return (point_losses * selection.weights).mean()


def selection_statistics(scored: SelectionInput, selection: Selection) -> dict[str, Tensor]:
    """Device tensors describing one step's choice: the score concentration (share of the batch's
    score held by its top 20%) and, for each of loss, IL and reducible loss that the method
    computed, its mean over the selected and the not-selected points."""
    stats: dict[str, Tensor] = {}
    if selection.scores is not None:
        stats["selection/top20_score_share"] = top_score_share(selection.scores, 0.2)
    quantities = {}
    if scored.point_loss is not None or scored.logits is not None:
        quantities["loss"] = scored.loss
    if scored.irreducible_loss is not None:
        quantities["irreducible_loss"] = scored.irreducible_loss
    if len(quantities) == 2:
        quantities["reducible_loss"] = quantities["loss"] - quantities["irreducible_loss"]
    if quantities:
        chosen = torch.zeros(scored.size, dtype=torch.bool, device=scored.targets.device)
        chosen[selection.positions] = True
        for name, values in quantities.items():
            stats[f"selection/{name}_selected"] = masked_mean(values, chosen)
            stats[f"selection/{name}_not_selected"] = masked_mean(values, ~chosen)
    return stats


def top_score_share(scores: Tensor, top_fraction: float) -> Tensor:
    """Share of a large batch's total score held by its ``top_fraction`` highest-scoring points
    (the paper's Fig. 1, left): 0.2 for the top 20% means no concentration, 1.0 all of it there.

    Non-negative scores (loss, gradient norm, entropy) are used as they are, as in the paper; scores
    that go negative (reducible loss) are shifted so that their minimum is 0, or the ratio of sums
    would be meaningless.
    """
    shifted = scores.float() - scores.min().clamp_max(0)
    k = max(1, round(top_fraction * len(scores)))
    top = torch.topk(shifted, k).values.sum()
    total = shifted.sum()
    # All-zero scores (total 0) are no concentration at all: the top points hold their share k / n.
    return torch.where(total > 0, top / total.clamp_min(1e-12), torch.full_like(total, k / len(scores)))


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (any shape) without a host sync; 0 for an empty mask
    (percent_train = 1: nothing left unselected)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)
