"""TOML → frozen dataclasses. Every error names the file and the key (the keys and their
checks: `configschema`).

Relative paths resolve against the config file's folder (the cwd when there is no file) and
come back absolute, so nothing downstream depends on the process's working directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from archiver.config.pgurl import password_of, shown
from archiver.config.schema import SCHEMA, Loader, printable
from archiver.config.whsec import secret_key
from archiver.errors import ConfigError
from archiver.tasks.events import TYPES
from archiver.tasks.expiry import DEFAULT_RETENTION_DAYS

DEFAULT_CONFIG_NAME = "archive.toml"
API_KEY_ENV = "SUNO_API_KEY"


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = "https://api.kie.ai"
    api_key: str = field(default="", repr=False)  # never printed; "" = none configured
    requests_per_second: float = 2.0
    timeout_s: float = 30.0
    user_agent: str = "suno-archiver"  # cli/engine append the version


@dataclass(frozen=True)
class TasksConfig:
    list: Path | None = None  # the file `run` watches; None without a config file
    give_up_after_s: float = 86400.0
    not_found_after_s: float = 900.0  # unknown to every endpoint this long: recorded not found
    retention_days: float = DEFAULT_RETENTION_DAYS  # the API keeps a finished task's files


@dataclass(frozen=True)
class StorageConfig:
    backend: Literal["local", "s3"] = "local"
    path: Path = Path("archive")
    bucket: str = ""
    prefix: str = ""  # s3: without leading/trailing "/" (load_config strips them)
    endpoint_url: str = ""
    region: str = ""
    cache_dir: Path | None = None  # s3: local folder for downloads (default <state dir>/cache);
    #                                local: None unless set (temp files stay on the archive's fs)
    checksum_when_required: bool = False  # s3: for stores that reject boto3's default CRC headers
    max_concurrent_uploads: int = 4
    min_free_bytes: int = 1024**3  # local: a download never leaves less free (see storage/space)
    public_base_url: str = ""  # where the archive is served: file URLs in events, GET /tasks
    presign_ttl_s: int = 0  # s3 without public_base_url: presigned GET URLs this long; 0 = none

    @property
    def location(self) -> str:
        """Where the archive is, as people name it: the folder, or s3://bucket/prefix."""
        if self.backend == "s3":
            return f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return str(self.path)


@dataclass(frozen=True)
class StateConfig:
    # local backend: beside the archive folder (archive → archive.state.sqlite3);
    # s3 backend: <config folder>/state/suno-archiver.sqlite3
    path: Path = Path("archive.state.sqlite3")
    url: str = field(default="", repr=False)  # a PostgreSQL state instead (may hold a password)
    password: str = field(default="", repr=False)  # from password_file; never printed
    lease_s: float = 60.0  # PostgreSQL: a claim on a task lapses this long after its renewal
    shared_local: bool = False  # PostgreSQL with local storage: the user says it is one host

    @property
    def where(self) -> str:
        """The state as messages name it: its file, or its URL without the password."""
        return shown(self.url) if self.url else str(self.path)

    @property
    def secrets(self) -> list[str]:
        """What the log must never show: the password, wherever it came from."""
        return [s for s in (self.password, password_of(self.url)) if s]


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
    aligned_lyrics: bool = False  # also fetch each song's word timings: .lyrics.json and .lrc
    # TALB and TPE1, so that Navidrome or Jellyfin group the archive sensibly (archiver.tagnames)
    album: str = "{task_title}"
    artist: str = "Suno"


@dataclass(frozen=True)
class IndexConfig:
    enabled: bool = True  # index.html and playlist.m3u8 at the archive root
    min_interval_s: float = 60.0  # `run` rewrites them at most this often (and at shutdown)


@dataclass(frozen=True)
class DaemonConfig:
    grace_period_s: float = 30.0  # SIGTERM: how long in-flight files may take to finish
    metrics_listen: str = ""  # loopback only, e.g. "127.0.0.1:9464"; empty = off
    verify_every_s: float = 0.0  # rolling verify: the whole archive once per this period; 0 = off


@dataclass(frozen=True)
class IntakeConfig:
    listen: str = ""  # host:port of the HTTP intake (`run` only); "" = off
    token: str = field(default="", repr=False)  # from token_file; never printed
    kie_webhook_key: bytes = field(default=b"", repr=False)  # from kie_webhook_key_file


@dataclass(frozen=True)
class NotifyConfig:
    urls: tuple[str, ...] = ()  # webhooks alerts are POSTed to (see service/notify.py); () = none
    silence_after_s: float = 3600.0  # alert when pending tasks saw no progress this long


@dataclass(frozen=True)
class EventsConfig:
    urls: tuple[str, ...] = ()  # where task events are POSTed (archiver.service.sender)
    key: bytes = field(default=b"", repr=False)  # the secret_file's HMAC key; never printed
    types: frozenset[str] = frozenset(TYPES)  # the events recorded and sent
    give_up_after_s: float = 3 * 86400.0  # an event not delivered by then is given up
    keep_days: float = 30.0  # events older are pruned (the pull feed, `events`)
    timeout_s: float = 10.0  # one POST


@dataclass(frozen=True)
class Config:
    api: ApiConfig = ApiConfig()
    tasks: TasksConfig = TasksConfig()
    storage: StorageConfig = StorageConfig()
    state: StateConfig = StateConfig()
    download: DownloadConfig = DownloadConfig()
    tagging: TaggingConfig = TaggingConfig()
    index: IndexConfig = IndexConfig()
    daemon: DaemonConfig = DaemonConfig()
    intake: IntakeConfig = IntakeConfig()
    notify: NotifyConfig = NotifyConfig()
    events: EventsConfig = EventsConfig()
    source: Path | None = None  # the config file read, if any (absolute)


def load_config(
    path: Path | None, env: Mapping[str, str], *, read_key: bool = True, read_intake: bool = True
) -> Config:
    """Read `path` (None: `./archive.toml` if it exists, else built-in defaults).

    Raises ConfigError with one line naming the file and the key. A missing API key is not
    an error here: `demo` needs none, and the CLI says what to set when a command needs one.
    read_key=False leaves api_key "" without reading api_key_file or $SUNO_API_KEY: `status`
    needs no key, and its user may not be able to read a systemd credential.
    read_intake=False likewise leaves the [intake] secrets unread (only `run` serves it).
    """
    if path is None and Path(DEFAULT_CONFIG_NAME).exists():
        path = Path(DEFAULT_CONFIG_NAME)
    if path is None:
        loader = Loader("(defaults)", Path.cwd())
        return _build(loader, {name: {} for name in SCHEMA}, env, None, read_key, read_intake)

    label = str(path)
    loader = Loader(label, Path(os.path.abspath(path)).parent)
    if not path.exists():
        raise ConfigError(f"{label}: config file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{label}: cannot read config: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message carries "(at line L, column C)" and never the offending text.
        raise ConfigError(f"{label}: invalid TOML: {e}") from None
    source = Path(os.path.abspath(path))
    return _build(loader, loader.sections(doc), env, source, read_key, read_intake)


def _build(
    loader: Loader,
    raw: dict[str, dict[str, Any]],
    env: Mapping[str, str],
    source: Path | None,
    read_key: bool,
    read_intake: bool,
) -> Config:
    api = raw["api"]
    storage = raw["storage"]
    backend = storage.get("backend", "local")
    if backend == "s3" and not storage.get("bucket"):
        loader.fail("[storage] bucket", 'required when backend = "s3"')

    storage_path = loader.path(storage.get("path", "archive"))
    state_raw = raw["state"].get("path", "")
    state_url = raw["state"].get("url", "")
    if state_url and state_raw.strip():
        loader.fail("[state] url", "set either [state] url or [state] path, not both")
    if state_url and backend == "local" and not raw["state"].get("shared_local", False):
        loader.fail(
            "[state] url",
            "a PostgreSQL state is for several daemons, and they cannot share a local "
            'folder: use backend = "s3", or set [state] shared_local = true when every '
            "daemon runs on this one host",
        )
    if state_raw.strip():
        state_path = loader.path(state_raw)
    elif backend == "s3":
        state_path = loader.path("state/suno-archiver.sqlite3")
    elif storage_path.name:
        state_path = storage_path.with_name(storage_path.name + ".state.sqlite3")
    else:  # the archive is a filesystem root: there is no "beside"
        state_path = storage_path / ".suno-archiver.state.sqlite3"

    cache_raw = storage.get("cache_dir", "")
    if cache_raw.strip():
        cache_dir: Path | None = loader.path(cache_raw)
    elif backend == "s3":
        cache_dir = state_path.parent / "cache"
    else:
        cache_dir = None

    if "list" in raw["tasks"]:
        task_list: Path | None = loader.path(raw["tasks"]["list"])
    else:
        task_list = loader.path("tasks.txt") if source is not None else None

    if storage.get("presign_ttl_s", 0) and backend != "s3":
        loader.fail("[storage] presign_ttl_s", 'only with backend = "s3" (set public_base_url)')
    storage_fields = {k: v for k, v in storage.items() if k not in ("path", "cache_dir", "prefix")}
    return Config(
        api=ApiConfig(
            **{k: v for k, v in api.items() if k not in ("api_key", "api_key_file")},
            api_key=_api_key(loader, api, env) if read_key else "",
        ),
        tasks=TasksConfig(list=task_list, **{k: v for k, v in raw["tasks"].items() if k != "list"}),
        storage=StorageConfig(
            **storage_fields,
            path=storage_path,
            cache_dir=cache_dir,
            prefix=storage.get("prefix", "").strip("/"),
        ),
        state=_state(loader, raw["state"], state_path),
        download=DownloadConfig(**raw["download"]),
        tagging=TaggingConfig(**raw["tagging"]),
        index=IndexConfig(**raw["index"]),
        daemon=DaemonConfig(**raw["daemon"]),
        intake=_intake(loader, raw["intake"], read_secrets=read_key and read_intake),
        notify=NotifyConfig(**raw["notify"]),
        events=_events(loader, raw["events"], read_secret=read_key),
        source=source,
    )


def _state(loader: Loader, state: Mapping[str, Any], path: Path) -> StateConfig:
    """[state]: a PostgreSQL URL's password comes from the URL, else password_file (read
    here), else libpq's own password file (PGPASSFILE, ~/.pgpass) when connecting."""
    url = state.get("url", "")
    password_file = state.get("password_file", "").strip()
    if password_file and not url:
        loader.fail("[state] password_file", "only with [state] url")
    password = _secret(loader, "[state] password_file", password_file) if password_file else ""
    return StateConfig(
        path=path,
        url=url,
        password=password,
        lease_s=state.get("lease_s", 60.0),
        shared_local=state.get("shared_local", False),
    )


def _api_key(loader: Loader, api: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """api_key, else the api_key_file's contents, else $SUNO_API_KEY, else "" (SPEC's order:
    a file set too is then not read). Never echoed."""
    key = api.get("api_key", "").strip()
    key_file = api.get("api_key_file", "").strip()
    where = "[api] api_key"
    if key_file and not key:
        where = "[api] api_key_file"
        key = _secret(loader, where, key_file)
    elif not key:
        key = env.get(API_KEY_ENV, "").strip()
        if key and not _key_chars_ok(key):
            raise ConfigError(f"{API_KEY_ENV}: the API key contains spaces or control characters")
        return key
    if not _key_chars_ok(key):
        loader.fail(where, "the API key contains spaces or control characters")
    return key


def _key_chars_ok(key: str) -> bool:
    return printable(key) and not any(c.isspace() for c in key)


# What a callback URL can carry in its path as it is, and long enough not to be guessed.
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")


def _intake(loader: Loader, intake: Mapping[str, Any], *, read_secrets: bool) -> IntakeConfig:
    """[intake]: the secrets are read from their files here; the token is required when the
    intake listens. (Like the API key, not read when the command needs none: `status`; the
    address is, since events are kept for its feed whichever command archives.)"""
    listen = intake.get("listen", "")
    if not read_secrets:
        return IntakeConfig(listen=listen)
    token_file = intake.get("token_file", "").strip()
    key_file = intake.get("kie_webhook_key_file", "").strip()
    if listen and not token_file:
        loader.fail("[intake] token_file", "required when listen is set")
    token = _secret(loader, "[intake] token_file", token_file) if token_file else ""
    if token and not _TOKEN.fullmatch(token):
        loader.fail(
            "[intake] token_file",
            "the token must be 16-256 of A-Z a-z 0-9 . _ ~ - (it is part of the callback URL)",
        )
    key = _secret(loader, "[intake] kie_webhook_key_file", key_file) if key_file else ""
    return IntakeConfig(listen=listen, token=token, kie_webhook_key=key.encode())


def _events(loader: Loader, events: Mapping[str, Any], *, read_secret: bool) -> EventsConfig:
    """[events]: the types checked, the secret required with urls and read from its file
    (unless the command sends nothing: `status`)."""
    unknown = [t for t in events.get("types", ()) if t not in TYPES]
    if unknown:
        loader.fail(
            "[events] types",
            f'unknown event type "{unknown[0]}" (known: {", ".join(TYPES)})',
        )
    secret_file = events.get("secret_file", "").strip()
    if events.get("urls") and not secret_file:
        loader.fail("[events] secret_file", "required when urls is set")
    key = b""
    if secret_file and read_secret:
        where = "[events] secret_file"
        try:
            key = secret_key(_secret(loader, where, secret_file))
        except ValueError as exc:
            loader.fail(where, f"{loader.path(secret_file)}: {exc}")
    fields = {k: v for k, v in events.items() if k not in ("secret_file", "types")}
    return EventsConfig(**fields, key=key, types=frozenset(events.get("types") or TYPES))


def _secret(loader: Loader, where: str, raw_path: str) -> str:
    """A secret file's contents, stripped; an unreadable or empty file fails naming it."""
    file = loader.path(raw_path)
    try:
        value = file.read_bytes().decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        loader.fail(where, f"{file} is not UTF-8 text")
    except OSError as e:
        loader.fail(where, f"cannot read {file}: {e.strerror or type(e).__name__}")
    if not value:
        loader.fail(where, f"{file} is empty")
    return value
