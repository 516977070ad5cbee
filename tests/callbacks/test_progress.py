"""The progress bar redraws by the clock, not every N steps, and reads logged values only when new ones exist."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from pytorch_lightning.callbacks import TQDMProgressBar
from tqdm import tqdm

import rholoss.callbacks.progress as progress
from rholoss.callbacks import StepProgressBar


@pytest.mark.parametrize(("log_every_n_steps", "reads"), [(50, [1, 101, 150, 201]), (1000, [1, 150])])
def test_the_bar_redraws_by_the_clock_and_reads_values_once_per_logging_interval(
    monkeypatch: pytest.MonkeyPatch, log_every_n_steps: int, reads: list[int]
) -> None:
    bar = StepProgressBar(refresh_seconds=1.0)
    bar.train_progress_bar = tqdm(total=10_000, file=io.StringIO())
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=log_every_n_steps, state=SimpleNamespace(fn="fit"))
    redrawn: list[int] = []
    read: list[int] = []
    monkeypatch.setattr(bar.train_progress_bar, "refresh", lambda *args, **kwargs: redrawn.append(trainer.global_step))
    monkeypatch.setattr(
        TQDMProgressBar, "get_metrics", lambda self, *args: read.append(trainer.global_step) or {"train/loss": 1.0}
    )
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: clock.now))
    for step in range(1, 301):  # 10 ms a step: 3 seconds
        clock.now += 0.01
        trainer.global_step = step
        bar.on_train_batch_end(trainer, None, None, None, step - 1)
        if step == 150:  # a validation brings new values
            bar._validations += 1
            bar.get_metrics(trainer, None)
    assert redrawn == [1, 101, 201]  # by the clock: once a second
    assert read == reads
    assert bar.get_metrics(trainer, None) == {"step": 300, "train/loss": 1.0}


def test_a_non_positive_refresh_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="refresh_seconds must be positive"):
        StepProgressBar(refresh_seconds=0)
