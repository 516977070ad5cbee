"""The download fallback of datasets whose files a user may not have on disk yet."""

from __future__ import annotations

from collections.abc import Callable


def try_download(enabled: bool, download: Callable[[], object]) -> str:
    """Run ``download`` when ``enabled``; return why the files may still be missing, for the caller's
    missing-files error.

    Every failure (no network, a checksum mismatch) is caught on purpose: the caller's error then names
    the failure *and* every other way to get the files, which helps more than a bare network traceback.
    """
    if not enabled:
        return "download is disabled"
    try:
        download()
    except Exception as error:  # reported in the caller's error message, with the other options
        return f"the download failed ({error})"
    return "the download did not provide them"
