"""One finished task → files in storage and its manifest, written last.

    the manifest an earlier try left, if any → fetch the files it does not list as stored
    (verified temp files, `taskfetch`: a track's image first, then its MP3, tagged as it
    streams in, the image embedded: read back from storage when stored already) → store them
    → manifest: the earlier entries of stored files + this try's

A task is archived again when an earlier try ended partial (some file was unobtainable) or its
state was lost. The files the earlier manifest lists as stored, and storage still has, are kept
as they are: never fetched again (their URL may have expired since), never re-tagged (a new
tag, say now with the cover, would make other bytes, which storage refuses under a taken name)
and never replaced by an error entry. A reused MP3 keeps the tags it was stored with.

A transient failure (a file host or the storage having a bad moment) leaves the manifest as it
was and asks the engine to try the task again later; once `final`, it is recorded in the
manifest instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog

from archiver.api.client import ALIGNED_LYRICS_PATH
from archiver.config import TaggingConfig
from archiver.errors import (
    ApiError,
    ApiUnusable,
    FetchError,
    StorageConflict,
    TaggingError,
    WriteRefused,
)
from archiver.fetch.download import Fetched
from archiver.fetch.taskfiles import FileResult, TaskFetcher
from archiver.kinds import media
from archiver.kinds.records import MusicRecord, OutputRecord, Record
from archiver.state.protocol import LeaseLost
from archiver.storage import Storage
from archiver.tags.aligned import LyricsSource, add_aligned_lyrics, stored_keys
from archiver.tags.tagging import check_mp3
from archiver.tasks.lifecycle import FileSpec, track_names
from archiver.tasks.manifest import (
    TrackFiles,
    audio_entry,
    build_manifest,
    decode_manifest,
    encode_manifest,
    error_entry,
    file_entry,
    is_error_entry,
    manifest_key,
    role_entry,
    stored_entries,
)

log = structlog.get_logger()
K = TypeVar("K")


class RetryLater(Exception):
    """Some file failed for a reason that may pass; nothing was recorded as final."""


class NotRestored(Exception):
    """A file `archive(expect=…)` was to restore could not be had as it was: nothing was
    stored and the manifest is as it was."""


# A stored file's manifest entry by (path without its extension, role): see stored_entries.
Expected = Mapping[tuple[str, str], str]


@dataclass(frozen=True)
class Archived:
    outcome: str  # the manifest's: "archived" | "partial" | "failed"
    files: int  # files stored by this try (not those an earlier try stored)
    bytes: int  # their stored size
    problems: tuple[str, ...]  # one line per file not archived (see _problems)


async def read_manifest(storage: Storage, task_id: str) -> dict[str, Any] | None:
    """The task's stored manifest; None when there is none, or when it is unreadable or names
    another task (logged). Raises StorageError when the storage cannot be read."""
    return _manifest_of(task_id, await storage.read(manifest_key(task_id)))


def _manifest_of(task_id: str, data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        doc = decode_manifest(data)
    except ValueError as exc:
        log.warning("manifest_unreadable", error=str(exc))
        return None
    if doc["task_id"] != task_id:
        log.warning("manifest_unreadable", error=f"it is the manifest of {doc['task_id']!r}")
        return None
    return doc


class Archivist:
    def __init__(
        self,
        *,
        files: TaskFetcher,
        storage: Storage,
        tagging: TaggingConfig,
        version: str,
        clock: Callable[[], float],
        aligned_lyrics: LyricsSource | None = None,
        fence: Callable[[str], None] | None = None,
    ) -> None:
        # Several daemons: raises when this daemon's lease on the task lapsed, so that a
        # daemon that was frozen never writes a manifest over the one another finished.
        self._fence = fence
        self._files = files  # fetches a task's files as temp files
        self._aligned_lyrics = aligned_lyrics  # [tagging] aligned_lyrics: where to ask
        self._storage = storage
        self._tagging = tagging
        self._version = version
        self._clock = clock

    async def archive(
        self,
        record: Record,
        specs: Sequence[FileSpec],
        *,
        task_failed: bool,
        final: bool,
        expect: Expected | None = None,
    ) -> Archived:
        """Fetch and store the files of `specs` storage lacks, then write the manifest.
        `expect` (repair): the source SHA-256 each of those files had when first archived;
        unless every one is fetched with the same bytes, NotRestored and nothing changes."""
        # Several daemons: the manifest is written only over what was read here (S3 refuses
        # it otherwise), so a daemon frozen past its lease never writes over another's.
        data, unchanged = await self._storage.read_tagged(manifest_key(record.task_id))
        before = _manifest_of(record.task_id, data)
        kept = await self._still_stored(_stored_before(before, specs))
        new = await self._fetch_and_store(record, specs, kept, final=final, expect=expect)
        entries = {spec: kept[spec] if spec in kept else new[spec] for spec in specs}
        tracks, images, files = self._arrange(record, specs, entries)
        if self._aligned_lyrics is not None and isinstance(record, MusicRecord):
            tracks = await self._add_aligned_lyrics(record, tracks, before, final=final)
        doc = build_manifest(
            record,
            task_failed=task_failed,
            tracks=tracks,
            images=images,
            files=files,
            archived_at=datetime.fromtimestamp(self._clock(), UTC),
            version=self._version,
        )
        if self._fence is not None:
            self._fence(record.task_id)
        try:
            await self._storage.put_bytes(
                manifest_key(record.task_id),
                encode_manifest(doc),
                content_type="application/json",
                unchanged=unchanged if self._fence is not None else None,
            )
        except WriteRefused as exc:  # our lease lapsed and another daemon wrote it: theirs stands
            log.warning("manifest_write_refused", error=str(exc))
            raise LeaseLost(record.task_id) from exc
        stored = [e for e in new.values() if "sha256" in e]
        return Archived(
            doc["outcome"],
            len(stored),
            sum(e["bytes"] for e in stored),
            _problems(record, entries, tracks, task_failed=task_failed),
        )

    async def _fetch_and_store(
        self,
        record: Record,
        specs: Sequence[FileSpec],
        kept: Mapping[FileSpec, Any],
        *,
        final: bool,
        expect: Expected | None = None,
    ) -> dict[FileSpec, dict[str, Any]]:
        """The manifest entries of the files not `kept`, fetched, tagged and stored. Raises
        RetryLater when one failed for a reason that may pass and this try is not `final`,
        NotRestored when one is not as `expect` says."""
        wanted = self._to_fetch(specs, kept)
        fetched = await self._files.fetch_all(record, wanted, kept)
        results = dict(zip(wanted, fetched, strict=True))
        try:
            transient = [
                result
                for spec, result in results.items()
                if spec not in kept and isinstance(result, FetchError) and not result.permanent
            ]
            if transient and not final:
                raise RetryLater(str(transient[0]))
            if expect and (unlike := _unlike_before(results, expect)):
                raise NotRestored("; ".join(unlike))
            return await self._store_all(results, kept)
        finally:
            for result in fetched:  # whatever was not consumed by tagging or storage
                if isinstance(result, Fetched):
                    result.path.unlink(missing_ok=True)

    async def _add_aligned_lyrics(
        self,
        record: MusicRecord,
        tracks: list[TrackFiles],
        before: Mapping[str, Any] | None,
        *,
        final: bool,
    ) -> list[TrackFiles]:
        assert self._aligned_lyrics is not None
        names = track_names(record)
        stored = stored_entries(before) if before is not None else {}
        keys = [key for name in names for key in stored_keys(name, record.task_id)]
        kept = await self._still_stored({key: stored[key] for key in keys if key in stored})
        try:
            return await add_aligned_lyrics(
                record,
                tracks,
                names,
                kept=kept,
                source=self._aligned_lyrics,
                store=self._store_inline,
                source_url=ALIGNED_LYRICS_PATH,
                final=final,
            )
        except ApiUnusable:
            raise
        except ApiError as exc:  # passing, and this try is not the last
            raise RetryLater(f"aligned lyrics: {exc}") from exc

    async def _store_inline(self, spec: FileSpec) -> dict[str, Any]:
        fetched = await self._files.write_inline(spec)
        try:
            return await self._store(spec, fetched)
        finally:
            fetched.path.unlink(missing_ok=True)

    async def _still_stored(self, entries: Mapping[K, dict[str, Any]]) -> dict[K, dict[str, Any]]:
        """The entries whose file is still in storage: one removed since (by hand, say) is
        fetched again, so that the new manifest names only files that exist."""
        present = await asyncio.gather(*(self._exists(e["path"]) for e in entries.values()))
        return {spec: e for (spec, e), there in zip(entries.items(), present, strict=True) if there}

    async def _exists(self, key: str) -> bool:
        try:
            return await self._storage.exists(key)
        except ValueError:  # not a key of ours: a manifest edited by hand
            return False

    def _to_fetch(self, specs: Sequence[FileSpec], kept: Mapping[FileSpec, Any]) -> list[FileSpec]:
        """The files not stored yet, and the stored image of a track whose MP3 is not: the new
        MP3's tag embeds it (`TaskFetcher.fetch_all` reads that one back from storage)."""
        embed = self._tagging.enabled and self._tagging.embed_cover
        new_audio = {s.track for s in specs if s.role == "audio" and s not in kept}
        return [
            s
            for s in specs
            if s not in kept or (embed and s.role == "image" and s.track in new_audio)
        ]

    async def _store_all(
        self, results: dict[FileSpec, FileResult], kept: Mapping[FileSpec, Any]
    ) -> dict[FileSpec, dict[str, Any]]:
        """Every fetched spec not `kept` → its manifest entry."""
        entries: dict[FileSpec, dict[str, Any]] = {}
        for spec, result in results.items():
            if spec in kept:
                continue  # stored already; fetched only to be embedded in its track's MP3
            if isinstance(result, FetchError | TaggingError):
                entries[spec] = error_entry(source_url=spec.urls[0], error=str(result))
            else:
                entries[spec] = await self._store(spec, result)
        return entries

    async def _store(self, spec: FileSpec, fetched: Fetched) -> dict[str, Any]:
        """One fetched file into storage under its final name → its manifest entry."""
        key = f"{spec.key_stem}.{media.EXTENSIONS[fetched.media]}"
        content_type = media.CONTENT_TYPES[fetched.media]
        if spec.role == "audio" and self._tagging.enabled:
            try:  # the magic bytes said MP3; mutagen must read its frames too
                await asyncio.to_thread(check_mp3, fetched.path, key)
            except TaggingError as exc:
                log.warning("tagging_failed", key=key, error=str(exc))
                return error_entry(source_url=fetched.url, error=str(exc))
        try:
            await self._storage.put_file(
                key, fetched.path, sha256=fetched.sha256, content_type=content_type
            )
        except StorageConflict as exc:
            return error_entry(source_url=fetched.url, error=str(exc))
        log.info("file_stored", key=key, bytes=fetched.bytes)
        if spec.role == "audio":
            return audio_entry(
                key=key,
                size=fetched.bytes,
                sha256=fetched.sha256,
                source_url=fetched.url,
                source_sha256=fetched.source_sha256,
                source_bytes=fetched.source_bytes,
            )
        return file_entry(
            key=key,
            size=fetched.bytes,
            sha256=fetched.sha256,
            content_type=content_type,
            source_url=fetched.url or None,  # None: written from the record, not downloaded
        )

    @staticmethod
    def _arrange(
        record: Record, specs: Sequence[FileSpec], entries: dict[FileSpec, dict[str, Any]]
    ) -> tuple[list[TrackFiles], list[dict[str, Any]], list[dict[str, Any]]]:
        """Entries in manifest order: one TrackFiles per track (None where nothing was to be
        had), the cover images, and the files of other kinds with their roles."""
        if isinstance(record, OutputRecord):
            return [], [], [role_entry(entries[s], s.role) for s in specs]
        if not isinstance(record, MusicRecord):
            return [], [entries[s] for s in specs if s.role == "cover"], []
        by_track: dict[tuple[int | None, str], dict[str, Any]] = {
            (s.track, s.role): entries[s] for s in specs
        }
        tracks = [
            TrackFiles(audio=by_track.get((i, "audio")), image=by_track.get((i, "image")))
            for i in range(len(record.tracks))
        ]
        return tracks, [], []


def _problems(
    record: Record,
    entries: Mapping[FileSpec, Mapping[str, Any]],
    tracks: Sequence[TrackFiles],
    *,
    task_failed: bool,
) -> tuple[str, ...]:
    """One line per file that could not be archived, and per track of a finished task the
    API gave no audio for."""
    problems = [
        f"{spec.key_stem}: {entry['error']}" for spec, entry in entries.items() if "error" in entry
    ]
    if isinstance(record, MusicRecord) and not task_failed:
        names = track_names(record)
        problems += [
            f"{record.task_id}/{names[i]}: the API gave no usable audio URL"
            for i, files in enumerate(tracks)
            if files.audio is None
        ]
        problems += [
            f"{record.task_id}/{names[i]}.lyrics.json: {files.lyrics['error']}"
            for i, files in enumerate(tracks)
            if is_error_entry(files.lyrics)
        ]
    if isinstance(record, OutputRecord) and not task_failed and not entries:
        problems.append(f"{record.task_id}: the API gave no file")
    return tuple(problems)


def _unlike_before(results: Mapping[FileSpec, FileResult], expect: Expected) -> list[str]:
    """Why the files `expect` names are not the bytes they were (none: they are)."""
    unlike = []
    for spec, result in results.items():
        want = expect.get((spec.key_stem, spec.role))
        if want is None:
            continue
        if not isinstance(result, Fetched):
            unlike.append(f"{spec.key_stem}: {result}")
        elif result.source_sha256 != want:
            unlike.append(
                f"{spec.key_stem}: the vendor now serves other bytes (sha256 "
                f"{result.source_sha256}, archived from {want}): a conflict, left as is"
            )
    return unlike


def _stored_before(
    doc: Mapping[str, Any] | None, specs: Sequence[FileSpec]
) -> dict[FileSpec, dict[str, Any]]:
    """The entries of `specs` an earlier manifest lists as stored (a file's name comes from
    its ID, so it is the same whatever URL the record gives now)."""
    stored = stored_entries(doc) if doc is not None else {}
    return {
        spec: stored[(spec.key_stem, spec.role)]
        for spec in specs
        if (spec.key_stem, spec.role) in stored
    }
