"""A task's files as verified temp files, all at once: downloaded (an MP3 waits for its
track's image and is tagged as it streams in, the image embedded), read back from storage (a
stored image a new MP3 embeds), or written from the record (MIDI notes, lyrics).

A file that cannot be had is its error, not an exception: the archivist records it or tries the
task again later. Temp files are the caller's to consume or remove, but on cancellation, when
the ones already complete are removed here with those in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from archiver.config import TaggingConfig
from archiver.errors import FetchError, StorageError, TaggingError
from archiver.fetch.download import Fetched, Fetcher, Reshape
from archiver.kinds import media
from archiver.kinds.records import MusicRecord, Record
from archiver.storage import Storage
from archiver.tags.names import fill, track_values
from archiver.tags.tagging import TagWriter
from archiver.tasks.lifecycle import FileSpec

log = structlog.get_logger()

FileResult = Fetched | FetchError | TaggingError  # of one file's fetch


class TaskFetcher:
    def __init__(
        self,
        *,
        fetcher: Fetcher,
        storage: Storage,
        tagging: TaggingConfig,
        download_slots: asyncio.Semaphore,
    ) -> None:
        self._fetcher = fetcher
        self._storage = storage
        self._tagging = tagging
        self._slots = download_slots

    async def fetch_all(
        self, record: Record, specs: Sequence[FileSpec], kept: Mapping[FileSpec, Any]
    ) -> list[FileResult]:
        """Every file of the task, fetched concurrently, but for a track's MP3, which waits
        for the track's image: its tag embeds it (a `kept` image is read from storage, not
        fetched again). Cancelled (SIGINT, the daemon's grace period over), the files already
        complete are removed with the ones in flight."""
        images = {
            s.track: asyncio.ensure_future(
                self._read_back(s, kept[s]) if s in kept else self._fetch(s)
            )
            for s in specs
            if s.role == "image"
        }

        async def audio(spec: FileSpec) -> FileResult:
            cover = await images[spec.track] if spec.track in images else None
            try:
                tagger = self._tag_writer(record, spec, cover)
            except TaggingError as exc:
                return exc
            return await self._fetch(spec, tagger)

        def start(spec: FileSpec) -> asyncio.Future[FileResult]:
            if spec.inline is not None:
                return asyncio.ensure_future(self.write_inline(spec))
            if spec.role == "image":
                return images[spec.track]
            return asyncio.ensure_future(audio(spec) if spec.role == "audio" else self._fetch(spec))

        fetches = [start(s) for s in specs]
        try:
            return await asyncio.gather(*fetches)
        except BaseException:
            for fetch in fetches:
                fetch.cancel()
            for result in await asyncio.gather(*fetches, return_exceptions=True):
                if isinstance(result, Fetched):
                    result.path.unlink(missing_ok=True)
            raise

    def _tag_writer(
        self, record: Record, spec: FileSpec, cover: FileResult | None
    ) -> TagWriter | None:
        """How an MP3's tag is written as it downloads (None: stored as it comes)."""
        if not self._tagging.enabled:
            return None
        assert isinstance(record, MusicRecord) and spec.track is not None
        embed = cover if self._tagging.embed_cover and isinstance(cover, Fetched) else None
        names = track_values(record, spec.track)
        return TagWriter(
            track=record.tracks[spec.track],
            task_id=record.task_id,
            name=_audio_key(spec),
            cover=embed.path if embed else None,
            cover_mime=media.CONTENT_TYPES[embed.media] if embed else None,
            id3_version=self._tagging.id3_version,
            album=fill(self._tagging.album, names),
            artist=fill(self._tagging.artist, names),
        )

    async def _read_back(self, spec: FileSpec, entry: Mapping[str, Any]) -> FileResult:
        """A stored image as a temp file, to embed in its track's new MP3: the archive holds
        the very bytes, and the URL may have expired since. Fetched after all when storage
        cannot give it back as an image."""
        try:
            data = await self._storage.read(entry["path"])
        except (StorageError, ValueError) as exc:
            log.warning("stored_image_unreadable", key=entry["path"], error=str(exc))
            data = None
        found = media.sniff(data[: media.SNIFF_BYTES]) if data else None
        if data is None or found not in spec.accept:
            return await self._fetch(spec)
        path = await asyncio.to_thread(_temp_file, self._storage.temp_dir, data)
        sha256 = hashlib.sha256(data).hexdigest()
        return Fetched(
            path, entry.get("source_url", ""), len(data), sha256, found, len(data), sha256
        )

    async def write_inline(self, spec: FileSpec) -> Fetched:
        """A file the record carries (MIDI notes, lyrics) as a temp file, like a download."""
        assert spec.inline is not None
        data = spec.inline
        (media_type,) = spec.accept
        path = await asyncio.to_thread(_temp_file, self._storage.temp_dir, data)
        sha256 = hashlib.sha256(data).hexdigest()
        return Fetched(path, "", len(data), sha256, media_type, len(data), sha256)

    async def _fetch(self, spec: FileSpec, reshape: Reshape | None = None) -> FileResult:
        async with self._slots:
            try:
                return await self._fetcher.fetch(spec.urls, spec.accept, reshape)
            except FetchError as exc:
                log.warning("file_unobtainable", key=spec.key_stem, error=str(exc))
                return exc
            except TaggingError as exc:
                log.warning("tagging_failed", key=spec.key_stem, error=str(exc))
                return exc


def _temp_file(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="inline-", suffix=".part", dir=folder)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return Path(name)


def _audio_key(spec: FileSpec) -> str:
    return f"{spec.key_stem}.{media.EXTENSIONS[media.MP3]}"
