"""load_config against real files: defaults, path resolution, the API key, every error."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from archiver.config import Config, load_config
from archiver.config.schema import SCHEMA
from archiver.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "archive.example.toml"
SECRET = "sk-SECRET-0123456789abcdef"


def write(folder: Path, text: str, name: str = "archive.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, env: Mapping[str, str] | None = None, *, read_key: bool = True) -> Config:
    return load_config(path, env or {}, read_key=read_key)


def config_error(path: Path, env: Mapping[str, str] | None = None) -> str:
    """The ConfigError's message, checked to be one line that starts with the file's name."""
    with pytest.raises(ConfigError) as caught:
        load(path, env)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}: "), message
    return message


# -- defaults and paths -----------------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    here = Path.cwd()

    config = load_config(None, {"SUNO_API_KEY": " env-key \n"})

    assert config.source is None
    assert config.storage.path == here / "archive"
    assert config.state.path == here / "archive.state.sqlite3"
    assert config.storage.cache_dir is None
    assert config.tasks.list is None  # `run` needs a config file to know what to watch
    assert config.api.api_key == "env-key"
    assert config.api.base_url == "https://api.kie.ai"
    assert config.storage.backend == "local"


def test_archive_toml_in_the_cwd_is_picked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[storage]\npath = "music"\n')
    monkeypatch.chdir(tmp_path)
    here = Path.cwd()

    config = load_config(None, {})

    assert config.source == here / "archive.toml"
    assert config.storage.path == here / "music"
    assert config.state.path == here / "music.state.sqlite3"
    assert config.tasks.list == here / "tasks.txt"


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    (tmp_path / "elsewhere").mkdir()
    write(etc, "the-key\n", name="key.txt")
    path = write(
        etc,
        '[api]\napi_key_file = "key.txt"\n'
        '[tasks]\nlist = "lists/ids.txt"\n'
        '[storage]\npath = "../data/archive"\ncache_dir = "cache"\n'
        '[state]\npath = "~/state.sqlite3"\n',
    )
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    config = load(path)

    assert config.source == path
    assert config.api.api_key == "the-key"
    assert config.tasks.list == etc / "lists" / "ids.txt"
    assert config.storage.path == tmp_path / "data" / "archive"
    assert config.storage.cache_dir == etc / "cache"
    assert config.state.path == tmp_path / "home" / "state.sqlite3"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", f'[storage]\npath = "{tmp_path}/a"\n[state]\npath = "/s.db"\n')

    config = load(path)

    assert config.storage.path == tmp_path / "a"
    assert config.state.path == Path("/s.db")


def test_an_archive_at_a_filesystem_root_keeps_its_state_inside(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[storage]\npath = "/"\n'))

    assert config.state.path == Path("/.suno-archiver.state.sqlite3")


def test_s3_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[storage]\nbackend = "s3"\nbucket = "songs"\nprefix = "/suno/a/"\n')

    config = load(path)

    assert config.storage.backend == "s3"
    assert config.storage.bucket == "songs"
    assert config.storage.prefix == "suno/a"
    assert config.state.path == tmp_path / "state" / "suno-archiver.sqlite3"
    assert config.storage.cache_dir == tmp_path / "state" / "cache"


@pytest.mark.parametrize(
    ("bucket", "prefix", "region"),
    [
        ("my.music-01", "a/b.c", "eu-west-1"),
        ("abc", "/", ""),
        ("ap-s3alias", "x/", "us-gov-west-1"),
        ("Legacy_Bucket", "", "us-east-1"),  # legacy us-east-1 names still work
    ],
)
def test_s3_names_within_the_rules_are_kept(
    tmp_path: Path, bucket: str, prefix: str, region: str
) -> None:
    toml = f'backend = "s3"\nbucket = "{bucket}"\nprefix = "{prefix}"\nregion = "{region}"\n'
    config = load(write(tmp_path, "[storage]\n" + toml))

    assert (config.storage.bucket, config.storage.region) == (bucket, region)
    assert config.storage.prefix == prefix.strip("/")


def test_s3_cache_follows_the_state_unless_set(tmp_path: Path) -> None:
    moved = load(
        write(tmp_path, '[storage]\nbackend = "s3"\nbucket = "bkt"\n[state]\npath = "db/x"\n')
    )
    explicit = load(write(tmp_path, '[storage]\nbackend = "s3"\nbucket = "bkt"\ncache_dir = "c"\n'))

    assert moved.storage.cache_dir == tmp_path / "db" / "cache"
    assert explicit.storage.cache_dir == tmp_path / "c"


def test_s3_needs_a_bucket(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, '[storage]\nbackend = "s3"\n'))

    assert "[storage] bucket" in message and "required" in message


# -- the API key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "key_file", "env", "expected"),
    [
        ('api_key = "inline"', None, {"SUNO_API_KEY": "env"}, "inline"),
        ('api_key = "inline"\napi_key_file = "key"', "from-file", {}, "inline"),
        ('api_key_file = "key"', "\ufefffrom-file\r\n", {"SUNO_API_KEY": "env"}, "from-file"),
        ("", None, {"SUNO_API_KEY": "env"}, "env"),
        ('api_key = ""\napi_key_file = ""', None, {"SUNO_API_KEY": "env"}, "env"),
        ("", None, {}, ""),
    ],
    ids=[
        "inline-over-env",
        "inline-over-file",
        "file-over-env",
        "env",
        "empty-means-unset",
        "none",
    ],
)
def test_api_key_precedence(
    tmp_path: Path, api: str, key_file: str | None, env: dict[str, str], expected: str
) -> None:
    if key_file is not None:
        write(tmp_path, key_file, name="key")
    path = write(tmp_path, f"[api]\n{api}\n")

    assert load(path, env).api.api_key == expected


def test_a_key_file_is_not_read_when_api_key_is_set(tmp_path: Path) -> None:
    # SPEC: api_key, else api_key_file: a credential the user cannot read is no error then.
    path = write(tmp_path, f'[api]\napi_key = "{SECRET}"\napi_key_file = "/nonexistent/key"\n')

    assert load(path, {}).api.api_key == SECRET


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda key: key.write_text(""), "is empty"),
        (lambda key: key.write_text(" \n\n"), "is empty"),
        (lambda key: key.mkdir(), "cannot read"),
        (lambda key: None, "cannot read"),  # missing
        (lambda key: key.write_bytes(b"\xff\xfekey"), "not UTF-8"),
    ],
    ids=["empty", "blank", "directory", "missing", "not-utf8"],
)
def test_a_key_file_that_gives_no_key_is_an_error(
    tmp_path: Path, make: Callable[[Path], object], needle: str
) -> None:
    make(tmp_path / "key")
    path = write(tmp_path, '[api]\napi_key_file = "key"\n')

    message = config_error(path, {"SUNO_API_KEY": SECRET})

    assert "[api] api_key_file" in message and str(tmp_path / "key") in message
    assert needle in message


@pytest.mark.parametrize(
    ("api", "env"),
    [
        ('api_key_file = "missing"', {}),
        ('api_key = "inline"', {}),
        ("", {"SUNO_API_KEY": "env"}),
        ("", {"SUNO_API_KEY": "bad key\x01"}),
    ],
    ids=["unreadable-file", "inline", "env", "bad-env"],
)
def test_read_key_false_reads_no_key(tmp_path: Path, api: str, env: dict[str, str]) -> None:
    path = write(tmp_path, f'[api]\n{api}\n[storage]\npath = "music"\n')

    config = load(path, env, read_key=False)

    assert config.api.api_key == ""
    assert config.storage.path == tmp_path / "music"  # the rest is read as usual


def test_read_key_false_still_checks_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[api]\napi_key_file = 5\n")

    with pytest.raises(ConfigError, match=r"\[api\] api_key_file"):
        load(path, read_key=False)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        # broken TOML: no key to name, so the line
        ("[api\n", ["invalid TOML", "line 1"]),
        ('[api]\nbase_url = "x"\nbase_url = "y"\n', ["invalid TOML", "line 3"]),
        # unknown section, key (with the did-you-mean hint), key in the wrong section
        ("[storag]\n", ["[storag]", "unknown section", "did you mean [storage]?"]),
        ("[plugins]\n", ["[plugins]", "unknown section", "known sections: [api]"]),
        ("[api]\nbase_ur = 'https://x'\n", ["[api] base_ur", "did you mean base_url?"]),
        ("[api]\nzzz = 1\n", ["[api] zzz", "unknown key", "known keys: base_url"]),
        ("[api]\nbucket = 'b'\n", ["[api] bucket", "it belongs in [storage]"]),
        ("bucket = 'b'\n", ["bucket", "outside any section", "it belongs in [storage]"]),
        ('[api]\n"new\\nline" = 1\n', ['[api] "new\\nline"', "unknown key"]),
        ('["a\\nb"]\n', ['["a\\nb"]', "unknown section"]),
        ("api = 1\n", ["[api]", "expected a section [api]"]),
        ("[api.deeper]\n", ["[api] deeper", "unknown key"]),
        # wrong type
        ("[download]\nconcurrency = true\n", ["[download] concurrency", "got true"]),
        ("[api]\nrequests_per_second = false\n", ["[api] requests_per_second", "got false"]),
        ("[download]\nattempts = '5'\n", ["[download] attempts", 'got "5"']),
        ("[tagging]\nid3_version = 3.0\n", ["[tagging] id3_version", "got 3.0"]),
        ("[tagging]\nenabled = 1\n", ["[tagging] enabled", "true or false", "got 1"]),
        ("[tasks]\nlist = 5\n", ["[tasks] list", "a non-empty path"]),
        ("[tasks]\ngive_up_after_s = 'soon'\n", ["[tasks] give_up_after_s", 'got "soon"']),
        ("[daemon]\nmetrics_listen = [1]\n", ["[daemon] metrics_listen", "got an array"]),
        ("[state]\npath = 2026-01-01\n", ["[state] path", "got a date"]),
        # out of range
        ("[download]\nconcurrency = 0\n", ["[download] concurrency", "1 to 64", "got 0"]),
        ("[download]\nconcurrency = 65\n", ["[download] concurrency", "got 65"]),
        ("[download]\nattempts = 21\n", ["[download] attempts", "1 to 20"]),
        ("[download]\nmax_file_bytes = 0\n", ["[download] max_file_bytes", "> 0"]),
        ("[storage]\nmax_concurrent_uploads = 0\n", ["[storage] max_concurrent_uploads"]),
        ("[tagging]\nid3_version = 2\n", ["[tagging] id3_version", "3 or 4"]),
        ("[api]\nrequests_per_second = 0\n", ["[api] requests_per_second", "> 0"]),
        ("[api]\ntimeout_s = nan\n", ["[api] timeout_s", "got nan"]),
        ("[download]\ntimeout_s = inf\n", ["[download] timeout_s", "got inf"]),
        ("[tasks]\ngive_up_after_s = -1\n", ["[tasks] give_up_after_s", "got -1"]),
        ("[daemon]\ngrace_period_s = -0.5\n", ["[daemon] grace_period_s", ">= 0"]),
        ("[storage]\nbackend = 's4'\n", ["[storage] backend", '"local" or "s3"', '"s4"']),
        ("[storage]\nbucket = 'a/b'\n", ["[storage] bucket", '"a/b"']),
        ("[storage]\nbucket = 'my bucket'\n", ["[storage] bucket", "S3 bucket name"]),
        ("[storage]\nbucket = 'a:b!c'\n", ["[storage] bucket"]),
        ("[storage]\nbucket = '" + "b" * 256 + "'\n", ["[storage] bucket", "at most 255"]),
        ("[storage]\nprefix = 'a//b'\n", ["[storage] prefix", "segments"]),
        ("[storage]\nprefix = '../x'\n", ["[storage] prefix"]),
        ("[storage]\nprefix = 'a/./b/'\n", ["[storage] prefix"]),
        ("[storage]\nregion = 'eu west'\n", ["[storage] region"]),
        ("[storage]\nregion = 'eu_west!'\n", ["[storage] region", "eu-west-1"]),
        ("[storage]\npath = ' '\n", ["[storage] path", "non-empty"]),
        ("[tasks]\nlist = ''\n", ["[tasks] list", "non-empty"]),
        ("[api]\nuser_agent = ''\n", ["[api] user_agent", "non-empty"]),
        ('[api]\nuser_agent = "a\\nb"\n', ["[api] user_agent", 'got "a\\nb"']),
        ('[state]\npath = "a\\u0000b"\n', ["[state] path", 'got "a\\u0000b"']),
        # bad URL
        ("[api]\nbase_url = 'ftp://api.kie.ai'\n", ["[api] base_url", "http:// or https://"]),
        ("[api]\nbase_url = 'api.kie.ai'\n", ["[api] base_url"]),
        ("[api]\nbase_url = 'https://'\n", ["[api] base_url"]),
        ("[api]\nbase_url = ''\n", ["[api] base_url"]),
        ("[api]\nbase_url = 'https://h:99999'\n", ["[api] base_url"]),
        ("[api]\nbase_url = 'https://h/a b'\n", ["[api] base_url"]),
        ("[storage]\nendpoint_url = 'file:///tmp'\n", ["[storage] endpoint_url", 'or ""']),
        # bad metrics_listen
        ("[daemon]\nmetrics_listen = '9464'\n", ["[daemon] metrics_listen", "host:port"]),
        ("[daemon]\nmetrics_listen = ':9464'\n", ["[daemon] metrics_listen"]),
        ("[daemon]\nmetrics_listen = 'localhost:'\n", ["[daemon] metrics_listen"]),
        ("[daemon]\nmetrics_listen = 'localhost:0'\n", ["[daemon] metrics_listen"]),
        ("[daemon]\nmetrics_listen = 'localhost:65536'\n", ["[daemon] metrics_listen"]),
        ("[daemon]\nmetrics_listen = 'localhost:http'\n", ["[daemon] metrics_listen"]),
        ("[daemon]\nmetrics_listen = '::1:9464'\n", ["[daemon] metrics_listen"]),
        ("[daemon]\nmetrics_listen = '[::1:9464'\n", ["[daemon] metrics_listen"]),
        # the listener is for this machine only
        ("[daemon]\nmetrics_listen = '0.0.0.0:9464'\n", ["[daemon] metrics_listen", "loopback"]),
        ("[daemon]\nmetrics_listen = '[::]:9464'\n", ["[daemon] metrics_listen", "loopback"]),
        ("[daemon]\nmetrics_listen = '192.168.1.5:9464'\n", ["[daemon] metrics_listen"]),
        ("[daemon]\nmetrics_listen = 'example.org:9464'\n", ["[daemon] metrics_listen"]),
    ],
)
def test_a_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, toml: str, needles: list[str]
) -> None:
    message = config_error(write(tmp_path, toml))

    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    "listen", ["", "127.0.0.1:9464", "localhost:1", "[::1]:65535", "127.0.0.2:9464"]
)
def test_good_metrics_listen(tmp_path: Path, listen: str) -> None:
    path = write(tmp_path, f'[daemon]\nmetrics_listen = "{listen}"\n')

    assert load(path).daemon.metrics_listen == listen


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda path: None, "config file not found"),
        (lambda path: path.write_bytes(b"# caf\xe9\n[api]\n"), "not UTF-8 text (byte 5)"),
        (lambda path: path.mkdir(), "cannot read config"),
    ],
    ids=["missing", "not-utf8", "directory"],
)
def test_an_unreadable_file_is_one_line_naming_it(
    tmp_path: Path, make: Callable[[Path], object], needle: str
) -> None:
    path = tmp_path / "archive.toml"
    make(path)

    assert needle in config_error(path)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "archive.toml"
    path.write_bytes(b'\xef\xbb\xbf[storage]\r\npath = "m"\r\n')

    assert load(path).storage.path == tmp_path / "m"


def test_the_file_name_is_shown_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "[nope]\n", name="my.toml")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError, match=r"^my\.toml: \[nope\]: unknown section"):
        load_config(Path("my.toml"), {})


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        (f'[api]\napi_key = "{SECRET} "\nzzz = 1\n', {}),  # a later error, key already read
        (f'[api]\napi_key = "{SECRET} x"\n', {}),  # spaces in the key
        (f'[storage]\napi_key = "{SECRET}"\n', {}),
        (f'api_key = "{SECRET}"\n', {}),
        (f'api = "{SECRET}"\n', {}),
        (f'[api]\napikey = "{SECRET}"\n', {}),
        (f'[api]\napi_key = ["{SECRET}"]\n', {}),
        (f'[api]\napi_key = "{SECRET}\n', {}),  # unterminated string
        (f"[api]\napi_key = {SECRET}\n", {}),  # unquoted
        (f'[api]\napi_key = "{SECRET}"\napi_key = "{SECRET}"\n', {}),
        ("[download]\nattempts = 0\n", {"SUNO_API_KEY": SECRET}),
        ("", {"SUNO_API_KEY": f"{SECRET}\x07"}),
    ],
)
def test_the_api_key_never_appears_in_an_error(
    tmp_path: Path, toml: str, env: dict[str, str]
) -> None:
    path = write(tmp_path, toml)

    with pytest.raises(ConfigError) as caught:
        load(path, env)

    assert "SECRET" not in str(caught.value)


def test_a_key_file_with_spaces_is_an_error_that_never_shows_it(tmp_path: Path) -> None:
    write(tmp_path, f"{SECRET} {SECRET}\n", name="key")

    message = config_error(write(tmp_path, '[api]\napi_key_file = "key"\n'))

    assert "[api] api_key_file" in message and "SECRET" not in message


# -- the example file ---------------------------------------------------------------------------


def test_the_example_covers_every_key_in_schema_order() -> None:
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))

    assert {section: list(keys) for section, keys in doc.items()} == {
        section: list(keys) for section, keys in SCHEMA.items()
    }
    assert list(doc) == list(SCHEMA)


def test_every_example_key_has_a_comment() -> None:
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")):
            assert " # " in line, line


def test_the_example_is_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = tmp_path / "example.toml"
    example.write_bytes(EXAMPLE.read_bytes())
    monkeypatch.chdir(tmp_path)
    env = {"SUNO_API_KEY": "k"}
    defaults = load_config(None, env)

    config = load_config(example, env)

    assert config == dataclasses.replace(
        defaults,
        source=example,
        tasks=dataclasses.replace(defaults.tasks, list=tmp_path / "tasks.txt"),
    )


def test_the_example_loads_where_it_is() -> None:
    config = load(EXAMPLE)

    assert config.storage.path == EXAMPLE.parent / "archive"


# -- [intake] -----------------------------------------------------------------------------------

TOKEN = "tok-0123456789abcdef"


def test_intake_reads_its_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "hmac").write_text("kie-key")
    path = write(
        tmp_path,
        '[intake]\nlisten = "0.0.0.0:8787"\ntoken_file = "token"\nkie_webhook_key_file = "hmac"\n',
    )
    intake = load(path).intake
    assert (intake.listen, intake.token, intake.kie_webhook_key) == (
        "0.0.0.0:8787",
        TOKEN,
        b"kie-key",
    )
    assert TOKEN not in repr(load(path))
    assert load(path, read_key=False).intake.token == ""  # `status` reads no secret
    (tmp_path / "token").unlink()  # a systemd credential exists while the service runs only
    assert load_config(path, {}, read_intake=False).intake.token == ""  # `backfill`


@pytest.mark.parametrize(
    ("intake", "token", "needle"),
    [
        ('listen = "127.0.0.1:8787"', None, "[intake] token_file: required when listen is set"),
        ('listen = "127.0.0.1"', None, "[intake] listen: expected a host:port"),
        ('listen = "127.0.0.1:8787"\ntoken_file = "token"', "", "is empty"),
        ('listen = "127.0.0.1:8787"\ntoken_file = "token"', "short", "16-256 of"),
        ('listen = "127.0.0.1:8787"\ntoken_file = "token"', "with space" * 3, "16-256 of"),
        ('token_file = "token"\nkie_webhook_key_file = "none"', TOKEN, "cannot read"),
    ],
)
def test_a_bad_intake_setting_is_one_line_naming_the_key(
    tmp_path: Path, intake: str, token: str | None, needle: str
) -> None:
    if token is not None:
        (tmp_path / "token").write_text(token)
    message = config_error(write(tmp_path, f"[intake]\n{intake}\n"))
    assert needle in message
    if token:
        assert token not in message
