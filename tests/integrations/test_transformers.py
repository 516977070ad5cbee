"""RHO-LOSS and RHO-1 inside a Hugging Face Trainer and TRL's SFTTrainer, on tiny GPT-2 / Llama models
built from configs (CPU, no download): the token mask is rholoss's own selection, ``-100`` tokens are
never chosen nor counted, gradient accumulation chooses what one larger batch chooses, the chunked
scoring pass gives the full-logits losses in less memory, and SFT selects completion tokens only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, TrainingArguments
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from rholoss.integrations.causal_losses import scoring_token_losses, shifted_cross_entropy
from rholoss.integrations.collate import SelectionCollator
from rholoss.integrations.corpus import corpus_trainer
from rholoss.integrations.instructions import byte_tokenizer, docstring_pairs
from rholoss.integrations.irreducible import ColumnIL, ReferenceModelIL
from rholoss.integrations.transformers import RhoLossTrainer, SelectionSettings, selection_trainer
from rholoss.pipelines import train, train_irreducible
from rholoss.selection import SelectionInput, TokenSelectionInput, get_selection
from rholoss.tasks import LanguageModeling
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB, LENGTH = 48, 12


def tiny_lm(architecture: str = "gpt2", vocab: int = VOCAB, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    if architecture == "gpt2":
        config: Any = GPT2Config(
            vocab_size=vocab,
            n_positions=128,
            n_embd=64,
            n_layer=2,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    else:
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
    return AutoModelForCausalLM.from_config(config)


def arguments(tmp_path: Path, **overrides: Any) -> TrainingArguments:
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path),
        "report_to": [],
        "use_cpu": True,
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "save_strategy": "no",
        "remove_unused_columns": False,
        "seed": 0,
        "disable_tqdm": True,
        **overrides,
    }
    return TrainingArguments(**settings)


def recording(base: type[RhoLossTrainer]) -> type[RhoLossTrainer]:
    """``base`` that keeps each micro-batch's ``(mask, counted)`` of predictions as it trains."""

    class Recording(base):  # type: ignore[valid-type,misc]
        def _count(self, mask, valid, extras) -> None:
            self.__dict__.setdefault("recorded", []).append((mask.cpu(), valid.cpu()))
            super()._count(mask, valid, extras)

    return Recording


def random_rows(count: int, length: int = LENGTH, seed: int = 0) -> dict[str, list]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (count, length), generator=generator)
    return {"input_ids": ids.tolist(), "labels": ids.tolist(), "id": list(range(count))}


def test_the_token_mask_is_rholoss_own_token_level_selection(tmp_path: Path) -> None:
    model, reference = tiny_lm(), tiny_lm(seed=1)
    trainer = recording(RhoLossTrainer)(
        model=model,
        args=arguments(tmp_path),
        selection=SelectionSettings(token_fraction=0.3),
        irreducible=ReferenceModelIL(reference, rows_per_pass=3, tokens_per_chunk=7),
    )
    ids = torch.tensor(random_rows(6)["input_ids"])
    model.train()
    trainer.compute_loss(model, {"input_ids": ids, "labels": ids})
    ((mask, _),) = trainer.recorded  # type: ignore[attr-defined]

    task = LanguageModeling(VOCAB)  # rholoss's own per-token loss, on next-token targets
    with torch.no_grad():
        loss = task.token_loss(model(ids).logits[:, :-1], ids[:, 1:])
        il = task.token_loss(reference(ids).logits[:, :-1], ids[:, 1:])
    expected = get_selection("token_reducible_loss").select_tokens(TokenSelectionInput(loss, il), token_fraction=0.3)
    assert torch.equal(mask, expected)
    assert int(mask.sum()) == round(0.3 * ids[:, 1:].numel())


def test_minus_100_tokens_are_never_selected_nor_counted(tmp_path: Path) -> None:
    """Prompt tokens (-100) carry an IL so low that they would top the ranking if they were scored."""
    rows, columns = [], []
    generator = torch.Generator().manual_seed(0)
    for length, prompt in ((12, 5), (9, 3), (7, 6), (12, 2)):
        ids = torch.randint(1, VOCAB, (length,), generator=generator).tolist()
        labels = [-100] * prompt + ids[prompt:]
        il = [-1e4] * prompt + [0.0] * (length - prompt)
        rows.append({"input_ids": ids, "labels": labels})
        columns.append(il)
    dataset = Dataset.from_list([{**row, "irreducible_loss": il} for row, il in zip(rows, columns, strict=True)])
    model = tiny_lm()
    trainer = recording(RhoLossTrainer)(
        model=model,
        args=arguments(tmp_path, max_steps=1),
        train_dataset=dataset,
        data_collator=SelectionCollator(DataCollatorForLanguageModeling(pad_token_id=0)),
        selection=SelectionSettings(token_fraction=0.5),
        irreducible=ColumnIL(),
    )
    trainer.train()
    ((mask, valid),) = trainer.recorded  # type: ignore[attr-defined]
    counted = sum(len(row["input_ids"]) - max(1, row["labels"].count(-100)) for row in rows)
    assert int(valid.sum()) == counted  # padding and prompt targets are not counted
    assert not (mask & ~valid).any()
    assert int(mask.sum()) == round(0.5 * counted)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["tokens_seen"] == counted and results["tokens_trained"] == round(0.5 * counted)
    assert results["token_share"] == pytest.approx(round(0.5 * counted) / counted)


def token_run(out: Path, batch: int, accumulation: int) -> tuple[Any, Any]:
    """Two steps of token-level selection (a quarter of the tokens by loss) on 16 random rows: the
    recording trainer and its model."""
    model = tiny_lm()
    trainer = recording(RhoLossTrainer)(
        model=model,
        args=arguments(out, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation),
        train_dataset=Dataset.from_dict(random_rows(16)),
        data_collator=SelectionCollator(DataCollatorForLanguageModeling(pad_token_id=0)),
        selection=SelectionSettings(method="token_loss", token_fraction=0.25),
    )
    trainer.train()
    return trainer, model


def test_gradient_accumulation_selects_what_one_twice_larger_batch_selects(tmp_path: Path) -> None:
    accumulated, accumulated_model = token_run(tmp_path / "accumulated", batch=4, accumulation=2)
    single, single_model = token_run(tmp_path / "single", batch=8, accumulation=1)
    assert len(accumulated.recorded) == 4 and len(single.recorded) == 2
    for step, (mask, _) in enumerate(single.recorded):
        halves = torch.cat([accumulated.recorded[2 * step][0], accumulated.recorded[2 * step + 1][0]])
        assert torch.equal(halves, mask)
        # across the step, not per micro-batch: the halves need not hold a quarter each
        assert int(mask.sum()) == round(0.25 * mask.numel())
    for a, b in zip(accumulated_model.parameters(), single_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # Adam, summation order


@pytest.mark.slow
def test_two_processes_select_what_one_process_with_both_batches_selects(tmp_path: Path) -> None:
    """DDP on CPU (gloo), launched as a user launches it: each rank's micro-batch gets its part of the
    choice one process makes over both, and the trained weights agree."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["-m", "tests.integrations.ddp_worker", str(tmp_path / "ddp")]
    subprocess.run(command, check=True, capture_output=True, env=_env(), cwd=ROOT, timeout=600)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    single, single_model = token_run(tmp_path / "single", batch=8, accumulation=1)
    for step, (mask, _) in enumerate(single.recorded):
        assert torch.equal(torch.cat([rank["recorded"][step][0] for rank in ranks]), mask)
    assert ranks[0]["results"] == ranks[1]["results"] == single.selection_results()
    for a, b in zip(ranks[0]["params"], single_model.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_the_chunked_scoring_pass_gives_the_full_logits_losses(architecture: str) -> None:
    model = tiny_lm(architecture).eval()
    ids = torch.tensor(random_rows(5)["input_ids"])
    labels = ids.clone()
    labels[:2, :4] = -100
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = shifted_cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
    chunked = scoring_token_losses(
        model, {"input_ids": ids, "attention_mask": mask, "labels": labels}, rows_per_pass=2, tokens_per_chunk=5
    )
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)
    assert (chunked[labels[:, 1:] == -100] == 0).all()


def test_sequence_level_trains_on_rholoss_own_choice_of_sequences(tmp_path: Path) -> None:
    model, reference = tiny_lm(), tiny_lm(seed=1)
    trainer = recording(RhoLossTrainer)(
        model=model,
        args=arguments(tmp_path),
        selection=SelectionSettings(method="reducible_loss", percent_train=0.25, rows_per_pass=3, tokens_per_chunk=9),
        irreducible=ReferenceModelIL(reference),
    )
    ids = torch.tensor(random_rows(8)["input_ids"])
    model.train()
    trainer.compute_loss(model, {"input_ids": ids, "labels": ids})
    ((mask, _),) = trainer.recorded  # type: ignore[attr-defined]
    with torch.no_grad():
        loss = shifted_cross_entropy(model(ids).logits, ids).mean(1)
        il = shifted_cross_entropy(reference(ids).logits, ids).mean(1)
    expected = get_selection("reducible_loss").select(SelectionInput(ids, point_loss=loss, irreducible_loss=il), 2)
    chosen = mask.all(1).nonzero().flatten()
    assert set(chosen.tolist()) == set(expected.positions.tolist())
    assert int(mask.sum()) == 2 * (LENGTH - 1)


def test_a_method_that_needs_il_without_a_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs per-token irreducible losses: pass irreducible="):
        RhoLossTrainer(model=tiny_lm(), args=arguments(tmp_path))
    with pytest.raises(Exception, match=r"Methods for causal_lm"):
        RhoLossTrainer(model=tiny_lm(), args=arguments(tmp_path), selection=SelectionSettings(method="entropy"))
    with pytest.raises(ValueError, match=r"token_fraction must be in \(0, 1\], got 1.5"):
        SelectionSettings(method="token_loss", token_fraction=1.5).selection_method()
    with pytest.raises(ValueError, match=r"percent_train must be in \(0, 1\], got 0"):
        SelectionSettings(method="loss", percent_train=0).selection_method()


_MEMORY_PROBE = textwrap.dedent(
    """
    import sys, torch
    from pathlib import Path
    from transformers import AutoModelForCausalLM, GPT2Config
    from rholoss.integrations.causal_losses import scoring_token_losses, shifted_cross_entropy

    def resident(key):  # MiB, from the kernel's accounting of this process
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
        return int(line.split()[1]) / 1024

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=8192, n_positions=128, n_embd=64, n_layer=2, n_head=2)).eval()
    ids = torch.randint(0, 8192, (32, 128))
    inputs = {"input_ids": ids, "labels": ids}
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from what is resident now
    before = resident("VmRSS")
    with torch.no_grad():
        if sys.argv[1] == "full":
            losses = shifted_cross_entropy(model(input_ids=ids).logits, ids)
        else:
            losses = scoring_token_losses(model, inputs, rows_per_pass=4, tokens_per_chunk=1024)
    print(resident("VmHWM") - before, float(losses.mean()))
    """
)


@pytest.mark.slow
def test_the_chunked_scoring_pass_peaks_below_the_full_logits_pass() -> None:
    """Peak resident memory added by scoring 32 x 128 tokens over an 8192-token vocabulary (fp32 logits
    of the whole batch: 128 MiB), each way in a fresh process."""
    peaks, means = {}, {}
    for way in ("full", "chunked"):
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, way], capture_output=True, text=True, check=True, env=_env()
        ).stdout.split()
        peaks[way], means[way] = float(out[0]), float(out[1])
    print(f"peak MiB added: {peaks}")
    assert means["chunked"] == pytest.approx(means["full"], rel=1e-5)
    assert peaks["full"] > 128  # the whole batch's fp32 logits were there
    assert peaks["chunked"] < peaks["full"] / 3


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def write_documented_modules(root: Path, count: int = 12) -> list[Path]:
    paths = []
    for i in range(count):
        functions = "".join(
            f'def scale_{i}_{j}(value):\n    """Multiply value by {j + 2} and add {i}."""\n    return value * {j + 2} + {i}\n\n'
            for j in range(4)
        )
        path = root / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(functions)
        paths.append(path)
    return paths


def test_sft_trainer_on_prompt_completion_pairs_selects_completion_tokens_only(tmp_path: Path) -> None:
    pairs = docstring_pairs(write_documented_modules(tmp_path / "corpus"))
    assert len(pairs) == 48 and pairs[0]["completion"].strip().startswith("return value *")
    tokenizer = byte_tokenizer(tmp_path / "tokenizer")
    reference = tiny_lm(vocab=len(tokenizer), seed=1)
    reference.save_pretrained(tmp_path / "reference")
    model = tiny_lm(vocab=len(tokenizer))
    config = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        max_length=128,
        disable_tqdm=True,
    )
    trainer = recording(selection_trainer(SFTTrainer))(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        selection=SelectionSettings(token_fraction=0.4),
        irreducible=ReferenceModelIL(tmp_path / "reference"),
    )
    batches = []
    original = trainer.compute_loss

    def keep_batch(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        batches.append(inputs["labels"].clone())
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = keep_batch  # type: ignore[method-assign]
    trainer.train()
    completions = {pair["completion"] + tokenizer.eos_token for pair in pairs}
    assert len(trainer.recorded) == 3  # type: ignore[attr-defined]
    for labels, (mask, valid) in zip(batches, trainer.recorded, strict=True):  # type: ignore[attr-defined]
        assert (labels == -100).any()  # the prompts are there, masked
        assert not (mask & ~valid).any() and mask.any()
        for row, counted in zip(labels[:, 1:], valid, strict=True):
            assert tokenizer.decode(row[counted].tolist()) in completions  # every counted token is a completion's
    history = [entry for entry in trainer.state.log_history if "selection/token_share" in entry]
    assert history and history[-1]["selection/token_share"] == pytest.approx(0.4, abs=0.01)


@pytest.mark.slow
def test_a_noisy_corpus_through_the_trainer_reproduces_the_lightning_path(tmp_path: Path) -> None:
    """The Lightning tests' noisy code corpus (20% noise tokens) and per-token IL store, trained on by
    both paths: token-level RHO through the Trainer trains on under a quarter of uniform's noise tokens,
    and on the noise share the Lightning module trains on, within noise."""
    from tests.pipelines.test_language_models import lm_config

    il = train_irreducible(lm_config(tmp_path, "train_irreducible", "trainer.max_steps=60", output="il"))
    runs = {}
    for method in ("uniform", "token_reducible_loss"):
        lightning = train(lm_config(tmp_path, "train", f"selection={method}", output=f"lightning_{method}"))
        trainer = corpus_trainer(
            lm_config(tmp_path, "train", f"selection={method}", output=f"hf_{method}"), il["il_store"], use_cpu=True
        )
        runs[method] = (lightning, trainer.train().metrics)
        logged = [entry for entry in trainer.state.log_history if "selection/noisy_selected_fraction" in entry]
        assert logged and logged[-1]["selection/noisy_selected_fraction"] == runs[method][1]["noisy_selected_fraction"]
    print({method: (pl["noisy_selected_fraction"], hf["noisy_selected_fraction"]) for method, (pl, hf) in runs.items()})
    (pl_uniform, hf_uniform), (pl_rho, hf_rho) = runs["uniform"], runs["token_reducible_loss"]
    assert hf_uniform["tokens_trained"] == pl_uniform["tokens_trained"]
    assert hf_rho["tokens_trained"] == pl_rho["tokens_trained"]
    assert hf_uniform["noisy_selected_fraction"] == pytest.approx(0.2, abs=0.05)
    assert hf_rho["noise_tokens_trained"] < 0.25 * hf_uniform["noise_tokens_trained"]
    assert hf_rho["noisy_selected_fraction"] == pytest.approx(pl_rho["noisy_selected_fraction"], abs=0.05)


@pytest.mark.slow
def test_the_sft_example_runs_offline(tmp_path: Path) -> None:
    write_documented_modules(tmp_path / "corpus", count=16)
    script = ROOT / "examples" / "sft_token_rho.py"
    command = [sys.executable, str(script), "--out", str(tmp_path / "out"), "--source", str(tmp_path / "corpus")]
    command += ["--steps", "2", "--reference-steps", "2", "--batch-size", "4", "--token-fraction", "0.5"]
    subprocess.run(command, check=True, capture_output=True, env=_env(), timeout=600)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["selection"] == "token_reducible_loss" and results["token_share"] == pytest.approx(0.5, abs=0.01)
    assert results["tokens_trained"] > 0 and results["eval_loss"] > 0
    assert (tmp_path / "out" / "reference" / "config.json").is_file()
