"""Opening a Hugging Face ``datasets`` dataset from whatever a user has, without a network.

``path`` may be a ``save_to_disk`` folder (a ``Dataset`` or a ``DatasetDict``), a folder of data
files, one parquet / JSON lines / CSV / Arrow file or a glob of them, a mapping of split names to
such files, or a hub name (``owner/name``) that ``load_dataset`` cached before: read from the cache
only, never downloaded. Whatever it is, the result is a ``DatasetDict`` of named splits (a single
dataset is its ``train`` split).
"""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rholoss.data.hf_text import NLP_EXTRA_HINT

# File builders of ``load_dataset`` by suffix.
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}
PATH_FORMS = (
    "a save_to_disk folder, a folder of data files, a .parquet / .jsonl / .json / .csv / .arrow file or a glob "
    "of them, {split: files}, or the name of a hub dataset in the Hugging Face cache"
)


def require_datasets() -> Any:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(f"datamodule=hf needs Hugging Face datasets: {NLP_EXTRA_HINT}.") from error
    return datasets


def open_dataset(path: str | Mapping[str, Any], config_name: str | None = None, cache_dir: str | None = None) -> Any:
    """The ``DatasetDict`` at ``path`` (see the module's docstring); ``config_name`` picks a cached hub
    dataset's configuration, ``cache_dir`` is where file datasets are converted to Arrow (and where
    hub datasets are looked for; None: Hugging Face's default cache)."""
    datasets = require_datasets()
    if isinstance(path, Mapping):
        files = {str(split): _expand(pattern) for split, pattern in path.items()}
        builder = _builder([file for group in files.values() for file in group])
        return datasets.load_dataset(builder, data_files=files, cache_dir=cache_dir)
    local = Path(path)
    if local.is_dir():
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            loaded = datasets.load_from_disk(str(local))
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
        return datasets.load_dataset(str(local), cache_dir=cache_dir)
    if local.is_file() or glob.has_magic(str(path)) or local.suffix in FILE_BUILDERS:
        matched = _expand(str(path))
        return datasets.load_dataset(_builder(matched), data_files={"train": matched}, cache_dir=cache_dir)
    return _from_hub_cache(str(path), config_name, cache_dir)


def _expand(pattern: str | Sequence[str]) -> list[str]:
    """The files a path, glob or list of them names; none is an error that says what was looked for."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    files = sorted({file for item in patterns for file in glob.glob(str(item), recursive=True)})
    if not files:
        raise FileNotFoundError(f"datamodule.path={pattern}: no such file or folder. It must be {PATH_FORMS}.")
    return files


def _builder(files: Sequence[str]) -> str:
    """The one ``load_dataset`` builder that reads all of ``files``."""
    suffixes = {Path(file).suffix.lower() for file in files}
    unknown = sorted(suffix or "(none)" for suffix in suffixes if suffix not in FILE_BUILDERS)
    if unknown:
        raise ValueError(
            f"datamodule.path names files ending in {', '.join(unknown)}; Hugging Face datasets reads "
            f"{', '.join(sorted(FILE_BUILDERS))} files here."
        )
    builders = {FILE_BUILDERS[suffix] for suffix in suffixes}
    if len(builders) > 1:
        raise ValueError(
            f"datamodule.path mixes file formats ({', '.join(sorted(suffixes))}): give files of one format."
        )
    return builders.pop()


def _from_hub_cache(name: str, config_name: str | None, cache_dir: str | None) -> Any:
    """A hub dataset as ``load_dataset`` cached it (``<cache>/<owner>___<name>/<config>/<version>/<hash>``),
    read through datasets' own cache builder, which never goes online."""
    datasets = require_datasets()
    from datasets.packaged_modules.cache.cache import Cache

    where = cache_dir or datasets.config.HF_DATASETS_CACHE
    try:
        builder = Cache(
            cache_dir=cache_dir,
            dataset_name=name.split("/")[-1],
            repo_id=name,
            config_name=config_name,
            version="auto",
            hash="auto",
        )
    except ValueError as error:
        raise FileNotFoundError(
            f"datamodule.path={name} is not a file or folder, and no hub dataset of that name is in the Hugging "
            f"Face cache {where} ({error}). datamodule.path must be {PATH_FORMS}. To use a hub dataset, load it "
            f"once with network access (datasets.load_dataset({name!r})) or set datamodule.cache_dir / "
            "HF_DATASETS_CACHE to a cache that has it; rholoss never downloads it."
        ) from None
    return builder.as_dataset()
