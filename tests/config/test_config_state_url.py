"""[state] url and its neighbours: a PostgreSQL state configured, every misuse one line naming
the keys, and the password never in an error or a printed config."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.config.pgurl import password_of, shown
from archiver.errors import ConfigError

S3 = '[storage]\nbackend = "s3"\nbucket = "b"\n'


def write(folder: Path, text: str) -> Path:
    path = folder / "archive.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, read_key=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_with_s3_storage_is_a_shared_state(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://arch@db.example:5433/suno?sslmode=verify-full"
    config = load_config(
        write(tmp_path, S3 + f'[state]\nurl = "{url}"\nlease_s = 30\n'), {}, read_key=False
    )
    assert (config.state.url, config.state.lease_s, config.state.password) == (url, 30.0, "")
    assert config.state.where == url


def test_the_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cr3t-pw\n")
    config = load_config(
        write(
            tmp_path,
            S3 + '[state]\nurl = "postgresql://arch:inline-pw@db/suno"\npassword_file = "pw"\n',
        ),
        {},
        read_key=False,
    )
    assert config.state.password == "s3cr3t-pw"
    assert config.state.where == "postgresql://arch:***@db/suno"
    for text in (repr(config), config.state.where):
        assert "s3cr3t-pw" not in text and "inline-pw" not in text


def test_url_and_path_together_is_an_error_naming_both(tmp_path: Path) -> None:
    message = error(write(tmp_path, S3 + '[state]\nurl = "postgresql://h/d"\npath = "s.db"\n'))
    assert "[state] url" in message and "[state] path" in message


def test_a_postgresql_state_with_local_storage_needs_shared_local(tmp_path: Path) -> None:
    message = error(write(tmp_path, '[state]\nurl = "postgresql://h/d"\n'))
    assert "shared_local" in message and "s3" in message
    config = load_config(
        write(tmp_path, '[state]\nurl = "postgresql://h/d"\nshared_local = true\n'),
        {},
        read_key=False,
    )
    assert config.state.shared_local


@pytest.mark.parametrize(
    "url", ["mysql://h/d", "postgresql://h", "postgresql://h:99999/d", "postgresql://h/d x"]
)
def test_a_bad_url_is_refused_without_echoing_it(tmp_path: Path, url: str) -> None:
    message = error(write(tmp_path, S3 + f'[state]\nurl = "{url}:pw"\n'))
    assert "[state] url" in message and "pw" not in message.split("expected")[0]
    assert url not in message


def test_a_password_file_without_url_and_a_bad_lease_are_errors(tmp_path: Path) -> None:
    assert "[state] password_file" in error(write(tmp_path, '[state]\npassword_file = "x"\n'))
    assert "[state] lease_s" in error(write(tmp_path, "[state]\nlease_s = 1\n"))


def test_shown_urls_keep_everything_but_the_password() -> None:
    assert (
        shown("postgres://u:p%40ss@h:5/d?sslmode=require")
        == "postgres://u:***@h:5/d?sslmode=require"
    )
    assert shown("postgresql://u@h/d") == "postgresql://u@h/d"
    assert password_of("postgres://u:p%40ss@h:5/d") == "p@ss"


def test_task_events_with_a_postgresql_state_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "whsec").write_text("whsec_" + "A" * 32 + "\n")
    config = load_config(
        write(
            tmp_path,
            S3 + '[state]\nurl = "postgresql://h/d"\n[events]\n'
            'urls = ["https://hooks.example/x"]\nsecret_file = "whsec"\n',
        ),
        {},
        read_key=False,
    )
    assert config.state.url and config.events.urls == ("https://hooks.example/x",)
