"""A rholoss token corpus as a Hugging Face dataset, so a ``transformers.Trainer`` trains on the very
windows (and with the very per-token IL store) the Lightning pipeline uses.

Row ``i`` is pool window ``i``'s ``seq_len`` inputs and its last target (``seq_len + 1`` tokens): the
model's internal label shift then predicts exactly the window's targets, which are the rows of the
per-token IL store (:class:`~rholoss.integrations.irreducible.StoreIL` reads them by ``id``).
``token_noise`` marks, per token, which targets the corpus's noise replaced (position 0 is no target).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rholoss.data.tokens.datamodule import TokenCorpusDataModule
from rholoss.integrations.collate import SelectionCollator
from rholoss.integrations.irreducible import StoreIL
from rholoss.integrations.transformers import RhoLossTrainer, SelectionSettings
from rholoss.models.causal_lm import _position_key
from rholoss.models.factory import build_model_for
from rholoss.tasks import LanguageModeling


def pool_dataset(datamodule: TokenCorpusDataModule, split: str = "pool") -> Any:
    """``datasets.Dataset`` of ``input_ids``, ``labels``, ``id`` and ``token_noise`` for every window of
    ``split`` of a set-up corpus (noise is recorded for the pool only)."""
    from datasets import Dataset

    inputs, targets = datamodule.split_tensors(split, torch.device("cpu"))
    index = torch.arange(len(inputs))
    rows = torch.cat([inputs, targets[:, -1:]], dim=1)
    noise = datamodule.target_noise(index) if split == "pool" else torch.zeros_like(targets, dtype=torch.bool)
    noise = torch.cat([torch.zeros(len(index), 1, dtype=torch.bool), noise], dim=1)
    return Dataset.from_dict(
        {"input_ids": rows.tolist(), "labels": rows.tolist(), "id": index.tolist(), "token_noise": noise.tolist()}
    )


def corpus_trainer(cfg: DictConfig, store: str | Path | None = None, **arguments: Any) -> RhoLossTrainer:
    """A :class:`RhoLossTrainer` for a language-model target config of the pipeline (``code_lm_main``):
    its corpus's pool windows, model (its position table one longer), AdamW settings (constant rate), steps, seed and selection, n_b =
    ``percent_train * large_batch_size`` windows a step, writing to ``cfg.paths.output_dir``. Token-level
    methods read IL from the per-token ``store``; sequence-level methods score the n_B windows of each
    step (``uniform``: n_b of them, as the Lightning module does). ``arguments``: ``TrainingArguments``
    of your own (``use_cpu=True``, ``report_to=["wandb"]``), over these."""
    datamodule = instantiate(cfg.datamodule)
    datamodule.setup()
    # A row is seq_len + 1 tokens (see pool_dataset): one position more than the Lightning windows.
    positions = {"config": {_position_key(cfg.model.get("architecture", "gpt2")): datamodule.seq_len + 1}}
    model_cfg = cast(DictConfig, OmegaConf.merge(OmegaConf.to_container(cfg.model), positions))
    model = build_model_for(model_cfg, datamodule, LanguageModeling().fit_to(datamodule)).model
    method = cfg.selection.name
    token_level = method.startswith("token_")
    n_b = round(cfg.selection.percent_train * cfg.large_batch_size)
    if token_level:
        selection = SelectionSettings(method=method, token_fraction=cfg.selection.token_fraction)
    else:
        selection = SelectionSettings(method=method, percent_train=cfg.selection.percent_train)
    from transformers import TrainingArguments

    settings_of_run = TrainingArguments(
        output_dir=str(cfg.paths.output_dir),
        report_to=[],
        per_device_train_batch_size=n_b if token_level else cfg.large_batch_size,
        max_steps=cfg.trainer.max_steps,
        learning_rate=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        lr_scheduler_type="constant",
        logging_steps=max(1, cfg.trainer.max_steps // 10),
        save_strategy="no",
        remove_unused_columns=False,
        seed=cfg.seed,
        disable_tqdm=True,
        **arguments,
    )
    return RhoLossTrainer(
        model=model,
        args=settings_of_run,
        train_dataset=pool_dataset(datamodule),
        data_collator=SelectionCollator(_stack),
        selection=selection,
        irreducible=StoreIL(store) if store is not None and selection.selection_method().needs_irreducible else None,
    )


def _stack(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Windows are all ``seq_len + 1`` tokens: stacked as they are, no padding."""
    return {key: torch.tensor([example[key] for example in examples]) for key in examples[0]}
