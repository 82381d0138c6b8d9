"""[events] and the file-URL keys of [storage]: what they become, and every bad value as one
line naming the file and the key."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.errors import ConfigError
from archiver.tasks.events import TYPES

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
WITH_SECRET = 'urls = ["https://a.example/h"]\nsecret_file = "events.secret"'


def _load(folder: Path, text: str, secret: str | None = SECRET, **kw: bool):  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    if secret is not None:
        (folder / "events.secret").write_text(secret + "\n", encoding="utf-8")
    path = folder / "archive.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, {}, **kw)


def _error(folder: Path, text: str, secret: str | None = SECRET) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(folder, text, secret)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(folder / "archive.toml")), message
    return message


def test_events_are_off_by_default(tmp_path: Path) -> None:
    config = _load(tmp_path, "", secret=None)
    assert config.events.urls == ()
    assert set(config.events.types) == set(TYPES)
    assert config.events.give_up_after_s == 3 * 86400
    assert config.events.keep_days == 30
    assert config.storage.public_base_url == "" and config.storage.presign_ttl_s == 0


def test_a_full_events_section(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
[events]
urls = ["https://app.example/hooks/suno", "http://127.0.0.1:9000/h", "http://[::1]/h"]
secret_file = "events.secret"
types = ["task.archived", "task.at_risk"]
give_up_after_s = 600
keep_days = 7
timeout_s = 5
[storage]
public_base_url = "https://files.example/archive/"
""",
    )
    assert config.events.key == KEY
    assert config.events.types == frozenset({"task.archived", "task.at_risk"})
    assert config.events.urls[1] == "http://127.0.0.1:9000/h"
    assert (config.events.give_up_after_s, config.events.keep_days) == (600, 7)
    assert config.storage.public_base_url == "https://files.example/archive/"
    assert SECRET not in repr(config) and repr(KEY) not in repr(config)


def test_the_secret_is_not_read_by_commands_that_send_nothing(tmp_path: Path) -> None:
    text = '[events]\nurls = ["https://a.example/h"]\nsecret_file = "events.secret"\n'
    assert _load(tmp_path, text, secret="garbage", read_key=False).events.key == b""


@pytest.mark.parametrize(
    ("text", "secret", "says"),
    [
        ('urls = ["http://app.example/h"]', SECRET, "[events] urls: expected a list of https://"),
        ('urls = ["ftp://app.example/h"]', SECRET, "[events] urls"),
        ('urls = ["https://a.example/h"]', None, "[events] secret_file: required when urls"),
        (WITH_SECRET, "abc", 'start with "whsec_"'),
        (WITH_SECRET, "whsec_!!", "not base64"),
        (WITH_SECRET, "whsec_AAAA", "24 to 64 bytes"),
        (WITH_SECRET.replace("events.", "nope."), SECRET, "[events] secret_file: cannot read"),
        ('types = ["task.exploded"]', SECRET, '[events] types: unknown event type "task.exploded"'),
        ("give_up_after_s = 0", SECRET, "[events] give_up_after_s"),
        ("keep_days = -1", SECRET, "[events] keep_days"),
        ("colour = 1", SECRET, "[events] colour: unknown key"),
    ],
)
def test_bad_events_values_name_the_key(
    tmp_path: Path, text: str, secret: str | None, says: str
) -> None:
    message = _error(tmp_path, "[events]\n" + text + "\n", secret)
    assert says in message
    if secret and secret.startswith("whsec_") and len(secret) > 20:
        assert secret not in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('public_base_url = "files.example/a"', "[storage] public_base_url"),
        ("presign_ttl_s = 604801", "[storage] presign_ttl_s: expected an integer from 0 to 604800"),
        ("presign_ttl_s = -1", "[storage] presign_ttl_s"),
        ("presign_ttl_s = 3600", '[storage] presign_ttl_s: only with backend = "s3"'),
    ],
)
def test_bad_url_settings_name_the_key(tmp_path: Path, text: str, says: str) -> None:
    assert says in _error(tmp_path, "[storage]\n" + text + "\n")


def test_presigning_on_s3(tmp_path: Path) -> None:
    config = _load(
        tmp_path, '[storage]\nbackend = "s3"\nbucket = "b"\npresign_ttl_s = 604800\n', secret=None
    )
    assert config.storage.presign_ttl_s == 604800
