"""The shipped systemd unit and its config agree: the paths, the key's credential, the timings."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from archiver.config import load_config

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT_NAME = "suno-archiver.service"


def unit_settings() -> dict[str, list[str]]:
    """[Service] and the other sections' `Key=value` lines, every value of a repeated key."""
    settings: dict[str, list[str]] = {}
    for line in (SYSTEMD / UNIT_NAME).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(value: str) -> float:
    """A systemd time span as the unit writes them: '60s', '2min', '90'."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value)
    assert match, f"unexpected time span {value!r}"
    return float(match[1]) * (60 if match[2] in ("min", "m") else 1)


def inside(path: Path, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


@pytest.fixture
def unit() -> dict[str, list[str]]:
    return unit_settings()


def test_the_unit_is_a_notify_service_with_a_watchdog(unit: dict[str, list[str]]) -> None:
    assert unit["Type"] == ["notify"]
    assert seconds(unit["WatchdogSec"][0]) > 0
    assert "--config /etc/suno-archiver/archive.toml" in unit["ExecStart"][0]
    assert unit["ExecStart"][0].split()[1] == "run"


def test_archive_toml_fits_the_unit(unit: dict[str, list[str]]) -> None:
    raw = tomllib.loads((SYSTEMD / "archive.toml").read_text(encoding="utf-8"))
    config = load_config(SYSTEMD / "archive.toml", os.environ, read_key=False)

    # The key: LoadCredential=NAME:SOURCE puts it at /run/credentials/<unit>/NAME.
    (credential,) = unit["LoadCredential"]
    name, _, _source = credential.partition(":")
    assert raw["api"]["api_key_file"] == f"/run/credentials/{UNIT_NAME}/{name}"

    # Everything the daemon writes is in the folders systemd makes writable for it.
    state_dir = f"/var/lib/{unit['StateDirectory'][0]}"
    cache_dir = f"/var/cache/{unit['CacheDirectory'][0]}"
    writable = (state_dir, cache_dir)
    assert any(inside(config.state.path, d) for d in writable), config.state.path
    assert config.storage.backend == "local"
    assert any(inside(config.storage.path, d) for d in writable), config.storage.path
    config_dir = f"/etc/{unit['ConfigurationDirectory'][0]}"
    assert config.tasks.list is not None and inside(config.tasks.list, config_dir)
    assert f"--config {config_dir}/archive.toml" in unit["ExecStart"][0]

    # SIGTERM: in-flight files get the grace period, then the state is flushed; systemd must
    # not SIGKILL before.
    assert config.daemon.grace_period_s < seconds(unit["TimeoutStopSec"][0])
