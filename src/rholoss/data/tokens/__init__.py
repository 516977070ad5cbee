"""Text corpora for language models as memory-mapped token files: tokenizers, the token cache, noise
recorded per token, and the datamodule that serves windows of next-token predictions."""

from rholoss.data.tokens.datamodule import TokenCorpusDataModule
from rholoss.data.tokens.files import TokenFile, open_ready_made, open_token_file, write_token_file
from rholoss.data.tokens.windows import TokenWindows

__all__ = [
    "TokenCorpusDataModule",
    "TokenFile",
    "TokenWindows",
    "open_ready_made",
    "open_token_file",
    "write_token_file",
]
