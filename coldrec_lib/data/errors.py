"""Errors that say which file, which field and what was expected."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data: names the source (file or table), the field and what was expected."""

    def __init__(self, source, field, expected: str):
        self.source, self.field = str(source), field
        where = f"{self.source}" + (f", field {field!r}" if field is not None else "")
        super().__init__(f"{where}: expected {expected}")


class ChecksumError(DataError):
    """A downloaded or cached file does not match its published (or recorded) checksum."""

    def __init__(self, path, algorithm: str, expected: str, actual: str,
                 remedy: str = "delete it and download again"):
        super().__init__(path, None, f"{algorithm} {expected} but the file has {actual} "
                         f"(truncated or corrupted download?); {remedy}")


class DownloadError(DataError):
    """A download failed (no network, a moved URL): names the URL and how to supply the files."""

    def __init__(self, url: str, reason: str, instead: str):
        self.source, self.field, self.url = url, None, url
        ValueError.__init__(self, f"could not download {url} ({reason}). {instead}")
