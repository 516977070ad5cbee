"""SFT of a small causal LM with token-level RHO-LOSS (RHO-1) and a reference model, offline.

The instruction data are the interpreter's own standard library: every documented function becomes a
prompt (signature and docstring) and a completion (its body). A reference model is first fine-tuned on
a held-out share of the pairs (the "high-quality" data of RHO-1); the target model is then trained
with TRL's SFTTrainer on the rest, on the completion tokens whose loss most exceeds the reference
model's. Nothing is downloaded: the tokenizer is byte-level and the models are built from configs.

    python examples/sft_token_rho.py --out runs/sft [--steps 200] [--reference-steps 200] [--max-pairs 3000]
        [--token-fraction 0.6] [--reference FOLDER] [--baseline]

Writes the reference model (unless ``--reference`` names one), the trained model and results.json
(tokens trained on, their share, eval loss on the completions of a quarter of the pairs (at most 200); with ``--baseline``
also plain SFT's) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import sysconfig
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import AutoModelForCausalLM, LlamaConfig
from trl import SFTConfig, SFTTrainer

from rholoss.atomic import atomic_write_json
from rholoss.integrations.instructions import byte_tokenizer, docstring_pairs
from rholoss.integrations.irreducible import ReferenceModelIL
from rholoss.integrations.transformers import SelectionSettings, selection_trainer

RhoSFTTrainer = selection_trainer(SFTTrainer)


def small_llama(vocab_size: int, seed: int) -> Any:
    """A 2-layer, 128-wide Llama, randomly initialised."""
    import torch

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
    )
    return AutoModelForCausalLM.from_config(config)


def sft_config(out: Path, steps: int, batch_size: int, **extra: Any) -> SFTConfig:
    return SFTConfig(
        output_dir=str(out),
        report_to=[],
        use_cpu=True,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=2e-3,
        lr_scheduler_type="constant",
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        max_length=384,
        seed=0,
        **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--reference-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-pairs", type=int, default=3000)
    parser.add_argument("--token-fraction", type=float, default=0.6)
    parser.add_argument("--reference", type=Path, help="a save_pretrained folder to use as the reference model")
    parser.add_argument("--baseline", action="store_true", help="also train plain SFT (every completion token)")
    parser.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    args = parser.parse_args()

    pairs = docstring_pairs(args.source.glob("*.py"), max_pairs=args.max_pairs)
    random.Random(0).shuffle(pairs)
    quarter = len(pairs) // 4
    held_out, evaluation, train = pairs[:quarter], pairs[quarter : quarter + min(quarter, 200)], pairs[2 * quarter :]
    if min(len(held_out), len(train)) == 0:
        raise SystemExit(
            f"{args.source} gave {len(pairs)} documented functions: too few to split; use a larger --source."
        )
    print(f"{len(pairs)} prompt/completion pairs: {len(held_out)} for the reference model, {len(train)} to train on")
    tokenizer = byte_tokenizer(args.out / "tokenizer")

    reference = args.reference
    if reference is None:
        reference = args.out / "reference"
        reference_trainer = SFTTrainer(
            model=small_llama(len(tokenizer), seed=1),
            args=sft_config(args.out / "reference_run", args.reference_steps, args.batch_size),
            train_dataset=Dataset.from_list(held_out),
            processing_class=tokenizer,
        )
        reference_trainer.train()
        reference_trainer.save_model(str(reference))
    data = {"train_dataset": Dataset.from_list(train), "eval_dataset": Dataset.from_list(evaluation)}
    trainer = RhoSFTTrainer(
        model=small_llama(len(tokenizer), seed=0),
        args=sft_config(args.out / "target", args.steps, args.batch_size),
        processing_class=tokenizer,
        selection=SelectionSettings(method="token_reducible_loss", token_fraction=args.token_fraction),
        irreducible=ReferenceModelIL(reference),
        **data,
    )
    trainer.train()
    results: dict[str, Any] = {**trainer.selection_results(), **trainer.evaluate()}
    trainer.save_model(str(args.out / "model"))
    if args.baseline:
        baseline = SFTTrainer(
            model=small_llama(len(tokenizer), seed=0),
            args=sft_config(args.out / "baseline", args.steps, args.batch_size),
            processing_class=tokenizer,
            **data,
        )
        baseline.train()
        results["baseline_eval_loss"] = baseline.evaluate()["eval_loss"]
    atomic_write_json(results, args.out / "results.json")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
