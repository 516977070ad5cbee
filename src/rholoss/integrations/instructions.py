"""An instruction dataset made offline from Python source: each documented function becomes a
prompt (its signature and docstring) and a completion (its body), the prompt/completion format TRL's
``SFTTrainer`` trains on completion tokens only. With a byte-level tokenizer (one id per byte) the
prompt's tokens followed by the completion's are exactly the tokens of the two texts joined, so the
prompt/completion boundary is exact."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rholoss.data.tokens.tokenizers import END_OF_DOCUMENT, train_bpe

BYTE_VOCAB = 257  # the 256 byte symbols and the end-of-document token


def docstring_pairs(
    files: Iterable[Path], *, max_pairs: int | None = None, max_chars: int = 400
) -> list[dict[str, str]]:
    """``{"prompt", "completion"}`` pairs from the documented functions in ``files``: the prompt is
    ``def name(args):`` and the docstring, the completion the rest of the body; functions whose
    source is longer than ``max_chars`` (or that do not parse) are left out."""
    pairs: list[dict[str, str]] = []
    for path in sorted(files):
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = source.splitlines(keepends=True)
        for node in ast.walk(tree):
            pair = _pair(node, lines, max_chars)
            if pair is not None:
                pairs.append(pair)
                if max_pairs is not None and len(pairs) >= max_pairs:
                    return pairs
    return pairs


def _pair(node: ast.AST, lines: list[str], max_chars: int) -> dict[str, str] | None:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or ast.get_docstring(node) is None:
        return None
    if len(node.body) < 2 or node.end_lineno is None or node.body[0].end_lineno is None:
        return None  # a docstring and nothing else has no completion
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    prompt = "".join(lines[start - 1 : node.body[0].end_lineno])
    completion = "".join(lines[node.body[0].end_lineno : node.end_lineno])
    if not completion.strip() or len(prompt) + len(completion) > max_chars:
        return None
    return {"prompt": prompt, "completion": completion}


def byte_tokenizer(folder: Path) -> Any:
    """A Hugging Face fast tokenizer with one id per byte (and ``<|endoftext|>``, also the padding
    token), saved in ``folder`` with ``save_pretrained``: needs no download and no training data."""
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    train_bpe([], BYTE_VOCAB, folder / "bytes.json")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "bytes.json"), eos_token=END_OF_DOCUMENT, pad_token=END_OF_DOCUMENT
    )
    tokenizer.save_pretrained(str(folder))
    return tokenizer
