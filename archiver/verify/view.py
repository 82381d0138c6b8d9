"""How `verify` sees an archive: its folders and files as storage lists them, and a file's
content as storage reports it. Read-only, blocking, safe to call from several threads at once;
one implementation for a local folder (local_view.py), one for a bucket (s3_view.py);
backends.py opens the one a config names.

A view lists what is there, unlike `Storage`, which is for writing: it opens no temp folder
(opening LocalStorage would clean the leftovers verify is to report) and takes no lock. Its
one write is `quarantine`, for `verify --repair`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from archiver.verify.findings import Listed, Observed


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder at the archive root ("" for the files at the root itself). `files` by key, or
    None when the view lists it only when asked (`list_folder`), in the checking thread."""

    name: str
    files: dict[str, Listed] | None


class ArchiveView(Protocol):
    location: str  # as people name it: the folder, or s3://bucket/prefix
    workers: int  # how many files are worth checking at once
    read_workers: int  # how many manifests are worth reading at once (1: one thread is best)

    def folders(self, only: Collection[str] | None) -> Iterator[Folder]:
        """The root's folders (all, or those named `only`) and its own files, as listed."""
        ...

    def list_folder(self, name: str) -> dict[str, Listed]: ...

    def stat(self, key: str) -> Listed | None: ...

    def read(self, key: str) -> bytes | None:
        """A small file's bytes (a manifest); None when there is none."""
        ...

    def observe(self, entry: dict[str, Any], listed: Listed, *, read_data: bool) -> Observed | None:
        """What storage says of the content of the file an entry names (None: it is gone).
        Local: its bytes, re-hashed. S3: the checksums it keeps (no download) unless
        `read_data`."""
        ...

    def quarantine(self, key: str, stamp: str) -> str:
        """`verify --repair`'s one write: move `key` aside, under QUARANTINE_NAME/`stamp`/,
        never deleting its bytes; returns the key they are kept under."""
        ...

    def close(self) -> None: ...
