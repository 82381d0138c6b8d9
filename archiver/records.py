"""The API's JSON `data` object → typed, frozen records (every variant listed in SPEC)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    MUSIC = "music"
    COVER = "cover"


@dataclass(frozen=True)
class Track:
    audio_id: str
    title: str
    tags: str
    duration: float | None  # null until the audio exists
    model_name: str
    prompt: str
    created_at: str | None  # ISO 8601 UTC ("2025-01-01T00:00:00Z"), from epoch ms or a date string
    audio_url: str  # "" until the track is done
    image_url: str
    source_audio_url: str
    source_image_url: str


@dataclass(frozen=True)
class MusicRecord:
    task_id: str
    status: str  # the API's status string, e.g. "SUCCESS", "FIRST_SUCCESS"
    tracks: tuple[Track, ...]
    error_code: int | None
    error_message: str | None
    raw: Mapping[str, Any]  # the API's `data` object exactly as received


@dataclass(frozen=True)
class CoverRecord:
    task_id: str
    parent_task_id: str | None
    status: str  # "PENDING" | "GENERATING" | "SUCCESS" | "FAILED" (from successFlag 0/2/1/3)
    images: tuple[str, ...]
    error_code: int | None
    error_message: str | None
    raw: Mapping[str, Any]


Record = MusicRecord | CoverRecord


def parse_music(data: Mapping[str, Any]) -> MusicRecord:
    raise NotImplementedError


def parse_cover(data: Mapping[str, Any]) -> CoverRecord:
    raise NotImplementedError
