"""TOML → frozen dataclasses. Every error names the file and the key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = "https://api.kie.ai"
    api_key: str = field(default="", repr=False)  # never printed
    requests_per_second: float = 2.0
    timeout_s: float = 30.0
    user_agent: str = "suno-archiver"  # cli/engine append the version


@dataclass(frozen=True)
class TasksConfig:
    list: Path | None = None  # the file `run` watches; None without a config file
    give_up_after_s: float = 86400.0


@dataclass(frozen=True)
class StorageConfig:
    backend: Literal["local", "s3"] = "local"
    path: Path = Path("archive")
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""
    cache_dir: Path | None = None  # s3: local folder for downloads; default under state dir
    checksum_when_required: bool = False  # s3: for stores that reject boto3's default CRC headers
    max_concurrent_uploads: int = 4


@dataclass(frozen=True)
class StateConfig:
    path: Path = Path("archive/.suno-archiver.sqlite3")


@dataclass(frozen=True)
class DownloadConfig:
    concurrency: int = 4  # files downloaded at once, all tasks together
    max_file_bytes: int = 2 * 1024**3
    attempts: int = 5  # per file, for transient failures
    timeout_s: float = 60.0  # a read that stalls this long is a failure


@dataclass(frozen=True)
class TaggingConfig:
    enabled: bool = True
    id3_version: Literal[3, 4] = 3
    embed_cover: bool = True


@dataclass(frozen=True)
class DaemonConfig:
    grace_period_s: float = 30.0  # SIGTERM: how long in-flight files may take to finish
    metrics_listen: str = ""  # e.g. "127.0.0.1:9464"; empty = off


@dataclass(frozen=True)
class Config:
    api: ApiConfig = ApiConfig()
    tasks: TasksConfig = TasksConfig()
    storage: StorageConfig = StorageConfig()
    state: StateConfig = StateConfig()
    download: DownloadConfig = DownloadConfig()
    tagging: TaggingConfig = TaggingConfig()
    daemon: DaemonConfig = DaemonConfig()
    source: Path | None = None  # the config file read, if any


def load_config(path: Path | None, env: Mapping[str, str]) -> Config:
    """Read `path` (None: `./archive.toml` if it exists, else built-in defaults)."""
    raise NotImplementedError
