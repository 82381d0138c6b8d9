"""TOML → frozen dataclasses. Every error names the file and the key.

Relative paths resolve against the config file's folder (the cwd when there is no file) and
come back absolute, so nothing downstream depends on the process's working directory.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

from archiver.errors import ConfigError
from archiver.expiry import DEFAULT_RETENTION_DAYS
from archiver.listen import is_loopback, parse_listen
from archiver.tagnames import FIELDS, template_problem

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
    urls: tuple[str, ...] = ()  # webhooks alerts are POSTed to (see notify.py); () = none
    silence_after_s: float = 3600.0  # alert when pending tasks saw no progress this long


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
    source: Path | None = None  # the config file read, if any (absolute)


# ---------------------------------------------------------------------------------------------
# The schema: every key, its TOML type, what a valid value is (said in the error), and a check.


@dataclass(frozen=True)
class _Key:
    type: type  # str, float (int accepted), int, bool
    expect: str  # "a number > 0": the error says "expected <expect>, got <value>"
    ok: Callable[[Any], bool] = lambda _v: True
    secret: bool = False  # never echo the value


def _is_url(value: str, *, allow_empty: bool) -> bool:
    if value == "":
        return allow_empty
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not any(c.isspace() or ord(c) < 32 for c in value)
    )


def _is_listen(value: str) -> bool:
    if value == "":
        return True
    try:
        host, _port = parse_listen(value)
    except ValueError:
        return False
    return is_loopback(host)


def _is_any_listen(value: str) -> bool:
    try:
        parse_listen(value)
    except ValueError:
        return value == ""
    return True


def _printable(value: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in value)


def _path_ok(value: str) -> bool:
    return "\x00" not in value


def _nonempty_path(value: str) -> bool:
    return value.strip() != "" and "\x00" not in value


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _between(lo: int, hi: int) -> Callable[[int], bool]:
    return lambda v: lo <= v <= hi


_PATH = _Key(str, "a path (a string)", _path_ok)
_TIMEOUT = _Key(float, "a number of seconds > 0", _positive)
_TEMPLATE = _Key(
    str,
    "text with fields among " + ", ".join(f"{{{f}}}" for f in FIELDS),
    lambda v: _printable(v) and template_problem(v) is None,
)

_SCHEMA: dict[str, dict[str, _Key]] = {
    "api": {
        "base_url": _Key(
            str, "an http:// or https:// URL", lambda v: _is_url(v, allow_empty=False)
        ),
        "api_key": _Key(str, "a string", secret=True),
        "api_key_file": _PATH,
        "requests_per_second": _Key(float, "a number > 0", _positive),
        "timeout_s": _TIMEOUT,
        "user_agent": _Key(
            str, "a non-empty string without control characters", lambda v: v and _printable(v)
        ),
    },
    "tasks": {
        "list": _Key(str, "a non-empty path", _nonempty_path),
        "give_up_after_s": _Key(float, "a number of seconds > 0", _positive),
        "not_found_after_s": _Key(float, "a number of seconds > 0", _positive),
        "retention_days": _Key(float, "a number of days > 0", _positive),
    },
    "storage": {
        "backend": _Key(str, '"local" or "s3"', lambda v: v in ("local", "s3")),
        "path": _Key(str, "a non-empty path", _nonempty_path),
        "bucket": _Key(
            str,
            "an S3 bucket name: letters, digits, '.', '_' or '-' (at most 255)",
            lambda v: _bucket_ok(v),
        ),
        "prefix": _Key(
            str,
            "a key prefix without control characters or empty, '.' or '..' segments",
            lambda v: _prefix_ok(v),
        ),
        "endpoint_url": _Key(
            str, 'an http:// or https:// URL, or ""', lambda v: _is_url(v, allow_empty=True)
        ),
        "region": _Key(str, 'a region name such as "eu-west-1"', lambda v: _region_ok(v)),
        "cache_dir": _PATH,
        "checksum_when_required": _Key(bool, "true or false"),
        "max_concurrent_uploads": _Key(int, "an integer from 1 to 64", _between(1, 64)),
        "min_free_bytes": _Key(int, "an integer >= 0 (bytes)", lambda v: v >= 0),
    },
    "state": {"path": _PATH},
    "download": {
        "concurrency": _Key(int, "an integer from 1 to 64", _between(1, 64)),
        "max_file_bytes": _Key(int, "an integer > 0 (bytes)", lambda v: v > 0),
        "attempts": _Key(int, "an integer from 1 to 20", _between(1, 20)),
        "timeout_s": _TIMEOUT,
    },
    "tagging": {
        "enabled": _Key(bool, "true or false"),
        "id3_version": _Key(int, "3 or 4", lambda v: v in (3, 4)),
        "embed_cover": _Key(bool, "true or false"),
        "aligned_lyrics": _Key(bool, "true or false"),
        "album": _TEMPLATE,
        "artist": _TEMPLATE,
    },
    "index": {
        "enabled": _Key(bool, "true or false"),
        "min_interval_s": _Key(
            float, "a number of seconds >= 1", lambda v: v >= 1 and v < math.inf
        ),
    },
    "daemon": {
        "grace_period_s": _Key(
            float, "a number of seconds >= 0", lambda v: math.isfinite(v) and v >= 0
        ),
        "metrics_listen": _Key(
            str, 'a loopback host:port (e.g. "127.0.0.1:9464") or ""', _is_listen
        ),
        "verify_every_s": _Key(
            float, "a number of seconds >= 0 (0 = off)", lambda v: math.isfinite(v) and v >= 0
        ),
    },
    "intake": {
        "listen": _Key(str, 'a host:port (e.g. "127.0.0.1:8787") or ""', _is_any_listen),
        "token_file": _PATH,
        "kie_webhook_key_file": _PATH,
    },
    "notify": {
        "urls": _Key(
            tuple,
            "a list of https:// URLs (http:// only to a loopback address)",
            lambda v: all(_is_alert_url(u) for u in v),
        ),
        "silence_after_s": _Key(float, "a number of seconds > 0", _positive),
    },
}


def _is_alert_url(value: str) -> bool:
    """Alerts carry what went wrong: over TLS, or to this machine."""
    if not _is_url(value, allow_empty=False):
        return False
    parts = urlsplit(value)
    return parts.scheme == "https" or is_loopback(parts.hostname or "")


# The names botocore lets through (botocore.handlers.VALID_BUCKET), not today's stricter rules
# for new AWS buckets: legacy us-east-1 buckets and other stores may have capitals or '_'.
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")
# botocore's own check (botocore.utils.validate_region_name): a host label, not all digits.
_REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{,63}(?<!-)")


def _bucket_ok(v: str) -> bool:
    # "" passes here: whether a bucket is required depends on the backend (see _build).
    return v == "" or bool(_BUCKET.fullmatch(v))


def _prefix_ok(v: str) -> bool:
    segments = v.strip("/").split("/")
    return _printable(v) and (segments == [""] or all(s not in ("", ".", "..") for s in segments))


def _region_ok(v: str) -> bool:
    return bool(_REGION.fullmatch(v))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_name(name: str) -> str:
    """A key or section name as TOML writes it: quoted when not bare, so a newline in a
    quoted key cannot break the one-line error."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _show(value: Any) -> str:
    """A TOML-ish rendering of a bad value for an error message (short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '…"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # TOML dates and times


class _Loader:
    def __init__(self, label: str, base: Path) -> None:
        self.label = label  # the config file as the user named it, or "(defaults)"
        self.base = base  # the folder relative paths resolve against

    def fail(self, where: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.label}: {where}: {message}")

    # -- shape -----------------------------------------------------------------------------

    def sections(self, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Check sections and keys and value types; return {section: {key: typed value}}."""
        out: dict[str, dict[str, Any]] = {name: {} for name in _SCHEMA}
        for name, table in doc.items():
            if name not in _SCHEMA:
                if not isinstance(table, dict):
                    hint = _hint_anywhere(name)
                    self.fail(_key_name(name), "unknown key outside any section" + hint)
                close = difflib.get_close_matches(name, _SCHEMA, n=1)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                known = ", ".join(f"[{s}]" for s in _SCHEMA)
                self.fail(f"[{_key_name(name)}]", f"unknown section{hint}; known sections: {known}")
            if not isinstance(table, dict):
                # Not the value: `api = "<the key>"` must not echo the key.
                self.fail(f"[{name}]", f"expected a section [{name}], not a value")
            for key, value in table.items():
                out[name][key] = self.value(name, key, value)
        return out

    def value(self, section: str, key: str, value: Any) -> Any:
        where = f"[{section}] {_key_name(key)}"
        spec = _SCHEMA[section].get(key)
        if spec is None:
            close = difflib.get_close_matches(key, _SCHEMA[section], n=1)
            if close:
                hint = f" (did you mean {close[0]}?)"
            else:
                hint = _hint_anywhere(key) or ("; known keys: " + ", ".join(_SCHEMA[section]))
            self.fail(where, "unknown key" + hint)
        typed = _coerce(spec.type, value)
        if typed is None or not spec.ok(typed):
            got = "" if spec.secret else f", got {_show(value)}"
            self.fail(where, f"expected {spec.expect}{got}")
        return typed

    # -- paths -----------------------------------------------------------------------------

    def path(self, raw: str) -> Path:
        return Path(os.path.abspath(self.base / Path(raw).expanduser()))


def _coerce(kind: type, value: Any) -> Any:
    """The value as `kind`, or None when TOML gave another type (a bool is not a number)."""
    if isinstance(value, bool):
        return value if kind is bool else None
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)  # a list of strings, the only kind of list the config has
    if kind is str and isinstance(value, str):
        return value
    return None


def _hint_anywhere(key: str) -> str:
    """' (it belongs in [storage])' when `key` is a key of another section, else ""."""
    for section, keys in _SCHEMA.items():
        if key in keys:
            return f" (it belongs in [{section}])"
    return ""


# ---------------------------------------------------------------------------------------------


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
        loader = _Loader("(defaults)", Path.cwd())
        return _build(loader, {name: {} for name in _SCHEMA}, env, None, read_key, read_intake)

    label = str(path)
    loader = _Loader(label, Path(os.path.abspath(path)).parent)
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
    loader: _Loader,
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
        state=StateConfig(path=state_path),
        download=DownloadConfig(**raw["download"]),
        tagging=TaggingConfig(**raw["tagging"]),
        index=IndexConfig(**raw["index"]),
        daemon=DaemonConfig(**raw["daemon"]),
        intake=_intake(loader, raw["intake"]) if read_key and read_intake else IntakeConfig(),
        notify=NotifyConfig(**raw["notify"]),
        source=source,
    )


def _api_key(loader: _Loader, api: Mapping[str, Any], env: Mapping[str, str]) -> str:
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
    return _printable(key) and not any(c.isspace() for c in key)


# What a callback URL can carry in its path as it is, and long enough not to be guessed.
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")


def _intake(loader: _Loader, intake: Mapping[str, Any]) -> IntakeConfig:
    """[intake]: the secrets are read from their files here; the token is required when the
    intake listens. (Like the API key, not read when the command needs none: `status`.)"""
    listen = intake.get("listen", "")
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


def _secret(loader: _Loader, where: str, raw_path: str) -> str:
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
