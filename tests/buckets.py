"""Buckets on moto's S3 server as the tests see them (a plain boto3 client, not the
archiver's), the config that archives into one, and the check that a bucket holds exactly what
its manifests name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from archive_checks import file_entries
from botocore.config import Config as BotoConfig

import archiver.storage.s3 as s3
from archiver.config import ApiConfig, Config, StateConfig, StorageConfig, TasksConfig
from archiver.sandbox import Sandbox, fake_hex_id

PREFIX = "suno/archive"
SCRIPT = "text/javascript; charset=utf-8"
VIEW_TYPES = {  # the browse files of an archive of one shard
    "index.html": "text/html; charset=utf-8",
    "playlist.m3u8": "audio/x-mpegurl",
    "browse/shards.js": SCRIPT,
    "browse/t/00000.js": SCRIPT,
    "browse/s/00000.js": SCRIPT,
    "playlists/00000.m3u8": "audio/x-mpegurl",
}

# What MinIO answers (507) to a write once its drives are full; moto has no quotas.
FULL_ANSWER = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>XMinioStorageFull</Code>'
    b"<Message>Storage backend has reached its minimum free drive threshold.</Message></Error>"
)


class Bucket:
    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def objects(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> tuple[bytes, dict[str, Any]]:
        response = self.client.get_object(Bucket=self.name, Key=key)
        return response["Body"].read(), response

    def versions(self) -> dict[str, tuple[str, Any]]:
        return {
            k: (h["ETag"], h["LastModified"])
            for k in self.objects()
            for h in [self.client.head_object(Bucket=self.name, Key=k)]
        }


def quick_client(url: str) -> Any:
    """A test-side client that gives up at once while the store is down."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=url,
        config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def new_bucket(url: str, request: pytest.FixtureRequest, *, create: bool = True) -> Bucket:
    name = "run-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    bucket = Bucket(quick_client(url), name)
    if create:
        bucket.client.create_bucket(Bucket=name)
    return bucket


def make_config(tmp_path: Path, sandbox: Sandbox, url: str, bucket: str, **tasks: Any) -> Config:
    return Config(
        api=ApiConfig(base_url=sandbox.base_url, api_key=sandbox.api_key),
        tasks=TasksConfig(**tasks),
        storage=StorageConfig(
            backend="s3",
            bucket=bucket,
            prefix=PREFIX,
            endpoint_url=url,
            region="us-east-1",
            cache_dir=tmp_path / "cache",
        ),
        state=StateConfig(path=tmp_path / "state" / "suno-archiver.sqlite3"),
    )


def add_tasks(sandbox: Sandbox, tmp_path: Path) -> tuple[list[str], Path]:
    rock, callback, cover = (fake_hex_id(f"s3:{n}") for n in range(3))
    sandbox.add_music(rock, title="Neon Highway", create_time="ms", tags="synthwave")
    sandbox.add_music(callback, title="Callback Blues", callback_exception=True)
    sandbox.add_cover(cover, parent_task_id=rock)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"music:{rock}\n{callback}\ncover:{cover}\n", encoding="utf-8")
    return [rock, callback, cover], ids_file


def verify_bucket(bucket: Bucket, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Every object a manifest names is in the bucket with the manifest's size, SHA-256 and
    content type; every object under the prefix is named; no temp file is left."""
    manifests: dict[str, dict[str, Any]] = {}
    named: set[str] = set()
    keys = bucket.objects()
    assert all(k.startswith(PREFIX + "/") for k in keys), keys
    for key in keys:
        if not key.endswith("/manifest.json"):
            continue
        data, response = bucket.get(key)
        assert response["ContentType"] == "application/json"
        doc = json.loads(data)
        assert f"{PREFIX}/{doc['task_id']}/manifest.json" == key
        manifests[doc["task_id"]] = doc
        named.add(key)
        for entry in file_entries(doc):
            assert "path" in entry, entry
            body, response = bucket.get(f"{PREFIX}/{entry['path']}")
            assert len(body) == entry["bytes"] == response["ContentLength"]
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]
            assert response["Metadata"]["sha256"] == entry["sha256"]
            assert response["ContentType"] == entry["content_type"]
            named.add(f"{PREFIX}/{entry['path']}")
    for name, content_type in VIEW_TYPES.items():  # derived from the manifests
        if f"{PREFIX}/{name}" in keys:
            assert bucket.get(f"{PREFIX}/{name}")[1]["ContentType"] == content_type
            named.add(f"{PREFIX}/{name}")
    assert set(keys) == named, f"objects no manifest names: {sorted(set(keys) - named)}"
    temp = tmp_path / "cache" / s3.TEMP_NAME
    assert sorted(p.name for p in temp.iterdir()) == [".suno-archiver.lock"]
    return manifests
