"""Text corpora as token files: tokenizers, the cache, splits by file, noise per token, windows and
their loaders, the per-token IL store and the causal LM, all offline on tiny corpora in tmp_path."""

from __future__ import annotations

import json
import mmap
import resource
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from rholoss.data import TokenCorpusDataModule
from rholoss.data.tokens import datamodule as corpus_module
from rholoss.data.tokens.corpus import split_files
from rholoss.data.tokens.files import metadata_path, open_ready_made, open_token_file, write_token_file
from rholoss.data.tokens.noise import merge_spans, token_noise_spans
from rholoss.data.tokens.tokenizers import load_bpe
from rholoss.data.tokens.windows import TokenWindows
from rholoss.irreducible import StoreError, TokenLossStore, TokenLossWriter
from rholoss.models import CausalLM
from rholoss.models.factory import build_model_for
from rholoss.tasks import LanguageModeling
from tests.conftest import config_in

SEQ_LEN = 16
pytestmark = pytest.mark.usefixtures("one_thread")


def memory_mapped(array: np.ndarray) -> bool:
    """Whether ``array`` reads a file through a memory map (np.memmap, or a view of an mmap)."""
    return isinstance(array, np.memmap) or isinstance(getattr(array.base, "obj", None), mmap.mmap)


def write_corpus(root: Path, files: int = 24, seed: int = 0) -> dict[str, bytes]:
    """``files`` small Python modules of unequal length (and one other file that is not .py), each
    with its own names so every file's bytes are distinct."""
    rng = np.random.default_rng(seed)
    written = {}
    for i in range(files):
        lines = [
            f"def function_{i}_{j}(value):\n    return value * {int(rng.integers(100))} + {j}\n"
            for j in range(int(rng.integers(5, 40)))
        ]
        path = root / f"package_{i % 3}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines))
        written[str(path.relative_to(root))] = path.read_bytes()
    (root / "notes.txt").write_text("not python\n" * 50)
    return written


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_corpus(root)
    return root


def make(corpus: Path, tmp_path: Path, **settings) -> TokenCorpusDataModule:
    options = {
        "source_dir": str(corpus),
        "cache_dir": str(tmp_path / "cache"),
        "seq_len": SEQ_LEN,
        "batch_size": 8,
        "eval_batch_size": 16,
        "holdout_fraction": 0.3,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        **settings,
    }
    dm = TokenCorpusDataModule(**options)
    dm.setup()
    return dm


# --- tokenizing, the cache and splits by file -------------------------------------------------------------


def test_byte_tokens_are_each_split_files_bytes_then_end_of_document(corpus: Path, tmp_path: Path) -> None:
    dm = make(corpus, tmp_path)
    for name, file in dm.files.items():
        assert file.tokens.dtype == np.uint16 and memory_mapped(file.tokens)
        assert file.documents and file.vocab_size == 257 and file.eos_token_id == 256
        for document, start, end in file.documents:
            expected = [*list((corpus / document).read_bytes()), 256]
            assert file.tokens[start:end].tolist() == expected, (name, document)
        assert file.documents[-1][2] == len(file)
    assert dm.num_classes == 257 and dm.input_shape == (SEQ_LEN,) and dm.target_kind == "tokens"
    assert dm.model_kwargs() == {"vocab_size": 257, "eos_token_id": 256}


def test_splits_are_by_file_disjoint_seeded_and_cover_the_corpus(corpus: Path, tmp_path: Path) -> None:
    dm = make(corpus, tmp_path)
    names = {split: {doc for doc, _, _ in file.documents} for split, file in dm.files.items()}
    every = [doc for docs in names.values() for doc in docs]
    assert len(every) == len(set(every)) == 24  # no file in two splits, notes.txt left out
    again = make(corpus, tmp_path / "again")
    assert {s: {d for d, _, _ in f.documents} for s, f in again.files.items()} == names
    other = make(corpus, tmp_path / "other", split_seed=1)
    assert {s: {d for d, _, _ in f.documents} for s, f in other.files.items()} != names


def test_split_files_follows_byte_fractions_and_max_bytes() -> None:
    sizes = [100] * 100
    splits = split_files(sizes, {"holdout": 0.4, "val": 0.1, "test": 0.1}, seed=0)
    assert {name: len(files) for name, files in splits.items()} == {"pool": 40, "holdout": 40, "val": 10, "test": 10}
    subset = split_files(sizes, {"holdout": 0.4, "val": 0.1, "test": 0.1}, seed=0, max_bytes=2000)
    assert sum(len(files) for files in subset.values()) == 20
    with pytest.raises(ValueError, match="cannot be split into pool, holdout, val, test by file"):
        split_files([10, 10, 10], {"holdout": 0.4, "val": 0.1, "test": 0.1}, seed=0)
    with pytest.raises(ValueError, match="leave nothing for the pool"):
        split_files(sizes, {"holdout": 0.8, "val": 0.1, "test": 0.1}, seed=0)


def test_a_second_setup_reuses_the_cache_and_a_changed_file_or_setting_does_not(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make(corpus, tmp_path)
    written = []
    original = corpus_module.TokenCorpusDataModule._write_split
    monkeypatch.setattr(
        corpus_module.TokenCorpusDataModule, "_write_split", lambda self, *a: written.append(a[0]) or original(self, *a)
    )
    again = make(corpus, tmp_path)
    assert written == [] and again.fingerprint == first.fingerprint
    # seq_len only changes the windows: same token files, another fingerprint.
    longer = make(corpus, tmp_path, seq_len=SEQ_LEN * 2)
    assert written == [] and longer.fingerprint["digest"] != first.fingerprint["digest"]
    # A changed file tokenizes again.
    path = corpus / next(doc for doc, _, _ in first.files["pool"].documents)
    path.write_text(path.read_text() + "# one more line\n")
    changed = make(corpus, tmp_path)
    assert len(written) == 4 and changed.fingerprint != first.fingerprint
    make(corpus, tmp_path, split_seed=3)
    assert len(written) == 8


def test_bpe_is_trained_on_the_holdout_saved_and_reused(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dm = make(corpus, tmp_path, tokenizer="bpe", vocab_size=300)
    pool = dm.files["pool"]
    assert pool.tokenizer.startswith("bpe:300:") and dm.num_classes == 300 and pool.eos_token_id == 0
    saved = pool.path.parent / "bpe.json"
    tokenizer = load_bpe(saved)
    document, start, end = pool.documents[0]
    assert pool.tokens[end - 1] == 0  # end of document
    assert tokenizer.backend.decode(pool.tokens[start : end - 1].tolist()) == (corpus / document).read_text()
    assert len(pool) < sum(len((corpus / d).read_bytes()) + 1 for d, _, _ in pool.documents)  # merges happened
    monkeypatch.setattr(corpus_module, "train_bpe", lambda *a: pytest.fail("the saved BPE should be reused"))
    assert make(corpus, tmp_path, tokenizer="bpe", vocab_size=300, seq_len=8).files["pool"].tokenizer == pool.tokenizer


def test_a_hugging_face_tokenizer_folder_is_used_with_its_end_of_sequence_id(corpus: Path, tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    bpe = make(corpus, tmp_path, tokenizer="bpe", vocab_size=300).files["pool"].path.parent / "bpe.json"
    folder = tmp_path / "hf-tokenizer"
    PreTrainedTokenizerFast(tokenizer_file=str(bpe), eos_token="<|endoftext|>").save_pretrained(folder)
    dm = make(corpus, tmp_path / "hf", tokenizer=str(folder))
    pool = dm.files["pool"]
    assert pool.tokenizer.startswith(f"hf:{folder}:300:") and pool.eos_token_id == 0
    document, start, end = pool.documents[0]
    assert load_bpe(bpe).encode((corpus / document).read_bytes()).tolist() == pool.tokens[start : end - 1].tolist()
    # The folder saved again (same name, new files) tokenizes again.
    saved = folder / "tokenizer.json"
    saved.write_text(saved.read_text() + "\n")
    assert make(corpus, tmp_path / "hf", tokenizer=str(folder)).files["pool"].path.parent != pool.path.parent


# --- token files --------------------------------------------------------------------------------------------


def test_token_files_pick_their_dtype_and_refuse_a_truncated_array(tmp_path: Path) -> None:
    small = write_token_file(tmp_path / "a.bin", [("a", np.array([1, 2, 3]))], vocab_size=65536, tokenizer="t")
    large = write_token_file(tmp_path / "b.bin", [("b", np.array([70000, 1]))], vocab_size=70001, tokenizer="t")
    assert small.tokens.dtype == np.uint16 and large.tokens.dtype == np.uint32
    assert large.tokens.tolist() == [70000, 1]
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 10\)"):
        write_token_file(tmp_path / "c.bin", [("c", np.array([10]))], vocab_size=10, tokenizer="t")
    with open(tmp_path / "a.bin", "ab") as file:
        file.write(b"\0")
    with pytest.raises(ValueError, match=r"should hold 3 uint16 token ids \(6 bytes\), found 7 bytes.*Delete"):
        open_token_file(tmp_path / "a.bin")


def test_ready_made_bin_and_npy_files_are_opened_as_they_are(tmp_path: Path) -> None:
    ids = np.arange(1000, dtype=np.uint16) % 500
    ids.tofile(tmp_path / "train.bin")  # nanoGPT's layout: raw uint16
    np.save(tmp_path / "train.npy", ids.astype(np.int32))
    raw = open_ready_made(tmp_path / "train.bin")
    assert memory_mapped(raw.tokens) and raw.tokens.tolist() == ids.tolist() and raw.vocab_size == 500
    npy = open_ready_made(tmp_path / "train.npy", vocab_size=512)
    assert npy.tokens.dtype == np.int32 and npy.tokens.tolist() == ids.tolist() and npy.vocab_size == 512
    with pytest.raises(ValueError, match="outside the vocabulary of 100"):
        open_ready_made(tmp_path / "train.npy", vocab_size=100)
    (tmp_path / "odd.bin").write_bytes(b"\0" * 7)
    with pytest.raises(ValueError, match="not a whole number of uint16 token ids"):
        open_ready_made(tmp_path / "odd.bin")


def test_the_datamodule_serves_ready_made_token_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = {}
    for name, count in {"pool": 2000, "holdout": 1000, "val": 300, "test": 300}.items():
        paths[name] = str(tmp_path / f"{name}.bin")
        rng.integers(0, 1000, count).astype(np.uint16).tofile(paths[name])
    dm = TokenCorpusDataModule(
        token_files=paths,
        vocab_size=1000,
        seq_len=SEQ_LEN,
        batch_size=8,
        cache_dir=str(tmp_path / "c"),
        token_noise=0.1,
    )
    dm.setup()
    assert dm.num_classes == 1000 and len(dm.split("pool")) == (2000 - 1) // SEQ_LEN
    assert dm.fingerprint["token_files"] == ["holdout.bin", "pool.bin", "test.bin", "val.bin"]
    assert np.fromfile(paths["val"], np.uint16).tolist() == dm.files["val"].tokens.tolist()
    with pytest.raises(ValueError, match="needs one token file for each of pool, holdout, val, test"):
        TokenCorpusDataModule(token_files={"train": paths["pool"], "val": paths["val"]})


# --- windows and loaders ------------------------------------------------------------------------------------


def test_window_i_predicts_the_tokens_after_its_inputs() -> None:
    tokens = np.arange(50, dtype=np.uint16)
    windows = TokenWindows(tokens, seq_len=8)
    assert len(windows) == 6  # (50 - 1) // 8: targets 1..48
    index, x, y = windows[2]
    assert index == 2 and x.tolist() == list(range(16, 24)) and y.tolist() == list(range(17, 25))
    batch_index, bx, by = windows.__getitems__([5, 0])
    assert (
        batch_index.tolist() == [5, 0] and bx[0].tolist() == list(range(40, 48)) and by[1].tolist() == list(range(1, 9))
    )
    tx, ty = windows.tensors(torch.device("cpu"))
    assert torch.equal(tx[2], x) and torch.equal(ty[2], y) and tx.dtype == torch.long


@pytest.mark.parametrize("on_device", [False, True])
def test_loaders_yield_index_inputs_targets_and_resume_mid_epoch(corpus: Path, tmp_path: Path, on_device: bool) -> None:
    torch.manual_seed(0)
    dm = make(corpus, tmp_path, on_device=on_device)
    pool = dm.files["pool"].tokens
    per_epoch = len(dm.split("pool")) // dm.batch_size
    batches = list(_epochs(dm, 2))
    assert len(batches) == 2 * per_epoch
    for index, x, y in batches:
        assert x.shape == y.shape == (dm.batch_size, SEQ_LEN) and x.dtype == y.dtype == torch.long
        for row, i in enumerate(index.tolist()):
            assert x[row].tolist() == pool[i * SEQ_LEN : (i + 1) * SEQ_LEN].tolist()
            assert y[row].tolist() == pool[i * SEQ_LEN + 1 : (i + 1) * SEQ_LEN + 1].tolist()
    # A resumed run after k batches continues with exactly the batches the whole run would have served.
    torch.manual_seed(0)
    resumed = make(corpus, tmp_path, on_device=on_device)
    done = per_epoch + 2
    resumed._batches_trained = lambda: done  # what Lightning's restored step count says
    rest = list(_epochs(resumed, 1))
    assert [b[0].tolist() for b in rest] == [b[0].tolist() for b in batches[done:]]
    in_order = next(iter(dm.pool_dataloader()))[0]
    assert in_order.tolist() == list(range(len(in_order)))


def _epochs(dm: TokenCorpusDataModule, epochs: int):
    loader = dm.train_dataloader()  # one loader iterated per epoch, as Lightning does
    for _ in range(epochs):
        yield from loader


def test_the_two_loader_paths_serve_the_same_batches(corpus: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    memmapped = [tuple(t.tolist() for t in b) for b in make(corpus, tmp_path).train_dataloader()]
    torch.manual_seed(0)
    on_device = [tuple(t.tolist() for t in b) for b in make(corpus, tmp_path, on_device=True).train_dataloader()]
    assert memmapped == on_device


def test_restricted_training_keeps_window_indices(corpus: Path, tmp_path: Path) -> None:
    dm = make(corpus, tmp_path)
    positions = torch.arange(5, 5 + 3 * dm.batch_size)
    dm.restrict_training(positions)
    served = torch.cat([index for index, _, _ in dm.train_dataloader()])
    assert sorted(served.tolist()) == positions.tolist()


# --- noise ----------------------------------------------------------------------------------------------------


def test_token_noise_spans_cover_exactly_the_share_asked() -> None:
    starts, ends = token_noise_spans(100_000, 0.2, 16, np.random.default_rng(0))
    assert int((ends - starts).sum()) == 20_000 and len(starts) == 1250
    assert (starts[1:] >= ends[:-1]).all() and starts[0] >= 0 and ends[-1] <= 100_000
    merged = merge_spans((np.array([0, 5, 20]), np.array([3, 10, 25])), (np.array([2, 9]), np.array([6, 12])))
    assert [m.tolist() for m in merged] == [[0, 20], [12, 25]]


def test_token_noise_replaces_exactly_its_share_of_the_pool_and_val_test_stay_clean(
    corpus: Path, tmp_path: Path
) -> None:
    clean = make(corpus, tmp_path)
    noisy = make(corpus, tmp_path, token_noise=0.25, noise_span=4)
    mask = np.asarray(noisy.noise_mask).astype(bool)
    assert mask.sum() == round(0.25 * len(mask)) == noisy.files["pool"].extra["noise_tokens"]
    before, after = np.asarray(clean.files["pool"].tokens), np.asarray(noisy.files["pool"].tokens)
    assert (before[~mask] == after[~mask]).all()
    assert (before[mask] != after[mask]).mean() > 0.9  # random ids, rarely the original one
    assert (after[mask] != 256).all()  # never the end-of-document id
    for name in ("holdout", "val", "test"):
        assert np.array_equal(clean.files[name].tokens, noisy.files[name].tokens)
    # Per window: the share of its targets that are noise, and the same mask aligned with y.
    index = torch.arange(len(noisy.split("pool")))
    targets = noisy.target_noise(index)
    assert targets.shape == (len(index), SEQ_LEN)
    assert torch.equal(targets, torch.from_numpy(mask[1 : len(index) * SEQ_LEN + 1].reshape(-1, SEQ_LEN)))
    assert torch.allclose(noisy.noise_share, targets.float().mean(1))
    assert torch.equal(noisy.corrupted, noisy.noise_share > 0.5) and noisy.has_noise and not clean.has_noise
    assert noisy.fingerprint["digest"] != clean.fingerprint["digest"]
    again = make(corpus, tmp_path / "again", token_noise=0.25, noise_span=4)
    assert np.array_equal(again.files["pool"].tokens, noisy.files["pool"].tokens)  # seeded


def test_sequence_noise_replaces_whole_windows(corpus: Path, tmp_path: Path) -> None:
    clean = make(corpus, tmp_path)
    noisy = make(corpus, tmp_path, sequence_noise=0.3)
    windows = len(noisy.split("pool"))
    assert int(noisy.corrupted.sum()) == round(0.3 * windows)
    assert set(noisy.noise_share.unique().tolist()) == {0.0, 1.0}
    hit = torch.nonzero(noisy.corrupted).flatten()
    _, _, y_noisy = noisy.split("pool").__getitems__(hit.tolist())
    _, x_clean, y_clean = clean.split("pool").__getitems__(hit.tolist())
    _, x_noisy, _ = noisy.split("pool").__getitems__(hit.tolist())
    assert (y_noisy != y_clean).float().mean() > 0.9
    # Only the predicted tokens are replaced: a window's first input is the previous window's last target.
    alone = torch.tensor([i == 0 or not bool(noisy.corrupted[i - 1]) for i in hit.tolist()])
    assert alone.any() and torch.equal(x_noisy[alone, 0], x_clean[alone, 0])
    assert noisy.describe()["corrupted_windows"] == len(hit)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"token_noise": 1.0}, r"token_noise must be in \[0, 1\)"),
        ({"sequence_noise": -0.1}, r"sequence_noise must be in \[0, 1\)"),
        ({"noise_span": 0}, "noise_span must be at least 1"),
        ({"tokenizer": "bpe"}, "set vocab_size"),
        ({"seq_len": 0}, "seq_len must be at least 1"),
    ],
)
def test_bad_corpus_settings_are_refused_before_any_tokenizing(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenCorpusDataModule(**settings)


def test_a_corpus_too_small_for_its_settings_says_what_to_change(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No files ending in \['.rs'\]"):
        make(corpus, tmp_path, extensions=[".rs"])
    with pytest.raises(ValueError, match="fewer than one batch of 4096"):
        make(corpus, tmp_path, batch_size=4096)
    with pytest.raises(ValueError, match="less than one window"):
        make(corpus, tmp_path, seq_len=100_000, batch_size=1)


# --- the per-token IL store -------------------------------------------------------------------------------


def fingerprint(**changes) -> dict:
    return {
        "dataset": "corpus",
        "pool_size": 12,
        "pool_tokens": 100,
        "seq_len": 8,
        "tokenizer": "byte",
        "digest": "d",
        **changes,
    }


def test_token_store_round_trip_gather_and_sequence_losses(tmp_path: Path) -> None:
    losses = torch.rand(12, 8) * 5
    with TokenLossWriter(tmp_path / "il.tokens", 100, 8, fingerprint(), {"il_model": "x"}) as writer:
        for rows in torch.arange(12).split(5):
            writer.write(rows.flip(0), losses[rows.flip(0)])
    store = TokenLossStore.open(tmp_path / "il.tokens")
    store.check_matches(fingerprint())
    assert memory_mapped(store.losses) and store.losses.dtype == np.float16 and store.metadata == {"il_model": "x"}
    half = losses.half().float()
    assert torch.equal(store.gather(torch.tensor([3, 0, 11])), half[[3, 0, 11]])
    assert torch.allclose(store.sequence_losses(), half.mean(1))
    assert np.isnan(store.losses[0]) and np.isnan(store.losses[97:]).all()  # never predicted
    # Entry t is the loss on predicting token t: window i's targets are tokens 8i+1 .. 8i+8.
    assert torch.equal(torch.from_numpy(store.losses[1:97].astype(np.float32)).reshape(12, 8), half)
    assert torch.equal(store.to_tensor().float(), half)


def test_token_store_refuses_other_data_naming_what_differs(tmp_path: Path) -> None:
    with TokenLossWriter(tmp_path / "il.tokens", 100, 8, fingerprint()) as writer:
        writer.write(torch.arange(12), torch.ones(12, 8))
    store = TokenLossStore.open(tmp_path / "il.tokens")
    with pytest.raises(StoreError, match=r"(?s)made for other data.*seq_len: store has 8, this run has 16"):
        store.check_matches(fingerprint(seq_len=16))
    with pytest.raises(StoreError, match=r"tokenizer: store has 'byte', this run has 'bpe:300:abc'"):
        store.check_matches(fingerprint(tokenizer="bpe:300:abc"))
    with pytest.raises(StoreError, match="same settings but different pool contents"):
        store.check_matches(fingerprint(digest="other"))


def test_an_incomplete_or_damaged_token_store_is_never_opened(tmp_path: Path) -> None:
    path = tmp_path / "il.tokens"
    with (
        pytest.raises(StoreError, match="2 of 12 pool windows have no IL"),
        TokenLossWriter(path, 100, 8, fingerprint()) as writer,
    ):
        writer.write(torch.arange(10), torch.ones(10, 8))
    assert not path.exists() and not list(tmp_path.glob(".il.tokens.*"))  # the temporary file is gone too
    with TokenLossWriter(path, 100, 8, fingerprint()) as writer:
        writer.write(torch.arange(12), torch.full((12, 8), float("nan")))
    with pytest.raises(StoreError, match="96 of 96 per-token irreducible losses are NaN"):
        TokenLossStore.open(path)
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 2)
    with pytest.raises(StoreError, match="it is truncated"):
        TokenLossStore.open(path)
    (tmp_path / "other.tokens").write_bytes(b"a training checkpoint")
    with pytest.raises(StoreError, match="is not a per-token IL store"):
        TokenLossStore.open(tmp_path / "other.tokens")


def test_a_10m_token_store_opens_memory_mapped_without_reading_it_into_ram(tmp_path: Path) -> None:
    tokens, seq_len = 10_000_001, 256
    windows = (tokens - 1) // seq_len
    with TokenLossWriter(
        tmp_path / "big.tokens", tokens, seq_len, fingerprint(pool_size=windows, pool_tokens=tokens, seq_len=seq_len)
    ) as writer:
        for start in range(0, windows, 8192):
            rows = torch.arange(start, min(start + 8192, windows))
            writer.write(rows, rows[:, None].float().expand(-1, seq_len) % 1000)
    assert (tmp_path / "big.tokens").stat().st_size >= 2 * tokens
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = TokenLossStore.open(tmp_path / "big.tokens", verify=False)
    assert memory_mapped(store.losses) and len(store.losses) == tokens
    index = torch.tensor([0, 999, windows - 1])
    assert store.gather(index)[:, 0].tolist() == [0.0, 999.0, float((windows - 1) % 1000)]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 10_000  # KiB: far below the file's 20 MB


# --- configs and the model ------------------------------------------------------------------------------------


def test_the_causal_lm_from_config_gives_next_token_logits() -> None:
    torch.manual_seed(0)
    model = CausalLM(
        (SEQ_LEN,), 257, vocab_size=257, eos_token_id=256, config={"n_embd": 32, "n_layer": 1, "n_head": 2}
    )
    model.eval()  # no dropout: the same input gives the same logits
    logits = model(torch.randint(0, 257, (3, SEQ_LEN)))
    assert logits.shape == (3, SEQ_LEN, 257)
    # Causal: a change at position 5 leaves the logits before it alone.
    x = torch.randint(0, 257, (1, SEQ_LEN))
    changed = x.clone()
    changed[0, 5] = (changed[0, 5] + 1) % 257
    assert torch.allclose(model(x)[0, :5], model(changed)[0, :5]) and not torch.allclose(
        model(x)[0, 5:], model(changed)[0, 5:]
    )
    with pytest.raises(ValueError, match="windows of token ids"):
        CausalLM((3, 32, 32), 10)
    with pytest.raises(OSError, match="use model=tiny_gpt2"):
        CausalLM((SEQ_LEN,), 257, pretrained="no-such-org/no-such-model")


def test_the_code_corpus_and_tiny_gpt2_configs_build_the_datamodule_and_model(corpus: Path, tmp_path: Path) -> None:
    # ~experiment: the default experiment's settings are an image dataset's.
    cfg = config_in(
        tmp_path,
        "train",
        "~experiment",
        "datamodule=code_corpus",
        "model=tiny_gpt2",
        f"datamodule.source_dir={corpus}",
        "datamodule.tokenizer=byte",
        "datamodule.max_bytes=null",
        f"datamodule.seq_len={SEQ_LEN}",
        "datamodule.batch_size=8",
        "datamodule.exclude=[]",
    )
    dm = instantiate(cfg.datamodule)
    dm.setup()
    assert str(dm.cache_dir).startswith(str(tmp_path)) and dm.on_device
    model = build_model_for(cfg.model, dm, LanguageModeling().fit_to(dm))
    assert isinstance(model, CausalLM) and model.model.config.n_positions == SEQ_LEN
    _index, x, _y = next(iter(dm.train_dataloader()))
    assert model(x).shape == (8, SEQ_LEN, 257)
    default = instantiate(config_in(tmp_path, "train", "~experiment", "datamodule=code_corpus").datamodule)
    assert default.source_dir == Path(sysconfig.get_paths()["stdlib"]) and default.tokenizer == "bpe"


def test_token_file_metadata_records_documents_and_tokenizer(corpus: Path, tmp_path: Path) -> None:
    dm = make(corpus, tmp_path)
    metadata = json.loads(metadata_path(dm.files["val"].path).read_text())
    assert (
        metadata["tokenizer"] == "byte" and metadata["dtype"] == "uint16" and metadata["count"] == len(dm.files["val"])
    )
    assert metadata["documents"]["names"] == [doc for doc, _, _ in dm.files["val"].documents]


def test_an_il_model_s_token_losses_written_by_window_line_up_with_the_pool_tokens(
    corpus: Path, tmp_path: Path
) -> None:
    """The IL stage's path: per-token losses of each pool batch -> the store by window index; entry t
    of the store is then the loss on predicting pool token t, and a gather gives back each batch's."""
    dm = make(corpus, tmp_path, token_noise=0.1)
    torch.manual_seed(0)
    model = CausalLM(
        dm.input_shape, dm.num_classes, config={"n_embd": 16, "n_layer": 1, "n_head": 2}, **dm.model_kwargs()
    ).eval()
    pool, path = dm.files["pool"].tokens, tmp_path / "il.tokens"
    batches = []
    with torch.no_grad(), TokenLossWriter(path, len(pool), SEQ_LEN, dm.fingerprint) as writer:
        for index, x, y in dm.pool_dataloader():
            losses = torch.nn.functional.cross_entropy(model(x).transpose(1, 2), y, reduction="none")
            writer.write(index, losses)
            batches.append((index, x, losses))
    store = TokenLossStore.open(path)
    store.check_matches(dm.fingerprint)
    for index, _, losses in batches:
        assert torch.allclose(store.gather(index), losses.half().float())
    # Token t's loss, recomputed from the tokens before it in its window.
    t = 5 * SEQ_LEN + 3  # window 5, its third target
    context = torch.from_numpy(pool[5 * SEQ_LEN : t].astype(np.int64))[None]
    with torch.no_grad():
        expected = -torch.log_softmax(model(context)[0, -1], dim=-1)[int(pool[t])]
    assert abs(float(store.losses[t]) - float(expected)) < 1e-2 * max(1.0, float(expected))


# --- the pool with the holdout (a uniform baseline on every token) ------------------------------------------


def test_pool_includes_holdout_serves_the_noisy_pool_then_the_clean_holdout(corpus: Path, tmp_path: Path) -> None:
    noisy = make(corpus, tmp_path, token_noise=0.25, noise_span=4)
    joined = make(corpus, tmp_path, token_noise=0.25, noise_span=4, pool_includes_holdout=True)
    pool, holdout = np.asarray(noisy.files["pool"].tokens), np.asarray(noisy.files["holdout"].tokens)
    tokens = np.asarray(joined.files["pool"].tokens)
    assert np.array_equal(tokens, np.concatenate([pool, holdout]))
    # The pool's windows keep their indices; the holdout's follow.
    windows = len(noisy.split("pool"))
    assert len(joined.split("pool")) == (len(tokens) - 1) // SEQ_LEN > windows
    _, x, y = joined.split("pool")[windows - 1]
    _, x_pool, y_pool = noisy.split("pool")[windows - 1]
    assert torch.equal(x, x_pool) and torch.equal(y, y_pool)
    # Noise: the pool's mask, then the holdout's tokens clean; per window and per target alike.
    mask = np.asarray(joined.noise_mask).astype(bool)
    assert np.array_equal(
        mask, np.concatenate([np.asarray(noisy.noise_mask).astype(bool), np.zeros(len(holdout), bool)])
    )
    assert torch.equal(joined.noise_share[:windows], noisy.noise_share)
    assert not joined.noise_share[windows + 1 :].any() and not joined.corrupted[windows + 1 :].any()
    # The documents follow the tokens; an IL store made for the pool alone is not one for this pool.
    assert [name for name, _, _ in joined.files["pool"].documents] == [
        name for name, _, _ in noisy.files["pool"].documents + noisy.files["holdout"].documents
    ]
    assert joined.files["pool"].documents[-1][2] == len(tokens)
    assert joined.fingerprint["pool_includes_holdout"] and joined.fingerprint["digest"] != noisy.fingerprint["digest"]
    # Written once: a second setup opens the cached file.
    again = make(corpus, tmp_path, token_noise=0.25, noise_span=4, pool_includes_holdout=True)
    assert again.files["pool"].path == joined.files["pool"].path


def test_a_clean_pool_with_its_holdout_has_no_noise_and_the_holdout_cannot_train_on_it(
    corpus: Path, tmp_path: Path
) -> None:
    joined = make(corpus, tmp_path, pool_includes_holdout=True)
    clean = make(corpus, tmp_path)
    assert joined.noise_mask is None and not joined.has_noise
    assert len(joined.files["pool"]) == len(clean.files["pool"]) + len(clean.files["holdout"])
    with pytest.raises(ValueError, match="halves of the pool"):
        make(corpus, tmp_path, pool_includes_holdout=True, train_split="holdout")
